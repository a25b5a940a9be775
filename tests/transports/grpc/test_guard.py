"""gRPC abuse: API keys from metadata (health and readiness stay open), and malformed messages:
bytes that do not parse, wrong types and sizes, random bytes to every method. Each gets a
status code (never UNKNOWN) and the server keeps serving."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import auth
from app.config import Settings
from app.transports.grpc.generated.inference import open_inference_grpc_pb2 as pb
from app.transports.grpc.generated.inference import open_inference_grpc_pb2_grpc as pb_grpc
from app.transports.grpc.server import access_of
from testkit.models import affine_model, write_model
from tests.support import live_server

Tensor = pb.ModelInferRequest.InferInputTensor
METHODS = ["/inference.GRPCInferenceService/ModelInfer", "/inference.GRPCInferenceService/ModelMetadata",
           "/inference.GRPCInferenceService/ModelReady", "/dendrite.v1.Predict/Image", "/dendrite.v1.Predict/Sentiment",
           "/dendrite.v1.Predict/Translation", "/dendrite.v1.Predict/Recommendation"]  # fmt: skip


def test_required_keys_per_method():
    s = Settings(api_keys=["k"], repository_api_keys=["r"])
    assert auth.required_keys(s, access_of("/grpc.health.v1.Health/Check"))[0] == ()
    assert auth.required_keys(s, access_of("/inference.GRPCInferenceService/ServerReady"))[0] == ()
    assert auth.required_keys(s, access_of("/inference.GRPCInferenceService/ModelInfer"))[0] == ["k"]
    assert auth.required_keys(s, access_of("/dendrite.v1.Predict/Image"))[0] == ["k"]


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("grpc-guard")
    write_model(root, "affine", affine_model(), {"max_batch_size": 8})
    return root


@pytest.fixture(scope="module")
def server(repo):
    with live_server(repo, grpc=True) as s:
        yield s


@pytest.fixture(scope="module")
def channel(server):
    with grpc.insecure_channel(server.grpc_target) as ch:
        yield ch


def good_request() -> pb.ModelInferRequest:
    x = np.array([[1, 2, 3, 4]], np.float32)
    return pb.ModelInferRequest(model_name="affine", inputs=[Tensor(name="x", datatype="FP32", shape=[1, 4])],
                                raw_input_contents=[x.tobytes()])  # fmt: skip


def test_keys_from_metadata(repo):
    with live_server(repo, grpc=True, api_keys=["secret"]) as s, grpc.insecure_channel(s.grpc_target) as ch:
        stub = pb_grpc.GRPCInferenceServiceStub(ch)
        with pytest.raises(grpc.RpcError) as err:
            stub.ModelInfer(good_request(), timeout=10)
        assert err.value.code() is grpc.StatusCode.UNAUTHENTICATED and "DENDRITE_API_KEYS" in err.value.details()
        with pytest.raises(grpc.RpcError) as err:
            stub.ModelMetadata(pb.ModelMetadataRequest(name="affine"), metadata=[("x-api-key", "nope")], timeout=10)
        assert err.value.code() is grpc.StatusCode.UNAUTHENTICATED
        for md in ([("authorization", "Bearer secret")], [("x-api-key", "secret")]):
            assert stub.ModelInfer(good_request(), metadata=md, timeout=10).model_name == "affine"
        # the stream needs a key like ModelInfer; refused at once, before the client sends a request
        call = stub.ModelStreamInfer(iter(()), timeout=10)
        with pytest.raises(grpc.RpcError) as err:
            list(call)
        assert err.value.code() is grpc.StatusCode.UNAUTHENTICATED and "DENDRITE_API_KEYS" in err.value.details()
        answers = list(stub.ModelStreamInfer(iter([good_request()]), metadata=[("x-api-key", "secret")], timeout=10))
        assert [a.infer_response.model_name for a in answers] == ["affine"] and not answers[0].error_message
        # probes need no key
        assert stub.ServerReady(pb.ServerReadyRequest(), timeout=10).ready
        assert stub.ServerLive(pb.ServerLiveRequest(), timeout=10).live
        health = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING


def raw_call(channel, method: str, payload: bytes):
    call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
    return call(payload, timeout=10)


def test_unparseable_bytes_are_an_error_status_not_a_crash(channel):
    for method in METHODS:
        with pytest.raises(grpc.RpcError) as err:
            raw_call(channel, method, b"\xff\xff\xff\xff\x0f")
        assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT and "not a valid message" in err.value.details(), method
    assert pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(good_request(), timeout=10).model_name == "affine"


def test_unparseable_message_on_a_stream_is_invalid_argument(channel):
    """The requests before the bad message are answered; then the call ends with INVALID_ARGUMENT."""
    call = channel.stream_stream("/inference.GRPCInferenceService/ModelStreamInfer", request_serializer=None,
                                 response_deserializer=pb.ModelStreamInferResponse.FromString)  # fmt: skip
    good = good_request()
    good.id = "first"
    responses = call(iter([good.SerializeToString(), b"\xff\xff\xff\xff\x0f"]), timeout=10)
    answered = []
    with pytest.raises(grpc.RpcError) as err:
        for response in responses:
            answered.append((response.infer_response.id, response.error_message))
    assert answered == [("first", "")]
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    assert "not a valid ModelInferRequest" in err.value.details()
    assert pb_grpc.GRPCInferenceServiceStub(channel).ServerLive(pb.ServerLiveRequest(), timeout=10).live


def bad_requests():
    x = np.array([[1, 2, 3, 4]], np.float32)
    yield "wrong datatype", pb.ModelInferRequest(model_name="affine", inputs=[Tensor(
        name="x", datatype="INT64", shape=[1, 4], contents=pb.InferTensorContents(int64_contents=[1, 2, 3, 4]))])
    yield "contents in the wrong field", pb.ModelInferRequest(model_name="affine", inputs=[Tensor(
        name="x", datatype="FP32", shape=[1, 4], contents=pb.InferTensorContents(int64_contents=[1, 2, 3, 4]))])
    yield "shape/data mismatch", pb.ModelInferRequest(model_name="affine", inputs=[Tensor(
        name="x", datatype="FP32", shape=[1, 5], contents=pb.InferTensorContents(fp32_contents=[1, 2, 3, 4]))])
    yield "negative dim", pb.ModelInferRequest(model_name="affine", inputs=[Tensor(
        name="x", datatype="FP32", shape=[-1, 4], contents=pb.InferTensorContents(fp32_contents=[1, 2, 3, 4]))])
    yield "raw size mismatch", pb.ModelInferRequest(model_name="affine", inputs=[Tensor(
        name="x", datatype="FP32", shape=[1, 4])], raw_input_contents=[x.tobytes()[:-1]])
    yield "raw and typed contents", pb.ModelInferRequest(model_name="affine", inputs=[Tensor(
        name="x", datatype="FP32", shape=[1, 4], contents=pb.InferTensorContents(fp32_contents=[1, 2, 3, 4]))],
        raw_input_contents=[x.tobytes()])
    yield "unknown datatype", pb.ModelInferRequest(model_name="affine", inputs=[Tensor(
        name="x", datatype="FP128", shape=[1, 4])], raw_input_contents=[x.tobytes()])
    yield "huge shape", pb.ModelInferRequest(model_name="affine", inputs=[Tensor(
        name="x", datatype="FP32", shape=[2**40, 2**40])], raw_input_contents=[x.tobytes()])
    yield "no inputs", pb.ModelInferRequest(model_name="affine")


@pytest.mark.parametrize("case", list(bad_requests()), ids=lambda c: c[0])
def test_wrong_types_and_sizes_are_invalid_argument(channel, case):
    _, request = case
    with pytest.raises(grpc.RpcError) as err:
        pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT, err.value.details()


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(method=st.sampled_from(METHODS), payload=st.binary(max_size=256))
def test_random_bytes_to_every_method(channel, method, payload):
    try:
        raw_call(channel, method, payload)
    except grpc.RpcError as err:
        assert err.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.INTERNAL, grpc.StatusCode.NOT_FOUND,
                              grpc.StatusCode.UNAVAILABLE), (err.code(), err.details())  # fmt: skip
        assert not err.details().startswith("internal error"), err.details()  # an unhandled exception
    assert pb_grpc.GRPCInferenceServiceStub(channel).ServerLive(pb.ServerLiveRequest(), timeout=10).live
