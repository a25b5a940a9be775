"""One bad model never harms the rest (docs/reliability.md, fault table): a folder the
repository refuses, a corrupt version under poll, load and unload of one model at once, and a
batch scheduler that dies. Real servers on 127.0.0.1, real ONNX Runtime sessions."""

from __future__ import annotations

import gc
import random
import threading

import httpx
import onnxruntime as ort

from tests.support import affine_model, live_server, write_model

BODY = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
CONFIG = {"max_batch_size": 8}


def open_sessions() -> int:
    """ONNX Runtime sessions alive in this process (the servers run in it, in threads)."""
    gc.collect()
    return sum(isinstance(o, ort.InferenceSession) for o in gc.get_objects())


def test_concurrent_load_and_unload_of_one_model_leak_nothing(tmp_path):
    write_model(tmp_path, "m", affine_model(), CONFIG)
    before = open_sessions()
    with live_server(tmp_path, model_control_mode="explicit", repository_api_enabled=True) as s:
        codes: list[int] = []

        def client(seed: int) -> None:
            rng = random.Random(seed)
            with httpx.Client(base_url=s.url, timeout=60) as http:
                for _ in range(12):
                    action = rng.choice(["load", "unload"])
                    codes.append(http.post(f"/v2/repository/models/m/{action}").status_code)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        repository = s.service.repository
        loaded = sum(g.pool.count for e in repository.models.values() for v in e.versions.values()
                     for g in v.graphs.values())  # fmt: skip
        during = open_sessions() - before
        assert during == loaded, f"{during} sessions open, {loaded} in the repository: the rest leaked"
        assert set(codes) <= {200, 404} and 200 in codes, codes  # 404: unload of a model not loaded
        assert httpx.post(f"{s.url}/v2/repository/models/m/load").status_code == 200
        index = httpx.get(f"{s.url}/v2/repository/index").json()
        assert [(r["name"], r.get("version"), r["state"]) for r in index] == [("m", "1", "READY")]
        assert httpx.post(f"{s.url}/v2/models/m/infer", json=BODY).status_code == 200
        assert open_sessions() - before == 1
        assert httpx.post(f"{s.url}/v2/repository/models/m/unload").status_code == 200
        assert open_sessions() - before == 0
