"""Prometheus metrics after known traffic: counters move by exactly what was sent."""

import asyncio

import grpc
import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.transports.grpc.generated.dendrite.v1 import predict_pb2 as predict_pb
from app.transports.grpc.generated.dendrite.v1 import predict_pb2_grpc as predict_grpc
from testkit.models import COPY_WORDS, affine_model, write_copying_translation, write_model
from tests.support import live_server


def scrape(client) -> dict[tuple[str, tuple], float]:
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_counters_and_histograms_after_known_traffic(tmp_path):
    write_model(tmp_path, "affine", affine_model(), {"max_batch_size": 8})
    write_model(tmp_path, "corrupt", b"junk", {"max_batch_size": 8})
    with live_server(tmp_path) as server, httpx.Client(base_url=server.url) as c:
        before = scrape(c)
        ok = {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": np.ones(8).tolist()}]}
        bad = {"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": np.ones(6).tolist()}]}
        for _ in range(5):
            assert c.post("/v2/models/affine/infer", json=ok).status_code == 200
        for _ in range(2):
            assert c.post("/v2/models/affine/infer", json=bad).status_code == 400
        assert c.post("/v2/models/corrupt/infer", json=ok).status_code == 503
        after = scrape(c)

    mv = {"model": "affine", "version": "1"}
    rest = {**mv, "protocol": "rest"}

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("dendrite_requests_total", **rest, outcome="success") == 5
    assert delta("dendrite_requests_total", **rest, outcome="client_error") == 2
    assert delta("dendrite_requests_total", model="corrupt", version="1", protocol="rest", outcome="unavailable") == 1
    assert delta("dendrite_request_duration_seconds_count", **rest) == 7
    assert delta("dendrite_inference_count_total", **mv) == 10  # 5 requests x 2 rows
    executions = delta("dendrite_execution_count_total", **mv)
    assert 1 <= executions <= 5
    assert delta("dendrite_batch_size_count", **mv) == executions
    assert delta("dendrite_batch_size_sum", **mv) == 10
    assert delta("dendrite_queue_duration_seconds_count", **mv) == 5
    assert delta("dendrite_compute_duration_seconds_count", **mv) == executions
    assert value(after, "dendrite_pending_requests", **mv) == 0
    assert value(after, "dendrite_model_ready", **mv) == 1
    assert value(after, "dendrite_model_ready", model="corrupt", version="1") == 0
    assert value(after, "dendrite_instance_info", **mv, graph="model", session="0", provider="CPUExecutionProvider") == 1
    assert value(after, "process_resident_memory_bytes") > 0


def test_every_model_has_a_state_every_answer_an_outcome_and_loads_are_measured(tmp_path):
    write_model(tmp_path, "affine", affine_model(), {"max_batch_size": 8})
    write_model(tmp_path, "corrupt", b"junk", {"max_batch_size": 8})
    write_model(tmp_path, "empty", None, {"max_batch_size": 8}, versions=())  # never gets a version
    with live_server(tmp_path) as server, httpx.Client(base_url=server.url) as c:
        first = c.get("/metrics").text
        ok = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
        assert c.post("/v2/models/empty/infer", json=ok).status_code == 503
        assert c.post("/v2/models/no-such-model/infer", json=ok).status_code == 404
        assert c.post("/v2/models/affine/versions/9/infer", json=ok).status_code == 404
        assert c.post("/v2/models/affine/infer", content=b"{not json").status_code == 400  # refused while decoding
        after = scrape(c)

    assert "_created" not in first
    states = {(m, s): value(after, "dendrite_model_state", model=m, state=s)
              for m in ("affine", "corrupt", "empty") for s in ("READY", "UNAVAILABLE", "PENDING")}  # fmt: skip
    assert states == {("affine", "READY"): 1, ("affine", "UNAVAILABLE"): 0, ("affine", "PENDING"): 0,
                      ("corrupt", "READY"): 0, ("corrupt", "UNAVAILABLE"): 1, ("corrupt", "PENDING"): 0,
                      ("empty", "READY"): 0, ("empty", "UNAVAILABLE"): 1, ("empty", "PENDING"): 0}  # fmt: skip
    rest = {"protocol": "rest", "version": ""}
    assert value(after, "dendrite_requests_total", model="empty", outcome="unavailable", **rest) == 1
    # an unknown name is no label value (cardinality stays bounded)
    assert value(after, "dendrite_requests_total", model="", outcome="not_found", **rest) == 1
    assert value(after, "dendrite_requests_total", model="affine", outcome="not_found", **rest) == 1
    assert value(after, "dendrite_requests_total", model="affine", outcome="client_error", **rest) == 1
    assert value(after, "dendrite_model_load_failures_total", model="corrupt", version="1") == 1
    assert value(after, "dendrite_model_load_failures_total", model="affine", version="1") == 0
    assert value(after, "dendrite_model_load_duration_seconds_count", model="affine", version="1") == 1
    assert value(after, "dendrite_model_load_duration_seconds_count", model="corrupt", version="1") == 1


