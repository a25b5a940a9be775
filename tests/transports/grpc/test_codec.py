"""The gRPC codec and proto without a server: canonical wire numbers, parameters, edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from app.transports.grpc import codec
from app.protocol.types import InferResponse, Tensor
from app.errors import InvalidInput
from app.transports.grpc.generated.inference import open_inference_grpc_pb2 as pb

# Field numbers of the canonical open_inference_grpc.proto (KServe / Triton): clients encode by
# number, so a renumbered field silently breaks tritonclient and KServe clients.
CANONICAL = {
    "ModelReadyRequest": {"name": 1, "version": 2},
    "RepositoryIndexRequest": {"repository_name": 1, "ready": 2},
    "RepositoryIndexResponse": {"models": 1},
    "RepositoryIndexResponse.ModelIndex": {"name": 1, "version": 2, "state": 3, "reason": 4},
    "ServerMetadataResponse": {"name": 1, "version": 2, "extensions": 3},
    "ModelMetadataRequest": {"name": 1, "version": 2},
    "ModelMetadataResponse": {"name": 1, "versions": 2, "platform": 3, "inputs": 4, "outputs": 5},
    "ModelMetadataResponse.TensorMetadata": {"name": 1, "datatype": 2, "shape": 3},
    "ModelInferRequest": {"model_name": 1, "model_version": 2, "id": 3, "parameters": 4, "inputs": 5, "outputs": 6,
                          "raw_input_contents": 7},
    "ModelInferRequest.InferInputTensor": {"name": 1, "datatype": 2, "shape": 3, "parameters": 4, "contents": 5},
    "ModelInferRequest.InferRequestedOutputTensor": {"name": 1, "parameters": 2},
    "ModelInferResponse": {"model_name": 1, "model_version": 2, "id": 3, "parameters": 4, "outputs": 5,
                           "raw_output_contents": 6},
    "ModelInferResponse.InferOutputTensor": {"name": 1, "datatype": 2, "shape": 3, "parameters": 4, "contents": 5},
    "InferParameter": {"bool_param": 1, "int64_param": 2, "string_param": 3, "double_param": 4, "uint64_param": 5},
    "ModelStreamInferResponse": {"error_message": 1, "infer_response": 2},  # Triton's streaming extension
    "InferTensorContents": {"bool_contents": 1, "int_contents": 2, "int64_contents": 3, "uint_contents": 4,
                            "uint64_contents": 5, "fp32_contents": 6, "fp64_contents": 7, "bytes_contents": 8},
}  # fmt: skip


def test_field_numbers_are_the_canonical_ones():
    pool = pb.DESCRIPTOR.pool
    for message, fields in CANONICAL.items():
        descriptor = pool.FindMessageTypeByName(f"inference.{message}")
        assert {f.name: f.number for f in descriptor.fields} == fields, message
    service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert service.full_name == "inference.GRPCInferenceService"
    assert [m.name for m in service.methods] == ["ServerLive", "ServerReady", "ModelReady", "ServerMetadata",
                                                 "ModelMetadata", "ModelInfer", "ModelStreamInfer",
                                                 "RepositoryIndex"]  # fmt: skip
    stream = service.methods_by_name["ModelStreamInfer"]
    assert (stream.client_streaming, stream.server_streaming) == (True, True)
    assert (stream.input_type.name, stream.output_type.name) == ("ModelInferRequest", "ModelStreamInferResponse")


def test_parameters_roundtrip_every_kind():
    values = {"flag": True, "count": -5, "timeout": 2**63 - 1, "huge": 2**64 - 1, "ratio": 0.25, "graph": "decoder"}
    msg = pb.ModelInferRequest()
    codec.fill_parameters(msg.parameters, values)
    assert msg.parameters["flag"].WhichOneof("parameter_choice") == "bool_param"  # not int64: bool is an int
    assert msg.parameters["huge"].WhichOneof("parameter_choice") == "uint64_param"
    assert codec.parameters_to_dict(msg.parameters) == values
    msg.parameters["unset"].Clear()  # a key whose oneof carries nothing
    assert "unset" not in codec.parameters_to_dict(msg.parameters)
    with pytest.raises(TypeError, match="no InferParameter representation"):
        codec.fill_parameters(msg.parameters, {"x": [1, 2]})


def _typed(datatype: str, field: str, values, shape=(1, 2)) -> pb.ModelInferRequest:
    req = pb.ModelInferRequest(model_name="m")
    getattr(req.inputs.add(name="x", datatype=datatype, shape=list(shape)).contents, field).extend(values)
    return req


@pytest.mark.parametrize(
    "request_, message",
    [
        (_typed("INT8", "int_contents", [1, 300]), "does not fit datatype INT8"),
        (_typed("BYTES", "bytes_contents", [b"ok", b"\xff\xfe"]), "does not fit datatype BYTES"),
        (_typed("FP8", "fp32_contents", [1.0, 2.0]), "unknown datatype 'FP8'"),
        (_typed("FP32", "fp32_contents", [1.0, 2.0, 3.0]), "needs 2 elements, data has 3"),
        (_typed("FP32", "fp32_contents", [1.0, 2.0], shape=(1, -2)), "negative dimension"),
        (pb.ModelInferRequest(inputs=[pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[1])],
                              raw_input_contents=[b"\x00" * 4, b"\x00" * 4]), "2 entries for 1 inputs"),
        (pb.ModelInferRequest(inputs=[pb.ModelInferRequest.InferInputTensor(datatype="FP32", shape=[1])]),
         "inputs[0] needs a name"),
    ],
)  # fmt: skip
def test_decode_rejects_bad_tensors_naming_the_problem(request_, message):
    with pytest.raises(InvalidInput) as info:
        codec.decode_request(request_, max_elements=1000)
    assert message in info.value.message


def test_decode_typed_and_raw_give_the_same_tensor():
    typed = codec.decode_request(_typed("INT16", "int_contents", [-3, 7]), max_elements=10)
    raw = pb.ModelInferRequest(inputs=[pb.ModelInferRequest.InferInputTensor(name="x", datatype="INT16", shape=[1, 2])],
                               raw_input_contents=[np.array([-3, 7], "<i2").tobytes()])  # fmt: skip
    raw = codec.decode_request(raw, max_elements=10)
    for decoded in (typed, raw):
        (tensor,) = decoded.inputs
        assert tensor.data.dtype == np.int16 and tensor.data.tolist() == [[-3, 7]]
    assert typed.id is None and typed.outputs is None  # empty proto fields mean "not given"


def test_an_fp16_output_makes_the_whole_response_raw():
    outputs = [Tensor("h", "FP16", [2], np.array([1.5, -2], np.float16)),
               Tensor("f", "FP32", [1], np.array([3], np.float32), {"note": "kept"})]  # fmt: skip
    msg = codec.encode_response(InferResponse("m", "1", outputs, "id-1"), raw=False)
    expected = [np.array([1.5, -2], "<f2").tobytes(), np.array([3], "<f4").tobytes()]
    assert list(msg.raw_output_contents) == expected
    assert not any(t.HasField("contents") for t in msg.outputs)  # never both: the protocol forbids mixing
    assert codec.parameters_to_dict(msg.outputs[1].parameters) == {"note": "kept"} and msg.id == "id-1"
