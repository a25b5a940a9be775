"""Open Inference Protocol over real HTTP: every route, every datatype, binary tensors, errors."""

from __future__ import annotations

import asyncio
import struct

import httpx
import numpy as np
import orjson
import pytest

from testkit.models import affine_model, identity_model, matmul_chain_model, write_model
from tests.support import live_server

DTYPES = {"BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
          "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64, "FP16": np.float16,
          "FP32": np.float32, "FP64": np.float64}  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo")
    write_model(repo, "affine", affine_model(), {"max_batch_size": 8,
                "dynamic_batching": {"max_queue_delay_microseconds": 500}}, versions=(1, 2))  # fmt: skip
    write_model(repo, "identity", identity_model(), {"max_batch_size": 4})
    write_model(repo, "slow", matmul_chain_model(width=512, depth=16),
                {"max_batch_size": 256, "dynamic_batching": {"max_queue_size": 2}})  # fmt: skip
    write_model(repo, "corrupt", b"\x00garbage", {"max_batch_size": 4})
    # non-strict: the corrupt model would keep the server not ready (tests/test_readiness.py covers strict)
    with live_server(repo, repository_api_enabled=True, retry_after_seconds=3, strict_readiness=False) as s:
        yield s


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def infer_json(name, shape, datatype, data, **extra):
    return {"inputs": [{"name": name, "shape": shape, "datatype": datatype, "data": data}], **extra}


def test_health_and_server_metadata(client):
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    meta = client.get("/v2").json()
    assert meta["name"] == "dendrite" and "binary_tensor_data" in meta["extensions"]


def test_model_metadata_and_ready(client):
    meta = client.get("/v2/models/affine").json()
    assert meta["versions"] == ["2"]
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    assert [o["name"] for o in meta["outputs"]] == ["y", "s"]
    assert meta["providers"] == ["CPUExecutionProvider"]
    assert client.get("/v2/models/affine/versions/2").json()["name"] == "affine"
    assert client.get("/v2/models/affine/ready").json() == {"name": "affine", "ready": True}
    assert client.get("/v2/models/affine/versions/2/ready").status_code == 200
    r = client.get("/v2/models/corrupt/ready")
    assert r.status_code == 503 and "INVALID_PROTOBUF" in r.json()["error"]
    corrupt = client.get("/v2/models/corrupt").json()
    assert corrupt["state"] == "UNAVAILABLE" and "INVALID_PROTOBUF" in corrupt["reason"]
    r = client.get("/v2/models/nope")
    assert r.status_code == 404 and "nope" in r.json()["error"]
    r = client.get("/v2/models/affine/versions/1")
    assert r.status_code == 404 and "no version 1" in r.json()["error"]


