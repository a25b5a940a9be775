"""GET /v2/models/{model}/config: the configuration a loaded version really runs with, and its sessions
built from exactly that."""

from __future__ import annotations

import httpx

from testkit.models import affine_model, write_model
from tests.support import live_server


def test_config_shows_what_is_in_force(tmp_path):
    write_model(tmp_path, "affine", affine_model(), {"max_batch_size": 8, "instance_group": {"count": 2}})
    write_model(tmp_path, "tuned", affine_model(), {"max_batch_size": 4, "dynamic_batching": {"max_queue_size": 3},
                                                    "instance_group": {"intra_op_threads": 1}})  # fmt: skip
    with live_server(tmp_path, default_max_queue_size=123, intra_op_threads=2) as server:
        r = httpx.get(f"{server.url}/v2/models/affine/config", timeout=30)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["name"] == "affine" and body["max_batch_size"] == 8
        assert body["instance_group"] == {"count": 2, "kind": "cpu", "device_id": 0, "fallback": "cpu",
                                          "intra_op_threads": 2}  # fmt: skip
        assert body["dynamic_batching"]["max_queue_size"] == 123
        assert body["warmup"]["batch_sizes"] == [1, 8]
        # the tensors as loaded, though config.yaml names none
        assert [(t["name"], t["datatype"], t["shape"]) for t in body["inputs"]] == [("x", "FP32", [4])]
        assert [t["name"] for t in body["outputs"]] == ["y", "s"]
        assert httpx.get(f"{server.url}/v2/models/affine/versions/1/config", timeout=30).json() == body

        tuned = httpx.get(f"{server.url}/v2/models/tuned/config", timeout=30).json()
        assert tuned["dynamic_batching"]["max_queue_size"] == 3 and tuned["instance_group"]["intra_op_threads"] == 1

        # the sessions run with the threads shown
        for name, threads in (("affine", 2), ("tuned", 1)):
            mv = server.service.repository.get(name, None)
            pool = mv.default_graph.pool
            assert [s.get_session_options().intra_op_num_threads for s in pool.sessions] == [threads] * pool.count
            assert mv.default_graph.batcher.max_queue_size == (123 if name == "affine" else 3)

        r = httpx.get(f"{server.url}/v2/models/nope/config", timeout=30)
        assert r.status_code == 404 and "nope" in r.json()["error"], r.text
        r = httpx.get(f"{server.url}/v2/models/affine/versions/9/config", timeout=30)
        assert r.status_code == 404 and "version 9" in r.json()["error"], r.text
