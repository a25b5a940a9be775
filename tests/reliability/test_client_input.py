"""Client-chosen values never reach a 500: ids out of a model's range over REST and gRPC, on a real
embedding-lookup graph (ONNX Runtime's Gather), with and without a declared min/max in config.yaml."""

from __future__ import annotations

import logging
from pathlib import Path

import grpc
import orjson
import httpx
import pytest

from app.protocol.model_config import ConfigError, load_config
from app.transports.grpc.generated.inference import open_inference_grpc_pb2 as pb
from app.transports.grpc.generated.inference import open_inference_grpc_pb2_grpc as pb_grpc
from testkit.models import lookup_model, write_model
from tests.support import live_server

ROWS = 10
RANGED = {"max_batch_size": 8, "inputs": [{"name": "user", "datatype": "INT64", "shape": [], "min": 0, "max": ROWS - 1}]}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo")
    write_model(repo, "lookup", lookup_model(rows=ROWS), {"max_batch_size": 8})
    write_model(repo, "ranged", lookup_model(rows=ROWS), RANGED)
    # A partial batch waits up to 2 s (fixed delay policy), a full one (4 rows) goes at once: four concurrent
    # requests are one batch.
    write_model(repo, "batched", lookup_model(rows=ROWS), {"max_batch_size": 4, "dynamic_batching": {
        "max_queue_delay_microseconds": 2_000_000, "delay_policy": "fixed"}})  # fmt: skip
    with live_server(repo, grpc=True) as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def ids(*values: int) -> dict:
    return {"inputs": [{"name": "user", "shape": [len(values)], "datatype": "INT64", "data": list(values)}]}


def outcomes(server, model: str, outcome: str) -> float:
    return sum(server.service.metrics.registry.get_sample_value(
        "dendrite_requests_total", {"model": model, "version": "1", "protocol": p, "outcome": outcome}) or 0
        for p in ("rest", "grpc"))  # fmt: skip


def test_an_id_out_of_the_table_is_400_in_our_words(server, client):
    r = client.post("/v2/models/lookup/infer", json=ids(1, 99999999))
    assert r.status_code == 400
    assert r.json() == {"error": "model lookup/1/model refused input 'user': index 99999999 is outside 0..9"}
    assert outcomes(server, "lookup", "server_error") == 0 and outcomes(server, "lookup", "client_error") >= 1


def test_over_rest_a_bad_id_fails_only_its_own_request_of_the_batch(server, caplog):
    from concurrent.futures import ThreadPoolExecutor

    caplog.set_level(logging.INFO, logger="app.batching.batcher")
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda i: httpx.post(f"{server.url}/v2/models/batched/infer", json=ids(i), timeout=30),
                                [1, 99, 2, 3]))  # fmt: skip
    assert [r.status_code for r in answers] == [200, 400, 200, 200]
    assert answers[1].json() == {"error": "model batched/1/model refused input 'user': index 99 is outside 0..9"}
    for i, r in zip([1, 2, 3], [answers[0], answers[2], answers[3]]):
        assert r.json()["outputs"][0]["data"] == [3 * i, 3 * i + 1, 3 * i + 2]
    assert "batched/1: batch of 4 requests refused as invalid; running them one by one" in caplog.messages
    assert outcomes(server, "batched", "server_error") == 0


def test_a_declared_range_refuses_negative_ids_that_would_answer_for_another_row(client):
    # Without a range, -5 is Gather's "row 5 from the end": another user's answer, silently.
    assert client.post("/v2/models/lookup/infer", json=ids(-5)).status_code == 200
    for value in (-5, ROWS, 99999999):
        r = client.post("/v2/models/ranged/infer", json=ids(1, value))
        assert r.status_code == 400
        assert r.json() == {"error": f"input 'user': value {value} is outside the valid range 0..9"}
    assert client.post("/v2/models/ranged/infer", json=ids(0, ROWS - 1)).status_code == 200


def test_metadata_shows_the_range(client):
    meta = client.get("/v2/models/ranged").json()
    assert meta["inputs"] == [{"name": "user", "datatype": "INT64", "shape": [-1], "min": 0, "max": 9}]


def test_grpc_answers_invalid_argument(server):
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        for model, message in (("lookup", "model lookup/1/model refused input 'user': index 99 is outside 0..9"),
                               ("ranged", "input 'user': value -5 is outside the valid range 0..9")):  # fmt: skip
            request = pb.ModelInferRequest(model_name=model)
            tensor = request.inputs.add(name="user", datatype="INT64", shape=[1])
            tensor.contents.int64_contents.append(99 if model == "lookup" else -5)
            with pytest.raises(grpc.RpcError) as info:
                stub.ModelInfer(request)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert info.value.details() == message
    assert outcomes(server, "lookup", "server_error") == 0


