"""Every size limit over the wire, each answered 413 (REST) / INVALID_ARGUMENT or
RESOURCE_EXHAUSTED (gRPC) with a message naming the limit's setting. (Image pixels, items and
text length per task are covered in tests/transports/*/test_predict.py; gRPC message size in
tests/transports/grpc/test_oip.py.)"""

from __future__ import annotations

import base64

import grpc
import httpx
import numpy as np
import pytest

from app.transports.grpc.generated.inference import open_inference_grpc_pb2 as pb
from app.transports.grpc.generated.inference import open_inference_grpc_pb2_grpc as pb_grpc
from testkit.models import affine_model, write_model
from tests.support import live_server

LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("limits")
    write_model(repo, "affine", affine_model(), {"max_batch_size": 8})
    with live_server(repo, grpc=True, max_request_bytes=LIMIT, max_tensor_elements=16, max_image_bytes=2048,
                     repository_api_enabled=True) as s:  # fmt: skip
        yield s


def chunks(data: bytes, size: int = 8192):
    for i in range(0, len(data), size):
        yield data[i : i + size]


@pytest.mark.parametrize("path", ["/v2/models/affine/infer", "/predict/sentiment", "/predict/translation",
                                  "/predict/recommendation", "/predict/image", "/v2/repository/models/affine/load"])
def test_request_body_limit_on_every_post_route(server, path):
    big = b'{"texts": ["' + b"a" * (LIMIT + 10) + b'"]}'
    with httpx.Client(base_url=server.url, timeout=30) as c:
        r = c.post(path, content=big, headers={"Content-Type": "application/json"})  # declared Content-Length
        assert r.status_code == 413 and "DENDRITE_MAX_REQUEST_BYTES" in r.json()["error"], (path, r.text)
        if "/repository/" not in path:  # (load reads no body: a chunked one is never buffered)
            r = c.post(path, content=chunks(big), headers={"Content-Type": "application/json"})  # chunked: no length
            assert r.status_code == 413 and "DENDRITE_MAX_REQUEST_BYTES" in r.json()["error"], (path, r.text)
        # the server is fine afterwards
        ok = c.post("/v2/models/affine/infer", json={"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                                                                 "data": [1, 2, 3, 4]}]})  # fmt: skip
        assert ok.status_code == 200


def test_tensor_elements_rest_and_grpc(server):
    x = np.ones((5, 4), np.float32)  # 20 elements > 16
    r = httpx.post(f"{server.url}/v2/models/affine/infer",
                   json={"inputs": [{"name": "x", "shape": [5, 4], "datatype": "FP32", "data": x.ravel().tolist()}]})
    assert r.status_code == 413 and "DENDRITE_MAX_TENSOR_ELEMENTS" in r.json()["error"]
    r = httpx.post(f"{server.url}/v2/models/affine/infer",  # a declared shape alone must not allocate
                   json={"inputs": [{"name": "x", "shape": [2**31, 2**31], "datatype": "FP32", "data": [1]}]})
    assert r.status_code in (400, 413) and "error" in r.json()
    with grpc.insecure_channel(server.grpc_target) as ch:
        request = pb.ModelInferRequest(model_name="affine", inputs=[pb.ModelInferRequest.InferInputTensor(
            name="x", datatype="FP32", shape=[5, 4])], raw_input_contents=[x.tobytes()])  # fmt: skip
        with pytest.raises(grpc.RpcError) as err:
            pb_grpc.GRPCInferenceServiceStub(ch).ModelInfer(request, timeout=10)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT and "DENDRITE_MAX_TENSOR_ELEMENTS" in err.value.details()


def test_image_bytes_multipart(server):
    files = [("images", ("big.png", b"\x89PNG" + b"\x00" * 4096, "image/png"))]
    r = httpx.post(f"{server.url}/predict/image", files=files)
    assert r.status_code == 413 and "DENDRITE_MAX_IMAGE_BYTES" in r.json()["error"]


def test_image_bytes_json(smoke_repository):
    with live_server(smoke_repository, max_image_bytes=2048) as s:
        image = base64.b64encode(b"\x89PNG" + b"\x00" * 4096).decode()
        r = httpx.post(f"{s.url}/predict/image", json={"images": [image]}, timeout=60)
    assert r.status_code == 413 and "DENDRITE_MAX_IMAGE_BYTES" in r.json()["error"]
