"""One bad model never harms the rest (docs/reliability.md, fault table): a folder the
repository refuses, a corrupt version under poll, load and unload of one model at once, and a
batch scheduler that dies. Real servers on 127.0.0.1, real ONNX Runtime sessions."""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import threading
import time

import grpc
import httpx
import onnxruntime as ort

from app.transports.grpc.generated.inference import open_inference_grpc_pb2 as pb
from app.transports.grpc.generated.inference import open_inference_grpc_pb2_grpc as pb_grpc
from testkit.models import affine_model, write_model
from tests.support import live_server

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
        assert repository._locks == {}, "a per-model lock outlived its last user"
        assert httpx.post(f"{s.url}/v2/repository/models/m/load").status_code == 200
        index = httpx.get(f"{s.url}/v2/repository/index").json()
        assert [(r["name"], r.get("version"), r["state"]) for r in index] == [("m", "1", "READY")]
        assert httpx.post(f"{s.url}/v2/models/m/infer", json=BODY).status_code == 200
        assert open_sessions() - before == 1
        assert httpx.post(f"{s.url}/v2/repository/models/m/unload").status_code == 200
        assert open_sessions() - before == 0


def wait_for(check, timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what or check}"
        time.sleep(0.05)


def said(caplog, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


def test_a_refused_folder_is_that_models_problem_only(tmp_path, caplog):
    """A symlinked model folder (refused: it resolves outside the repository) stopped the server
    from starting, and in poll mode ended every scan before the models sorted after it."""
    repo, elsewhere = tmp_path / "repo", tmp_path / "elsewhere"
    write_model(repo, "good", affine_model(), CONFIG)
    write_model(elsewhere, "a-linked", affine_model(), CONFIG)
    (repo / "a-linked").symlink_to(elsewhere / "a-linked", target_is_directory=True)
    with caplog.at_level(logging.INFO), live_server(repo, model_control_mode="poll", repository_poll_seconds=0.05) as s:
        write_model(repo, "z-new", affine_model(), CONFIG)  # sorted after the refused one
        wait_for(lambda: httpx.get(f"{s.url}/v2/models/z-new/ready").status_code == 200, what="z-new loaded by a poll")
        time.sleep(0.5)  # ten more polls
        index = {r["name"]: r for r in httpx.get(f"{s.url}/v2/repository/index").json()}
        for name in ("good", "z-new"):
            assert index[name]["state"] == "READY", index[name]
            assert httpx.post(f"{s.url}/v2/models/{name}/infer", json=BODY).status_code == 200
        linked = index["a-linked"]
        assert linked["state"] == "UNAVAILABLE" and "outside the model repository" in linked["reason"], linked
        r = httpx.post(f"{s.url}/v2/models/a-linked/infer", json=BODY)
        assert r.status_code == 503 and "outside the model repository" in r.json()["error"], r.text
    assert len(said(caplog, "outside the model repository")) == 1, said(caplog, "outside the model repository")


def test_corrupt_new_version_under_poll_keeps_the_old_one_and_is_logged_once(tmp_path, caplog):
    write_model(tmp_path, "m", affine_model(), CONFIG)
    write_model(tmp_path, "only-corrupt", b"\x00not an onnx file", CONFIG)
    with caplog.at_level(logging.INFO), live_server(tmp_path, model_control_mode="poll", repository_poll_seconds=0.05) as s:
        write_model(tmp_path, "m", b"\x00not an onnx file", CONFIG, versions=(2,))
        wait_for(lambda: any(r.get("version") == "2" for r in httpx.get(f"{s.url}/v2/repository/index").json()),
                 what="version 2 tried")  # fmt: skip
        time.sleep(0.5)  # ten more polls
        r = httpx.post(f"{s.url}/v2/models/m/infer", json=BODY)
        assert r.status_code == 200 and r.json()["model_version"] == "1", r.text
        rows = {(r["name"], r.get("version")): r for r in httpx.get(f"{s.url}/v2/repository/index").json()}
        assert rows[("m", "1")]["state"] == "READY"
        assert rows[("m", "2")]["state"] == "UNAVAILABLE" and "INVALID_PROTOBUF" in rows[("m", "2")]["reason"]
        assert "InvalidProtobuf" not in rows[("m", "2")]["reason"]  # ONNX Runtime's words, not its exception class
        assert rows[("only-corrupt", "1")]["state"] == "UNAVAILABLE"
        assert httpx.post(f"{s.url}/v2/models/only-corrupt/infer", json=BODY).status_code == 503
    for model in ("m", "only-corrupt"):
        failed = said(caplog, f"model {model} version ")
        failed = [m for m in failed if "failed to load" in m]
        assert len(failed) == 1, failed
    assert len(said(caplog, "still serving 1")) == 1, said(caplog, "still serving")
    assert not said(caplog, "version 2 unloaded"), "a failed version is not a served one: no unload line"


class FailsOnce:
    """A batcher's metric hooks, except that the scheduler's next dispatch (``at="dispatch"``) or
    the next batch's end (``at="executed"``) raises once: a stand-in for a bug in the batcher."""

    def __init__(self, inner, at: str = "dispatch"):
        self.inner = inner
        self.at = at
        self.armed = True

    def _fault(self, at: str) -> None:
        if self.armed and self.at == at:
            self.armed = False
            raise RuntimeError(f"injected fault at {at}")

    def queued(self, delta: int) -> None:
        if delta < 0:
            self._fault("dispatch")
        self.inner.queued(delta)

    def executed(self, rows: int, compute_s: float, queue_waits: list[float]) -> None:
        self._fault("executed")
        self.inner.executed(rows, compute_s, queue_waits)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_a_dying_batch_scheduler_fails_its_queue_at_once_and_restarts(tmp_path, caplog):
    # A 0.3 s batching delay (fixed: the adaptive policy might run the first arrival alone) holds the
    # 8 requests in the queue together when the fault strikes.
    write_model(tmp_path, "m", affine_model(), {"max_batch_size": 64, "dynamic_batching": {
        "max_queue_delay_microseconds": 300_000, "delay_policy": "fixed"}})  # fmt: skip
    with caplog.at_level(logging.INFO), live_server(tmp_path, grpc=True) as s:
        batcher = s.service.repository.get("m").default_graph.batcher
        batcher.observer = FailsOnce(batcher.observer)

        async def burst(n: int) -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=s.url, timeout=10) as http:
                return await asyncio.gather(*(http.post("/v2/models/m/infer", json=BODY) for _ in range(n)))

        started = time.monotonic()
        first = asyncio.run(burst(8))
        took = time.monotonic() - started
        assert [r.status_code for r in first] == [503] * 8, [r.text for r in first]
        for r in first:
            assert "batch scheduler failed and was restarted" in r.json()["error"] and "Error" not in r.text, r.text
        assert took < 5, f"the queued requests waited {took:.1f}s"
        second = asyncio.run(burst(8))  # the restarted scheduler serves
        assert [r.status_code for r in second] == [200] * 8, [r.text for r in second]
        batcher.observer.armed = True  # and over gRPC
        tensor = pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[1, 4],
                                                       contents=pb.InferTensorContents(fp32_contents=[1, 2, 3, 4]))
        with grpc.insecure_channel(s.grpc_target) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            calls = [stub.ModelInfer.future(pb.ModelInferRequest(model_name="m", inputs=[tensor]), timeout=10)
                     for _ in range(4)]  # fmt: skip
            errors = [call.exception() for call in calls]
            assert all(e is not None and e.code() is grpc.StatusCode.UNAVAILABLE for e in errors), errors
            assert all("batch scheduler failed and was restarted" in e.details() for e in errors), errors
            stub.ModelInfer(pb.ModelInferRequest(model_name="m", inputs=[tensor]), timeout=10)
        metrics = httpx.get(f"{s.url}/metrics").text
    pending = [line for line in metrics.splitlines() if line.startswith('dendrite_pending_requests{model="m"')]
    assert pending and all(line.endswith(" 0.0") for line in pending), pending
    died = said(caplog, "batch scheduler died")
    assert len(died) == 2 and "failing its 8 queued request(s)" in died[0], died