def test_range_of_float_inputs_and_large_bounds():
    import numpy as np

    from app.errors import InvalidInput
    from app.protocol.model_config import TensorSpec

    spec = TensorSpec(name="x", datatype="FP32", shape=[1], min=-1.5, max=2**40)
    assert spec.range_text() == "-1.5..1099511627776"
    spec.check_range(np.array([-1.5, 2.0], np.float32))
    for values, bad in (([0.0, np.nan], "nan"), ([-2.0], "-2.0"), ([2.0**41], "2199023255552.0")):
        with pytest.raises(InvalidInput, match=f"value {bad} is outside the valid range -1.5..1099511627776"):
            spec.check_range(np.array(values, np.float64))


@pytest.mark.parametrize("spec, message", [
    ({"min": 5, "max": 1}, "min 5 is above max 1"),
    ({"datatype": "BYTES", "min": 0}, "min/max apply to numbers, not BYTES"),
])  # fmt: skip
def test_config_range_errors_name_the_field(tmp_path, spec, message):
    folder = write_model(tmp_path, "m", None, {"inputs": [{"name": "user", "datatype": "INT64", "shape": [], **spec}]})
    with pytest.raises(ConfigError, match=f"field 'inputs.0': .*{message}"):
        load_config(folder / "config.yaml", "m")


def test_the_shipped_recommendation_config_declares_movielens_user_range():
    path = Path(__file__).parents[2] / "models" / "recommendation-neumf" / "config.yaml"
    (user,) = load_config(path, "recommendation-neumf").inputs
    assert (user.name, user.min, user.max) == ("user", 0, 942)


@pytest.mark.parametrize("task, accepted", [
    ("image", "application/json or multipart/form-data"), ("sentiment", "application/json"),
    ("translation", "application/json"), ("recommendation", "application/json"),
])  # fmt: skip
def test_every_predict_route_answers_a_wrong_content_type_with_415(client, task, accepted):
    r = client.post(f"/predict/{task}", content=b"hello", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    assert r.json() == {"error": f"/predict/{task} takes {accepted}, not 'text/plain'"}


def test_an_unknown_task_is_404_listing_the_tasks(client):
    r = client.post("/predict/foo", json={})
    assert r.status_code == 404
    assert r.json() == {"error": "no task 'foo'; the tasks are image, sentiment, translation, recommendation "
                                 "(POST /predict/<task>)"}  # fmt: skip


@pytest.mark.parametrize("task, body", [
    ("sentiment", {"texts": ["gut"]}), ("translation", {"texts": ["gut"]}), ("recommendation", {"user_id": "1"}),
])  # fmt: skip
def test_a_json_body_passes_the_content_type_rule_and_no_content_type_is_415(client, task, body):
    r = client.post(f"/predict/{task}", content=orjson.dumps(body), headers={"Content-Type": "application/json; charset=utf-8"})
    assert r.status_code == 404 and r.json() == {"error": f"no model for task {task!r} in the repository"}
    r = client.post(f"/predict/{task}", content=orjson.dumps(body))
    assert r.status_code == 415
    assert r.json() == {"error": f"/predict/{task} takes application/json, not a body without Content-Type"}


@pytest.mark.parametrize("task, limit, reason", [
    ("sentiment", 64 * 1024 + 64 * 20_000 * 12, "DENDRITE_MAX_ITEMS_PER_REQUEST texts of DENDRITE_MAX_TEXT_CHARS"),
    ("recommendation", 64 * 1024, "a recommendation request has no items to carry"),
])  # fmt: skip
def test_a_task_body_is_bounded_by_its_item_limits_before_parsing(client, task, limit, reason):
    """With the default 64 MiB DENDRITE_MAX_REQUEST_BYTES, a typed route refuses a body no request within its item
    limits can fill (a declared length at once, a chunked body where it passes the limit)."""
    body = b'{"texts": ["' + b"a" * limit + b'"], "user_id": "1"}'
    r = client.post(f"/predict/{task}", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert r.json() == {"error": f"request body of {len(body)} bytes exceeds the limit of {limit} ({reason})"}
    chunked = (body[i : i + 65536] for i in range(0, len(body), 65536))
    r = client.post(f"/predict/{task}", content=chunked, headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert r.json() == {"error": f"request body exceeds the limit of {limit} bytes ({reason})"}
