"""Hypothesis over the gRPC services' request messages, against a live server: every field of every request
message of both services (the Open Inference Protocol's GRPCInferenceService and dendrite.v1.Predict) is
generated from its descriptor, biased towards values that reach deep (real model, input and datatype names,
raw contents of the size a shape needs, ids out of a table), and mixed with arbitrary ones. A fixed seed,
DENDRITE_FUZZ_EXAMPLES messages per method (default 300). Client-chosen input never gets INTERNAL or
UNKNOWN, and the server counts no server error.

The server serves the smoke-trained task models plus tiny OIP models (an embedding lookup, an identity per
datatype, an affine map)."""

from __future__ import annotations

import base64
import os
import shutil

import grpc
import numpy as np
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.protocol.datatypes import OIP_TO_NUMPY
from app.protocol.datatypes import DATATYPES
from app.tasks.image.pipeline import EXAMPLE_IMAGE
from app.transports.grpc.generated.dendrite.v1 import predict_pb2, predict_pb2_grpc
from app.transports.grpc.generated.inference import open_inference_grpc_pb2 as pb
from app.transports.grpc.generated.inference import open_inference_grpc_pb2_grpc as pb_grpc
from testkit.models import affine_model, identity_model, lookup_model, write_model
from tests.support import live_server

EXAMPLES = int(os.environ.get("DENDRITE_FUZZ_EXAMPLES", "300"))
CLIENT_CODES_ONLY = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
# model -> {input: (datatype, non-batch dims)} for the tiny OIP models.
TINY = {"lookup": {"user": ("INT64", [])}, "affine": {"x": ("FP32", [4])},
        "identity": {f"in_{dt}": (dt, [-1]) for dt in DATATYPES}}  # fmt: skip
TASK_MODELS = ["fashion-cnn", "imagenet-efficientnet-lite0", "sentiment-minilm", "translation-de-en", "recommendation-neumf"]

INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1), FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1), FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1), FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1), FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1), FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}  # fmt: skip


def small_ints(lo: int, hi: int) -> st.SearchStrategy[int]:
    """Mostly small values (counts, k, beam sizes, ids), sometimes any value of the type."""
    return st.one_of(st.integers(max(lo, -3), min(hi, 300)), st.integers(lo, hi), st.sampled_from([lo, hi]))


NAMES = {  # fields whose meaningful values are a short list: a real one half of the time
    "model_name": TASK_MODELS + list(TINY), "model": TASK_MODELS + list(TINY), "datatype": list(DATATYPES),
    "name": [n for inputs in TINY.values() for n in inputs] + ["y", "s", "scores", "out_FP32"] + TASK_MODELS,
    "model_version": ["1", "2", "0", "-1"], "version": ["1", "2", "0"], "user_id": ["1", "196", "0", "99999999"],
}


def scalar(field: FieldDescriptor) -> st.SearchStrategy:
    if field.name in NAMES:
        return st.one_of(st.sampled_from(NAMES[field.name]), st.text(max_size=12))
    if field.type == FieldDescriptor.TYPE_STRING:
        return st.text(max_size=40)
    if field.name == "images":
        return st.one_of(st.binary(max_size=128), st.just(base64.b64decode(EXAMPLE_IMAGE)))
    if field.type == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=128)
    if field.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if field.type == FieldDescriptor.TYPE_FLOAT:
        return st.floats(width=32)
    if field.type == FieldDescriptor.TYPE_DOUBLE:
        return st.floats()
    if field.type == FieldDescriptor.TYPE_ENUM:
        return st.sampled_from([v.number for v in field.enum_type.values])
    return small_ints(*INT_RANGES[field.type])


def is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def field_values(field: FieldDescriptor, depth: int) -> st.SearchStrategy:
    if is_map(field):
        key = st.one_of(st.sampled_from(["timeout", "binary_data", "binary_data_output", "graph", "priority"]),
                        st.text(max_size=10))  # fmt: skip
        return st.dictionaries(key, field_values(field.message_type.fields_by_name["value"], depth + 1), max_size=3)
    one = messages(field.message_type, depth + 1) if field.message_type else scalar(field)
    if field.name == "shape":
        one = st.one_of(st.integers(-2, 8), st.sampled_from([2**31, 2**62]))
    if field.is_repeated:
        return st.lists(one, max_size=4)
    return one