def test_infer_json_flat_and_nested_with_id_and_requested_outputs(client):
    body = infer_json("x", [2, 4], "FP32", [[1, 2, 3, 4], [5, 6, 7, 8]], id="req-7", outputs=[{"name": "s"}])
    r = client.post("/v2/models/affine/infer", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["id"] == "req-7" and out["model_name"] == "affine" and out["model_version"] == "2"
    assert out["outputs"] == [{"name": "s", "datatype": "FP32", "shape": [2, 1], "data": [24.0, 56.0]}]
    flat = client.post("/v2/models/affine/versions/2/infer", json=infer_json("x", [1, 4], "FP32", [1, 1, 1, 1])).json()
    assert flat["outputs"][0]["data"] == [3.0] * 4


@pytest.mark.parametrize("datatype", [*DTYPES, "BYTES"])
def test_every_datatype_roundtrips_as_json(client, datatype):
    if datatype == "BYTES":
        data = ["hello", "wörld", "", "x"]
    else:
        data = (np.arange(4) % 2).astype(DTYPES[datatype]).tolist()
    inputs = []
    for dt in [*DTYPES, "BYTES"]:  # the identity model needs every input; only one is checked per case
        d = data if dt == datatype else (["a"] * 4 if dt == "BYTES" else [False] * 4 if dt == "BOOL" else [0] * 4)
        inputs.append({"name": f"in_{dt}", "shape": [2, 2], "datatype": dt, "data": d})
    r = client.post("/v2/models/identity/infer", json={"inputs": inputs, "outputs": [{"name": f"out_{datatype}"}]})
    assert r.status_code == 200, r.text
    (out,) = r.json()["outputs"]
    assert out["datatype"] == datatype and out["shape"] == [2, 2]
    assert out["data"] == data


def binary_request(inputs, json_extra=None):
    """Build a binary-extension body: JSON header + raw tensors."""
    header = {"inputs": [], **(json_extra or {})}
    chunks = []
    for name, datatype, arr in inputs:
        if datatype == "BYTES":
            raw = b"".join(struct.pack("<I", len(s.encode())) + s.encode() for s in arr.ravel())
        else:
            raw = arr.tobytes()
        chunks.append(raw)
        header["inputs"].append({"name": name, "shape": list(arr.shape), "datatype": datatype,
                                 "parameters": {"binary_data_size": len(raw)}})  # fmt: skip
    head = orjson.dumps(header)
    return head + b"".join(chunks), len(head)


def test_binary_tensor_extension_in_and_out(client):
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    body, n = binary_request([("x", "FP32", x)], {"outputs": [{"name": "y", "parameters": {"binary_data": True}},
                                                             {"name": "s"}]})  # fmt: skip
    r = client.post("/v2/models/affine/infer", content=body,
                    headers={"Inference-Header-Content-Length": str(n), "Content-Type": "application/octet-stream"})
    assert r.status_code == 200, r.text
    hlen = int(r.headers["inference-header-content-length"])
    head = orjson.loads(r.content[:hlen])
    y_meta, s_meta = head["outputs"]
    assert y_meta["parameters"]["binary_data_size"] == 48 and "data" not in y_meta
    y = np.frombuffer(r.content[hlen : hlen + 48], dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(y, x * 2 + 1)
    assert s_meta["data"] == (x * 2 + 1).sum(axis=1).tolist()


def test_binary_output_for_every_output_and_bytes_input(client):
    inputs = []
    for dt, dtype in DTYPES.items():
        inputs.append((f"in_{dt}", dt, (np.arange(4) % 2).astype(dtype).reshape(2, 2)))
    inputs.append(("in_BYTES", "BYTES", np.array([["ab", "c"], ["", "dé"]], dtype=object)))
    body, n = binary_request(inputs, {"parameters": {"binary_data_output": True}})
    r = client.post("/v2/models/identity/infer", content=body, headers={"Inference-Header-Content-Length": str(n)})
    assert r.status_code == 200, r.text
    hlen = int(r.headers["inference-header-content-length"])
    head = orjson.loads(r.content[:hlen])
    pos = hlen
    for (name, dt, arr), out in zip(inputs, head["outputs"]):
        size = out["parameters"]["binary_data_size"]
        chunk = r.content[pos : pos + size]
        pos += size
        if dt != "BYTES":
            np.testing.assert_array_equal(np.frombuffer(chunk, dtype=arr.dtype).reshape(arr.shape), arr)
        else:
            assert chunk == b"\x02\x00\x00\x00ab\x01\x00\x00\x00c\x00\x00\x00\x00\x03\x00\x00\x00d\xc3\xa9"
    assert pos == len(r.content)


@pytest.mark.parametrize(
    "body, status, message",
    [
        (infer_json("x", [1, 3], "FP32", [1, 2, 3]), 400, "shape [1, 3] does not match the model's [-1, 4]"),
        (infer_json("x", [1, 4], "INT32", [1, 2, 3, 4]), 400, "datatype INT32 but model 'affine' expects FP32"),
        (infer_json("x", [1, 4], "FP32", [1, 2, 3]), 400, "needs 4 elements, data has 3"),
        (infer_json("z", [1, 4], "FP32", [1, 2, 3, 4]), 400, "has no input 'z'"),
        (infer_json("x", [9, 4], "FP32", [0] * 36), 400, "between 1 and max_batch_size 8"),
        (infer_json("x", [1, 4], "FP32", [1, 2, 3, 4], outputs=[{"name": "q"}]), 400, "unknown output 'q'"),
        ({"inputs": []}, 400, "non-empty 'inputs'"),
        ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32"}]}, 400, "needs 'data'"),
    ],
)
def test_bad_requests_get_400_naming_the_problem(client, body, status, message):
    r = client.post("/v2/models/affine/infer", json=body)
    assert r.status_code == status
    assert message in r.json()["error"]


def test_malformed_bodies(client):
    r = client.post("/v2/models/affine/infer", content=b"{not json")
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
    r = client.post("/v2/models/affine/infer", content=b'{"inputs": []}', headers={"Inference-Header-Content-Length": "99"})
    assert r.status_code == 400 and "outside the body" in r.json()["error"]
    body, n = binary_request([("x", "FP32", np.ones((1, 4), np.float32))])
    r = client.post("/v2/models/affine/infer", content=body + b"extra", headers={"Inference-Header-Content-Length": str(n)})
    assert r.status_code == 400 and "unread bytes" in r.json()["error"]
    r = client.post("/v2/models/nope/infer", json=infer_json("x", [1, 4], "FP32", [1, 2, 3, 4]))
    assert r.status_code == 404
    r = client.post("/v2/models/corrupt/infer", json=infer_json("x", [1, 4], "FP32", [1, 2, 3, 4]))
    assert r.status_code == 503 and "UNAVAILABLE" in r.json()["error"]
    r = client.get("/v2/no/such/route")
    assert r.status_code == 404 and "error" in r.json()


def test_queue_full_is_503_with_retry_after_and_deadline_is_504(server):
    x = np.ones((256, 512), np.float32)
    body, n = binary_request([("x", "FP32", x)])
    headers = {"Inference-Header-Content-Length": str(n)}

    async def burst():
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as c:
            busy = [c.post("/v2/models/slow/infer", content=body, headers=headers) for _ in range(10)]
            late = c.post("/v2/models/slow/infer", content=body, headers={**headers, "X-Request-Timeout": "0.001"})
            return await asyncio.gather(*busy, late)

    *responses, late = asyncio.run(burst())
    codes = [r.status_code for r in responses]
    assert 200 in codes and 503 in codes and set(codes) <= {200, 503}
    rejected = next(r for r in responses if r.status_code == 503)
    assert rejected.headers["Retry-After"] == "3"
    assert "queue is full" in rejected.json()["error"]
    assert late.status_code in (503, 504)  # 504 if it got a queue slot, 503 if the queue was full
    if late.status_code == 504:
        assert "deadline" in late.json()["error"]


def test_repository_index_load_unload(server, client, tmp_path):
    index = client.get("/v2/repository/index").json()
    assert {"name": "affine", "version": "2", "state": "READY", "reason": "", "providers": ["CPUExecutionProvider"]} in index
    assert any(r["name"] == "corrupt" and r["state"] == "UNAVAILABLE" for r in index)
    repo = server.service.settings.model_repository
    write_model(repo, "late", affine_model(bias=10.0), {"max_batch_size": 2})
    assert client.get("/v2/models/late").status_code == 404
    r = client.post("/v2/repository/models/late/load")
    assert r.status_code == 200 and r.json()["versions"][0]["state"] == "READY"
    out = client.post("/v2/models/late/infer", json=infer_json("x", [1, 4], "FP32", [0, 0, 0, 0])).json()
    assert out["outputs"][0]["data"] == [10.0] * 4
    assert client.post("/v2/repository/models/late/unload").json() == {"name": "late", "unloaded": True}
    assert client.get("/v2/models/late").status_code == 404
    r = client.post("/v2/repository/models/..%2Fx/load")
    assert r.status_code in (400, 404)
    r = client.post("/v2/repository/models/does-not-exist/load")
    assert r.status_code == 404 and "config.yaml" in r.json()["error"]


def test_repository_api_is_off_unless_enabled(tmp_path):
    write_model(tmp_path, "m", affine_model(), {"max_batch_size": 2})
    with live_server(tmp_path) as s, httpx.Client(base_url=s.url) as c:
        r = c.post("/v2/repository/models/m/unload")
        assert r.status_code == 403 and "DENDRITE_REPOSITORY_API_ENABLED" in r.json()["error"]
        assert c.get("/v2/models/m/ready").status_code == 200