def test_predict_requests_refused_before_the_data_plane_are_counted(tmp_path):
    """Bodies FastAPI or the gRPC translation rejects before ``DataPlane.predict`` runs count as
    client_error (model="": the body naming the model did not validate), once each."""
    write_model(tmp_path, "affine", affine_model(), {"max_batch_size": 8})
    with live_server(tmp_path, grpc=True) as server, httpx.Client(base_url=server.url) as c:
        before = scrape(c)
        assert c.post("/predict/sentiment", json={"texts": []}).status_code == 400
        assert c.post("/predict/recommendation", json={"k": 3}).status_code == 400
        assert c.post("/predict/translation", content=b"{not json",
                      headers={"content-type": "application/json"}).status_code == 400  # fmt: skip
        assert c.post("/predict/sentiment", content=b"hi", headers={"content-type": "text/plain"}).status_code == 415
        assert c.post("/predict/image", json={}).status_code == 400
        r = c.post("/predict/image", content=b"--x--", headers={"content-type": "multipart/form-data"})  # no boundary
        assert r.status_code == 400 and "multipart" in r.json()["error"], r.text
        assert c.post("/predict/sentiment", json={"texts": ["fine"]},
                      headers={"X-Request-Timeout": "soon"}).status_code == 400  # fmt: skip
        assert c.post("/predict/no-such-task", json={}).status_code == 404
        assert c.post("/predict/sentiment", json={"texts": ["fine"]}).status_code == 404  # no sentiment model
        with grpc.insecure_channel(server.grpc_target) as channel:
            stub = predict_grpc.PredictStub(channel)
            for call, message in ((stub.Sentiment, predict_pb.SentimentRequest(texts=[])),
                                  (stub.Recommendation, predict_pb.RecommendationRequest(user_id=""))):  # fmt: skip
                with pytest.raises(grpc.RpcError) as err:
                    call(message, timeout=10)
                assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            for method in ("/inference.GRPCInferenceService/ModelInfer", "/dendrite.v1.Predict/Sentiment"):
                raw = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
                with pytest.raises(grpc.RpcError) as err:
                    raw(b"\xff\xff not a message", timeout=10)  # does not parse
                assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        after = scrape(c)

    def delta(protocol, outcome):
        labels = {"model": "", "version": "", "protocol": protocol, "outcome": outcome}
        return value(after, "dendrite_requests_total", **labels) - value(before, "dendrite_requests_total", **labels)

    assert delta("rest", "client_error") == 7
    assert delta("rest", "not_found") == 2  # the unknown task, and the valid body with no model to serve it
    assert delta("grpc", "client_error") == 4


def test_translation_refusals_and_withdrawals_count_as_rejected_like_every_batcher(tmp_path):
    """The coalescer reports queue_full / deadline / cancelled to the version's metric hooks, as the
    batcher does: dendrite_rejected_requests_total agrees with dendrite_requests_total."""
    write_copying_translation(tmp_path, "copy", step_delay_us=20_000, max_batch_size=8, max_queue_size=1)
    blocker = " ".join(COPY_WORDS[:60])  # 61 decode steps of at least 20 ms: over 1.2 s

    async def scenario(url: str) -> list[int]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            def send(text: str, timeout: float | None = None):
                headers = {"X-Request-Timeout": str(timeout)} if timeout else {}
                return asyncio.create_task(client.post("/predict/translation", json={"texts": [text]}, headers=headers))

            running = send(blocker)
            await asyncio.sleep(0.2)
            waiting = send("w1 w2", timeout=0.6)  # waits behind the running group; its deadline passes
            await asyncio.sleep(0.2)
            refused = send("w3")  # one caller already waits: the list (max_queue_size 1) is full
            return [(await t).status_code for t in (running, waiting, refused)]

    with live_server(tmp_path) as server, httpx.Client(base_url=server.url) as c:
        before = scrape(c)
        assert asyncio.run(scenario(server.url)) == [200, 504, 503]
        after = scrape(c)

    def delta(name, **labels):
        return value(after, name, model="copy", version="1", **labels) - value(before, name, model="copy", version="1", **labels)

    assert delta("dendrite_rejected_requests_total", reason="queue_full") == 1
    assert delta("dendrite_rejected_requests_total", reason="deadline") == 1
    assert delta("dendrite_requests_total", protocol="rest", outcome="rejected") == 1
    assert delta("dendrite_requests_total", protocol="rest", outcome="timeout") == 1