def build(descriptor: Descriptor, values: dict):
    msg = message_factory.GetMessageClass(descriptor)()
    for name, value in values.items():
        field = descriptor.fields_by_name[name]
        target = getattr(msg, name) if field.is_repeated or field.message_type else None
        if is_map(field):
            for key, item in value.items():
                if field.message_type.fields_by_name["value"].message_type:
                    target[key].CopyFrom(item)
                else:
                    target[key] = item
        elif field.is_repeated and field.message_type:
            for item in value:
                target.add().CopyFrom(item)
        elif field.is_repeated:
            target.extend(value)
        elif field.message_type:
            target.CopyFrom(value)
        else:
            setattr(msg, name, value)
    return msg


def messages(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy:
    """Any message of this type: each field set or not, nested messages down to three levels."""
    fields = {f.name: field_values(f, depth) for f in descriptor.fields if depth < 3 or f.message_type is None}
    return st.fixed_dictionaries({}, optional=fields).map(lambda values: build(descriptor, values))


@st.composite
def plausible_infers(draw) -> pb.ModelInferRequest:
    """An infer request that passes the protocol's checks often: a tiny model's inputs by name and datatype,
    a shape of the right rank, and raw contents of exactly the bytes it needs, holding any values (NaN,
    ids out of the lookup table, negative ids)."""
    model = draw(st.sampled_from(sorted(TINY)))
    request = pb.ModelInferRequest(model_name=model)
    rows = draw(st.integers(1, 3))
    inputs = TINY[model] if model != "identity" else dict([draw(st.sampled_from(sorted(TINY[model].items())))])
    for name, (datatype, dims) in inputs.items():
        shape = [rows] + [draw(st.integers(1, 4)) if d == -1 else d for d in dims]
        request.inputs.add(name=name, datatype=datatype, shape=shape)
        count = int(np.prod(shape))
        if datatype == "BYTES":
            items = draw(st.lists(st.binary(max_size=8), min_size=count, max_size=count))
            request.raw_input_contents.append(b"".join(len(i).to_bytes(4, "little") + i for i in items))
        else:
            size = count * OIP_TO_NUMPY[datatype].itemsize
            request.raw_input_contents.append(draw(st.binary(min_size=size, max_size=size)))
    return request


OIP = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
PREDICT = predict_pb2.DESCRIPTOR.services_by_name["Predict"]
METHODS = {f"{service.name}/{m.name}": (service, m) for service in (OIP, PREDICT) for m in service.methods}


@pytest.fixture(scope="module")
def fuzz_server(smoke_repository, tmp_path_factory):
    repo = tmp_path_factory.mktemp("grpc-fuzz") / "models"
    shutil.copytree(smoke_repository, repo)
    write_model(repo, "lookup", lookup_model(rows=10), {"max_batch_size": 8})
    write_model(repo, "affine", affine_model(), {"max_batch_size": 8})
    write_model(repo, "identity", identity_model(), {"max_batch_size": 4})
    with live_server(repo, grpc=True, max_items_per_request=8, max_text_chars=2000, max_image_pixels=4_000_000) as s:
        yield s


@pytest.fixture(scope="module")
def stubs(fuzz_server):
    with grpc.insecure_channel(fuzz_server.grpc_target) as channel:
        yield {"GRPCInferenceService": pb_grpc.GRPCInferenceServiceStub(channel),
               "Predict": predict_pb2_grpc.PredictStub(channel)}  # fmt: skip


def call(stubs, service, method, request) -> None:
    rpc = getattr(stubs[service.name], method.name)
    try:
        if method.client_streaming:
            for reply in rpc(iter(request), timeout=60):
                assert not reply.error_message.startswith("internal error"), reply.error_message
        else:
            rpc(request, timeout=60)
    except grpc.RpcError as err:
        assert err.code() not in CLIENT_CODES_ONLY, (method.full_name, err.code(), err.details(), request)


@pytest.mark.parametrize("label", sorted(METHODS))
def test_generated_messages_never_get_internal(fuzz_server, stubs, label):
    service, method = METHODS[label]
    one = messages(method.input_type)
    if method.input_type.full_name == pb.ModelInferRequest.DESCRIPTOR.full_name:
        one = st.one_of(one, plausible_infers())
    strategy = st.lists(one, min_size=1, max_size=3) if method.client_streaming else one

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(request=strategy)
    def fuzz(request):
        call(stubs, service, method, request)

    fuzz()


def test_no_server_error_was_counted(fuzz_server):
    samples = [s for metric in fuzz_server.service.metrics.registry.collect() if metric.name == "dendrite_requests"
               for s in metric.samples if s.name.endswith("_total") and s.labels.get("outcome") == "server_error"]  # fmt: skip
    assert sum(s.value for s in samples) == 0, [s for s in samples if s.value]
