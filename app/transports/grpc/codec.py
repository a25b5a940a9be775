"""Open Inference Protocol gRPC messages <-> data-plane requests/responses.

Input data comes either typed (``contents.<type>_contents``) or raw (``raw_input_contents``,
one entry per input, in input order); never both in one request. FP16 has no typed field, so
it only travels raw. Tensor bytes are decoded by ``app.protocol.tensors``, the same code REST uses.

Responses mirror the request: raw outputs for a raw request (what Triton always returns and
what tritonclient reads), typed outputs for a typed request unless an output has no typed
field (FP16), in which case every output goes raw, since the protocol forbids mixing the two.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from app.protocol import tensors
from app.protocol.datatypes import OIP_TO_NUMPY
from app.protocol.types import InferRequest, InferResponse, RequestedOutput, Tensor
from app.errors import InvalidInput
from app.transports.grpc.generated.inference import open_inference_grpc_pb2 as pb

# The typed field of InferTensorContents for each datatype (FP16: none, raw only).
CONTENTS_FIELD: dict[str, str] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}

INT64_MIN, INT64_MAX, UINT64_MAX = -(2**63), 2**63 - 1, 2**64 - 1


# ---------------------------------------------------------------------- parameters
def parameters_to_dict(params) -> dict[str, Any]:
    """A protobuf map<string, InferParameter> as plain Python values."""
    out: dict[str, Any] = {}
    for key, param in params.items():
        choice = param.WhichOneof("parameter_choice")
        if choice is not None:  # an unset oneof carries no value; skip it like an absent key
            out[key] = getattr(param, choice)
    return out


def fill_parameters(target, values: dict[str, Any]) -> None:
    """Write plain values into a protobuf map<string, InferParameter>."""
    for key, value in values.items():
        param = target[key]
        if isinstance(value, (bool, np.bool_)):  # before int: bool is an int subclass
            param.bool_param = bool(value)
        elif isinstance(value, (int, np.integer)):
            value = int(value)
            if INT64_MIN <= value <= INT64_MAX:
                param.int64_param = value
            elif 0 <= value <= UINT64_MAX:
                param.uint64_param = value
            else:
                raise ValueError(f"parameter {key!r}: {value} does not fit in 64 bits")
        elif isinstance(value, (float, np.floating)):
            param.double_param = float(value)
        elif isinstance(value, str):
            param.string_param = value
        else:
            raise TypeError(f"parameter {key!r}: {type(value).__name__} has no InferParameter representation")


# ---------------------------------------------------------------------- requests
def _typed_input(tensor: pb.ModelInferRequest.InferInputTensor, shape: list[int], max_elements: int) -> np.ndarray:
    name, datatype = tensor.name, tensor.datatype
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        if datatype in OIP_TO_NUMPY:
            raise InvalidInput(f"input {name!r}: {datatype} has no typed contents field; send it in raw_input_contents")
        raise InvalidInput(f"input {name!r}: unknown datatype {datatype!r} (one of {', '.join(OIP_TO_NUMPY)})")
    stray = [f.name for f, values in tensor.contents.ListFields() if f.name != field and len(values)]
    if stray:
        raise InvalidInput(f"input {name!r}: {datatype} data belongs in contents.{field}, got {', '.join(stray)}")
    return tensors.from_json(name, datatype, shape, list(getattr(tensor.contents, field)), max_elements)


def decode_request(msg: pb.ModelInferRequest, *, max_elements: int) -> InferRequest:
    if not msg.inputs:
        raise InvalidInput("request needs at least one input")
    raw = msg.raw_input_contents
    if raw:
        if len(raw) != len(msg.inputs):
            raise InvalidInput(f"raw_input_contents has {len(raw)} entries for {len(msg.inputs)} inputs; "
                               "it needs one per input")
        typed = [t.name for t in msg.inputs if t.HasField("contents") and t.contents.ByteSize()]
        if typed:
            raise InvalidInput(
                f"input(s) {', '.join(map(repr, typed))} carry contents while the request uses raw_input_contents; "
                "use one or the other"
            )
    inputs: list[Tensor] = []
    for i, tensor in enumerate(msg.inputs):
        if not tensor.name:
            raise InvalidInput(f"inputs[{i}] needs a name")
        shape = list(tensor.shape)
        if raw:
            data = tensors.from_raw(tensor.name, tensor.datatype, shape, raw[i], max_elements)
        else:
            data = _typed_input(tensor, shape, max_elements)
        inputs.append(Tensor(tensor.name, tensor.datatype, shape, data, parameters_to_dict(tensor.parameters)))
    outputs = [RequestedOutput(o.name, parameters_to_dict(o.parameters)) for o in msg.outputs] or None
    return InferRequest(inputs, outputs, msg.id or None, parameters_to_dict(msg.parameters))


# ---------------------------------------------------------------------- responses
def uses_raw_inputs(msg: pb.ModelInferRequest) -> bool:
    return len(msg.raw_input_contents) > 0


def encode_response(resp: InferResponse, *, raw: bool) -> pb.ModelInferResponse:
    """``raw``: put every output in raw_output_contents (forced when an output has no typed field)."""
    raw = raw or any(out.datatype not in CONTENTS_FIELD for out in resp.outputs)
    msg = pb.ModelInferResponse(model_name=resp.model_name, model_version=resp.model_version, id=resp.id or "")
    fill_parameters(msg.parameters, resp.parameters)
    for out in resp.outputs:
        tensor = msg.outputs.add(name=out.name, datatype=out.datatype, shape=out.shape)
        fill_parameters(tensor.parameters, out.parameters)
        if raw:
            msg.raw_output_contents.append(tensors.to_raw(out.data))
        elif out.datatype == "BYTES":
            tensor.contents.bytes_contents.extend(x.encode() if isinstance(x, str) else x for x in out.data.ravel())
        else:
            getattr(tensor.contents, CONTENTS_FIELD[out.datatype]).extend(out.data.ravel().tolist())
    return msg


def encode_model_metadata(meta: dict[str, Any]) -> pb.ModelMetadataResponse:
    """The data plane's metadata dict; keys the protocol has no field for (state, task) stay REST-only."""
    def specs(items):
        return [pb.ModelMetadataResponse.TensorMetadata(name=s["name"], datatype=s["datatype"], shape=s["shape"])
                for s in items]  # fmt: skip

    return pb.ModelMetadataResponse(name=meta["name"], versions=meta["versions"], platform=meta["platform"],
                                    inputs=specs(meta["inputs"]), outputs=specs(meta["outputs"]))  # fmt: skip