def test_a_missing_startup_model_is_that_models_problem_only(tmp_path):
    """explicit mode: a startup model with no folder stopped the server from starting."""
    write_model(tmp_path, "good", affine_model(), CONFIG)
    with live_server(tmp_path, model_control_mode="explicit", startup_models=["gone", "good"]) as s:
        assert httpx.post(f"{s.url}/v2/models/good/infer", json=BODY).status_code == 200
        index = {r["name"]: r for r in httpx.get(f"{s.url}/v2/repository/index").json()}
        assert index["gone"]["state"] == "UNAVAILABLE" and "has no config.yaml" in index["gone"]["reason"], index
        r = httpx.post(f"{s.url}/v2/models/gone/infer", json=BODY)
        assert r.status_code == 503 and "has no config.yaml" in r.json()["error"], r.text


def test_a_batch_task_that_raises_fails_its_requests_instead_of_leaving_them_waiting(tmp_path, caplog):
    write_model(tmp_path, "m", affine_model(), {"max_batch_size": 64, "dynamic_batching": {
        "max_queue_delay_microseconds": 300_000, "delay_policy": "fixed"}})  # fmt: skip (one batch of 8)
    with caplog.at_level(logging.INFO), live_server(tmp_path) as s:
        batcher = s.service.repository.get("m").default_graph.batcher
        batcher.observer = FailsOnce(batcher.observer, at="executed")

        async def burst(n: int) -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=s.url, timeout=10) as http:
                return await asyncio.gather(*(http.post("/v2/models/m/infer", json=BODY) for _ in range(n)))

        first = asyncio.run(burst(8))
        assert [r.status_code for r in first] == [500] * 8, [r.text for r in first]
        assert all("the batch failed unexpectedly" in r.json()["error"] and "Error" not in r.text for r in first)
        assert [r.status_code for r in asyncio.run(burst(8))] == [200] * 8
    failed = said(caplog, "a batch of")
    assert failed == ["m/1: a batch of 8 request(s) failed unexpectedly"], failed
