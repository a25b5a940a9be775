"""Open Inference Protocol over a real gRPC channel: every RPC, typed and raw tensors of every
datatype, parity with REST, status codes, deadlines, message size, health and reflection.

Requests are built and responses decoded here from the specification (field per datatype, raw
little-endian layout), not with the server's codec, so a codec bug cannot hide behind itself.
"""

from __future__ import annotations

import asyncio
import os
import queue
import struct
import subprocess
import threading
import time
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from app.transports.grpc.generated.inference import open_inference_grpc_pb2 as pb
from app.transports.grpc.generated.inference import open_inference_grpc_pb2_grpc as pb_grpc
from app.transports.grpc.oip import InferenceServicer
from app.transports.grpc.server import GrpcServer
from testkit.models import IDENTITY_TYPES, affine_model, identity_model, matmul_chain_model, write_model
from tests.support import live_server

MiB = 1024 * 1024
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 64 * MiB), ("grpc.max_send_message_length", 64 * MiB)]
# The specification's typed field per datatype (FP16 has none: raw only).
FIELD = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
         "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
         "UINT64": "uint64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents"}  # fmt: skip
NUMPY = {"BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
         "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64, "FP16": np.float16,
         "FP32": np.float32, "FP64": np.float64, "BYTES": object}  # fmt: skip
TYPED = tuple(FIELD)  # every datatype that has a typed field
# tritonclient needs protobuf < 7 (Dendrite pins >= 7), so it lives in its own virtual environment.
TRITONCLIENT_PYTHON = os.environ.get("DENDRITE_TRITONCLIENT_PYTHON")
HEAVY_ROWS = 256
GATHER_ROWS, GATHER_DELAY_S = 8, 5.0


def sample(datatype: str) -> np.ndarray:
    """A 2x2 tensor including the datatype's extremes (they must survive the typed fields)."""
    if datatype == "BYTES":
        return np.array([["hello", "wörld"], ["", "x y"]], dtype=object)
    if datatype == "BOOL":
        return np.array([[True, False], [False, True]])
    dtype = np.dtype(NUMPY[datatype])
    info = np.iinfo(dtype) if dtype.kind in "iu" else np.finfo(dtype)
    return np.array([[info.min, info.max], [0, 3]], dtype=dtype)


def raw_bytes(arr: np.ndarray, datatype: str) -> bytes:
    if datatype == "BYTES":
        return b"".join(struct.pack("<I", len(s.encode())) + s.encode() for s in arr.ravel())
    return arr.astype(np.dtype(NUMPY[datatype]).newbyteorder("<")).tobytes()


def from_raw_bytes(raw: bytes, datatype: str, shape: list[int]) -> np.ndarray:
    if datatype == "BYTES":
        items, pos = [], 0
        while pos < len(raw):
            (n,) = struct.unpack_from("<I", raw, pos)
            items.append(raw[pos + 4 : pos + 4 + n].decode())
            pos += 4 + n
        return np.array(items, dtype=object).reshape(shape)
    return np.frombuffer(raw, dtype=np.dtype(NUMPY[datatype]).newbyteorder("<")).reshape(shape)


def infer_request(model: str, tensors: dict[str, tuple[str, np.ndarray]], *, raw: bool, outputs=(), **fields):
    req = pb.ModelInferRequest(model_name=model, **fields)
    for name, (datatype, arr) in tensors.items():
        tensor = req.inputs.add(name=name, datatype=datatype, shape=list(arr.shape))
        if raw:
            req.raw_input_contents.append(raw_bytes(arr, datatype))
        elif datatype == "BYTES":
            tensor.contents.bytes_contents.extend(s.encode() for s in arr.ravel())
        else:
            getattr(tensor.contents, FIELD[datatype]).extend(arr.ravel().tolist())
    for name in outputs:
        req.outputs.add(name=name)
    return req


def decoded_outputs(resp: pb.ModelInferResponse) -> dict[str, tuple[str, list[int], np.ndarray]]:
    """name -> (datatype, shape, array) for raw and typed responses alike."""
    out = {}
    for i, tensor in enumerate(resp.outputs):
        shape = list(tensor.shape)
        if resp.raw_output_contents:
            assert not tensor.HasField("contents"), "raw and typed contents must not be mixed"
            arr = from_raw_bytes(resp.raw_output_contents[i], tensor.datatype, shape)
        else:
            values = list(getattr(tensor.contents, FIELD[tensor.datatype]))
            if tensor.datatype == "BYTES":
                values = [v.decode() for v in values]
            arr = np.array(values, dtype=NUMPY[tensor.datatype]).reshape(shape)
        out[tensor.name] = (tensor.datatype, shape, arr)
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo")
    write_model(repo, "affine", affine_model(), {"max_batch_size": 8}, versions=(1, 2))
    write_model(repo, "identity", identity_model(), {"max_batch_size": 4})
    write_model(repo, "identity_typed", identity_model(TYPED), {"max_batch_size": 4})
    write_model(repo, "slow", matmul_chain_model(width=512, depth=16),
                {"max_batch_size": HEAVY_ROWS, "dynamic_batching": {"max_queue_size": 2}})  # fmt: skip
    write_model(repo, "corrupt", b"\x00garbage", {"max_batch_size": 4})
    # A partial batch waits up to GATHER_DELAY_S for more rows, a full one (8 rows) goes at once: requests
    # that reach the batcher together run as one batch, and one that comes alone waits in the queue (the
    # fixed delay policy: the adaptive one would run a lone request at once).
    write_model(repo, "gather", affine_model(), {"max_batch_size": GATHER_ROWS, "dynamic_batching": {
        "max_queue_delay_microseconds": int(GATHER_DELAY_S * 1e6), "delay_policy": "fixed"}})  # fmt: skip
    # non-strict: the corrupt model would keep the server not ready (tests/test_readiness.py covers strict)
    with live_server(repo, grpc=True, retry_after_seconds=3, strict_readiness=False) as s:
        yield s


@pytest.fixture(scope="module")
def channel(server):
    with grpc.insecure_channel(server.grpc_target, options=CHANNEL_OPTIONS) as ch:
        yield ch


@pytest.fixture(scope="module")
def stub(channel):
    return pb_grpc.GRPCInferenceServiceStub(channel)


def rpc_error(call, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, **kwargs)
    return info.value


def counter(server, name: str, **labels) -> float:
    value = server.service.metrics.registry.get_sample_value(name, labels)
    return value or 0.0


# ---------------------------------------------------------------------- health and metadata
def test_server_live_ready_and_metadata(stub):
    assert stub.ServerLive(pb.ServerLiveRequest()).live is True
    assert stub.ServerReady(pb.ServerReadyRequest()).ready is True
    meta = stub.ServerMetadata(pb.ServerMetadataRequest())
    assert meta.name == "dendrite" and meta.version and "binary_tensor_data" in meta.extensions


def test_model_metadata_and_ready(stub):
    meta = stub.ModelMetadata(pb.ModelMetadataRequest(name="affine"))
    assert meta.name == "affine" and list(meta.versions) == ["2"] and meta.platform == "onnxruntime_onnx"
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [("x", "FP32", [-1, 4])]
    assert [(t.name, list(t.shape)) for t in meta.outputs] == [("y", [-1, 4]), ("s", [-1, 1])]
    assert stub.ModelMetadata(pb.ModelMetadataRequest(name="affine", version="2")).name == "affine"
    assert stub.ModelReady(pb.ModelReadyRequest(name="affine")).ready is True
    assert stub.ModelReady(pb.ModelReadyRequest(name="affine", version="2")).ready is True
    assert stub.ModelReady(pb.ModelReadyRequest(name="corrupt")).ready is False  # known, but failed to load
    for call, request in [(stub.ModelReady, pb.ModelReadyRequest(name="nope")),
                          (stub.ModelMetadata, pb.ModelMetadataRequest(name="nope")),
                          (stub.ModelMetadata, pb.ModelMetadataRequest(name="affine", version="1"))]:  # fmt: skip
        err = rpc_error(call, request)
        assert err.code() == grpc.StatusCode.NOT_FOUND, err.details()


# ---------------------------------------------------------------------- inference
def test_infer_typed_with_id_and_requested_output(server, stub):
    before = counter(server, "dendrite_requests_total", model="affine", version="2", protocol="grpc", outcome="success")
    x = np.array([[1, 2, 3, 4], [5, 6, 7, 8]], np.float32)
    resp = stub.ModelInfer(infer_request("affine", {"x": ("FP32", x)}, raw=False, outputs=["s"], id="req-7"))
    assert (resp.model_name, resp.model_version, resp.id) == ("affine", "2", "req-7")
    assert not resp.raw_output_contents  # a typed request gets typed outputs
    ((name, (datatype, shape, s)),) = decoded_outputs(resp).items()
    assert (name, datatype, shape) == ("s", "FP32", [2, 1]) and s.ravel().tolist() == [24.0, 56.0]
    after = counter(server, "dendrite_requests_total", model="affine", version="2", protocol="grpc", outcome="success")
    assert after == before + 1  # counted under protocol="grpc"


@pytest.mark.parametrize("raw", [False, True], ids=["typed", "raw"])
def test_every_typed_datatype_roundtrips(stub, raw):
    tensors = {f"in_{dt}": (dt, sample(dt)) for dt in TYPED}
    resp = stub.ModelInfer(infer_request("identity_typed", tensors, raw=raw))
    assert bool(resp.raw_output_contents) == raw  # the response mirrors the request's encoding
    outputs = decoded_outputs(resp)
    for dt in TYPED:
        datatype, shape, arr = outputs[f"out_{dt}"]
        assert (datatype, shape) == (dt, [2, 2])
        np.testing.assert_array_equal(arr, sample(dt), err_msg=dt)


def test_raw_contents_for_every_datatype_incl_fp16_and_requested_outputs(stub):
    tensors = {f"in_{dt}": (dt, sample(dt)) for dt in IDENTITY_TYPES}
    wanted = ["out_FP16", "out_BYTES", "out_UINT64"]
    resp = stub.ModelInfer(infer_request("identity", tensors, raw=True, outputs=wanted))
    assert sorted(t.name for t in resp.outputs) == sorted(wanted) and len(resp.raw_output_contents) == 3
    bytes_at = [t.name for t in resp.outputs].index("out_BYTES")  # raw entries follow the outputs' order
    expected = b"\x05\x00\x00\x00hello" b"\x06\x00\x00\x00w\xc3\xb6rld" b"\x00\x00\x00\x00" b"\x03\x00\x00\x00x y"
    assert resp.raw_output_contents[bytes_at] == expected  # 4-byte little-endian length, then UTF-8
    for name, (datatype, shape, arr) in decoded_outputs(resp).items():
        np.testing.assert_array_equal(arr, sample(datatype), err_msg=name)


def test_rest_and_grpc_give_identical_answers(server, stub):
    rng = np.random.default_rng(7)
    cases = [("affine", {"x": ("FP32", rng.standard_normal((3, 4)).astype(np.float32))}),
             ("identity_typed", {f"in_{dt}": (dt, sample(dt)) for dt in TYPED})]  # fmt: skip
    with httpx.Client(base_url=server.url, timeout=30) as rest:
        for model, tensors in cases:
            inputs = [{"name": n, "datatype": dt, "shape": list(a.shape), "data": a.ravel().tolist()}
                      for n, (dt, a) in tensors.items()]  # fmt: skip
            body = {"id": "same", "inputs": inputs}
            r = rest.post(f"/v2/models/{model}/infer", json=body)
            assert r.status_code == 200, r.text
            doc = r.json()
            over_rest = {}
            for o in doc["outputs"]:
                data = np.array(o["data"], dtype=NUMPY[o["datatype"]]).reshape(o["shape"])
                over_rest[o["name"]] = (o["datatype"], o["shape"], data)
            for raw in (False, True):
                resp = stub.ModelInfer(infer_request(model, tensors, raw=raw, id="same"))
                head = (resp.model_name, resp.model_version, resp.id)
                assert head == (doc["model_name"], doc["model_version"], doc["id"])
                over_grpc = decoded_outputs(resp)
                assert list(over_grpc) == list(over_rest)
                for name, (datatype, shape, arr) in over_grpc.items():
                    assert (datatype, shape) == over_rest[name][:2]
                    np.testing.assert_array_equal(arr, over_rest[name][2], err_msg=f"{model}/{name} raw={raw}")


def test_messages_above_grpcs_default_4mb_are_accepted(stub):
    big = np.arange(2_000_000, dtype=np.float32).reshape(1, -1)  # 8 MB each way
    tensors = {f"in_{dt}": (dt, sample(dt)[:1, :1]) for dt in IDENTITY_TYPES} | {"in_FP32": ("FP32", big)}
    resp = stub.ModelInfer(infer_request("identity", tensors, raw=True, outputs=["out_FP32"]))
    assert len(resp.raw_output_contents[0]) == big.nbytes > 4 * MiB
    np.testing.assert_array_equal(decoded_outputs(resp)["out_FP32"][2], big)



def test_messages_above_the_configured_limit_are_refused(tmp_path):
    write_model(tmp_path, "identity", identity_model(("FP32",)), {"max_batch_size": 1})
    big = np.ones((1, 2_000_000), np.float32)  # 8 MB against a 5 MiB limit
    with live_server(tmp_path, grpc=True, grpc_max_message_bytes=5 * MiB) as s, \
            grpc.insecure_channel(s.grpc_target, options=CHANNEL_OPTIONS) as ch:  # fmt: skip
        err = rpc_error(pb_grpc.GRPCInferenceServiceStub(ch).ModelInfer,
                        infer_request("identity", {"in_FP32": ("FP32", big)}, raw=True))  # fmt: skip
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and str(5 * MiB) in err.details()

# ---------------------------------------------------------------------- errors
def _affine(raw=False, **kw):
    return infer_request("affine", {"x": ("FP32", np.ones((1, 4), np.float32))}, raw=raw, **kw)


def _contents_and_raw():
    req = _affine()
    req.raw_input_contents.append(np.ones((1, 4), np.float32).tobytes())
    return req


def _in_field(datatype: str, field: str):
    req = pb.ModelInferRequest(model_name="affine")
    getattr(req.inputs.add(name="x", datatype=datatype, shape=[1, 4]).contents, field).extend([1, 2, 3, 4])
    return req


@pytest.mark.parametrize(
    "request_, code, message",
    [
        (infer_request("nope", {"x": ("FP32", np.ones((1, 4), np.float32))}, raw=False),
         grpc.StatusCode.NOT_FOUND, "model 'nope' not found"),
        (infer_request("affine", {"x": ("FP32", np.ones((1, 3), np.float32))}, raw=False),
         grpc.StatusCode.INVALID_ARGUMENT, "shape [1, 3] does not match the model's [-1, 4]"),
        (infer_request("affine", {"x": ("INT32", np.ones((1, 4), np.int32))}, raw=False),
         grpc.StatusCode.INVALID_ARGUMENT, "datatype INT32 but model 'affine' expects FP32"),
        (infer_request("affine", {"x": ("FP16", np.ones((1, 4), np.float16))}, raw=True),
         grpc.StatusCode.INVALID_ARGUMENT, "datatype FP16 but model 'affine' expects FP32"),
        (_contents_and_raw(), grpc.StatusCode.INVALID_ARGUMENT, "use one or the other"),
        (_in_field("FP32", "fp64_contents"), grpc.StatusCode.INVALID_ARGUMENT,
         "belongs in contents.fp32_contents, got fp64_contents"),
        (_in_field("FP16", "fp32_contents"), grpc.StatusCode.INVALID_ARGUMENT,
         "FP16 has no typed contents field; send it in raw_input_contents"),
        (pb.ModelInferRequest(model_name="affine", inputs=[pb.ModelInferRequest.InferInputTensor(
            name="x", datatype="FP32", shape=[1, 4])], raw_input_contents=[b"\x00" * 12]),
         grpc.StatusCode.INVALID_ARGUMENT, "needs 16 bytes, got 12"),
        (_affine(raw=True, outputs=["q"]), grpc.StatusCode.INVALID_ARGUMENT, "unknown output 'q'"),
        (pb.ModelInferRequest(model_name="affine"), grpc.StatusCode.INVALID_ARGUMENT, "at least one input"),
        (infer_request("corrupt", {"x": ("FP32", np.ones((1, 4), np.float32))}, raw=False),
         grpc.StatusCode.UNAVAILABLE, "UNAVAILABLE"),
    ],
    ids=["unknown-model", "bad-shape", "bad-datatype", "fp16-for-fp32", "contents-and-raw", "wrong-contents-field",
         "typed-fp16", "raw-size", "unknown-output", "no-inputs", "model-not-ready"],
)  # fmt: skip
def test_errors_map_to_status_codes(stub, request_, code, message):
    err = rpc_error(stub.ModelInfer, request_)
    assert err.code() == code, err.details()
    assert message in err.details()


def test_queue_full_is_resource_exhausted_with_retry_after(stub):
    x = np.ones((HEAVY_ROWS, 512), np.float32)
    calls = [stub.ModelInfer.future(infer_request("slow", {"x": ("FP32", x)}, raw=True)) for _ in range(10)]
    codes, rejected = [], None
    for call in calls:
        try:
            call.result(timeout=60)
            codes.append(grpc.StatusCode.OK)
        except grpc.RpcError as err:
            codes.append(err.code())
            rejected = err
    assert grpc.StatusCode.OK in codes and set(codes) == {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert "queue is full" in rejected.details()
    assert ("retry-after", "3") in tuple(rejected.trailing_metadata())


def test_client_deadline_drops_the_queued_request_without_compute(server, stub):
    """A lone row waits in `gather`'s queue for GATHER_DELAY_S (a partial batch); its 0.2 s deadline ends it
    first: the client hears DEADLINE_EXCEEDED at the deadline and the server never computes the row. (Not a busy
    model: how long a queue of real work lasts depends on the machine, the delay does not.)"""
    mv = {"model": "gather", "version": "1"}
    rows_before = counter(server, "dendrite_inference_count_total", **mv)
    dropped_before = sum(counter(server, "dendrite_rejected_requests_total", **mv, reason=r)
                         for r in ("deadline", "cancelled"))  # fmt: skip
    start = time.monotonic()
    err = rpc_error(stub.ModelInfer, affine_row(0, model="gather"), timeout=0.2)
    late_after = time.monotonic() - start
    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert late_after < GATHER_DELAY_S / 2, late_after  # answered at its deadline, not when the batch would go
    # Past the moment the partial batch would have run: nothing was computed, and the drop was counted.
    time.sleep(GATHER_DELAY_S - late_after + 0.5)
    assert counter(server, "dendrite_inference_count_total", **mv) == rows_before
    dropped = sum(counter(server, "dendrite_rejected_requests_total", **mv, reason=r)
                  for r in ("deadline", "cancelled"))  # fmt: skip
    assert dropped == dropped_before + 1


class Aborted(Exception):
    pass


class DeadlineContext:
    """Just enough of grpc.aio.ServicerContext to hand the servicer a chosen deadline; over a
    real channel the client's own timer races the server's, so this pins the server's side."""

    def __init__(self, remaining: float | None):
        self.remaining = remaining

    def time_remaining(self) -> float | None:
        return self.remaining

    async def abort(self, code, details="", trailing_metadata=()):
        raise Aborted(code, details)


def test_the_grpc_deadline_becomes_the_data_plane_deadline(server):
    servicer = InferenceServicer(server.service.dataplane)
    request = _affine(raw=True)
    with pytest.raises(Aborted) as info:
        server.call(servicer.ModelInfer(request, DeadlineContext(remaining=0.0)))
    code, details = info.value.args
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED and "deadline had passed before it was queued" in details
    assert server.call(servicer.ModelInfer(request, DeadlineContext(remaining=None))).model_name == "affine"


# ---------------------------------------------------------------------- streaming (Triton's ModelStreamInfer)
def row(i: int) -> np.ndarray:
    return np.arange(4 * i, 4 * i + 4, dtype=np.float32).reshape(1, 4)


def affine_row(i: int, model: str = "affine", **fields) -> pb.ModelInferRequest:
    return infer_request(model, {"x": ("FP32", row(i))}, raw=True, id=f"r{i}", **fields)


def stream(stub, requests, **kwargs) -> list[pb.ModelStreamInferResponse]:
    """Send `requests` on one ModelStreamInfer call, half-close, and return every answer."""
    return list(stub.ModelStreamInfer(iter(requests), timeout=60, **kwargs))


def check_affine(response: pb.ModelStreamInferResponse, i: int) -> None:
    assert response.error_message == "", response.error_message
    resp = response.infer_response
    assert (resp.model_name, resp.model_version, resp.id) == ("affine", "2", f"r{i}")
    out = decoded_outputs(resp)
    np.testing.assert_array_equal(out["y"][2], row(i) * 2 + 1)
    np.testing.assert_array_equal(out["s"][2], (row(i) * 2 + 1).sum(axis=1, keepdims=True))


def test_stream_answers_every_request_matched_by_id(server, stub):
    before = counter(server, "dendrite_requests_total", model="affine", version="2", protocol="grpc", outcome="success")
    answers = stream(stub, [affine_row(i) for i in range(12)])
    by_id = {a.infer_response.id: a for a in answers}
    assert len(answers) == 12 and sorted(by_id) == sorted(f"r{i}" for i in range(12))  # each answered exactly once
    for i in range(12):
        check_affine(by_id[f"r{i}"], i)
        assert len(by_id[f"r{i}"].infer_response.raw_output_contents) == 2  # raw in, raw out, as for ModelInfer
    after = counter(server, "dendrite_requests_total", model="affine", version="2", protocol="grpc", outcome="success")
    assert after == before + 12  # the data plane counts each under protocol="grpc"


def test_stream_typed_request_gets_typed_answer(stub):
    x = np.array([[1, 2, 3, 4]], np.float32)
    (answer,) = stream(stub, [infer_request("affine", {"x": ("FP32", x)}, raw=False, outputs=["s"], id="t")])
    assert answer.error_message == "" and answer.infer_response.id == "t"
    assert not answer.infer_response.raw_output_contents
    assert list(answer.infer_response.outputs[0].contents.fp32_contents) == [24.0]


def test_a_bad_request_mid_stream_is_an_error_message_and_the_stream_goes_on(server, stub):
    bad_shape = infer_request("affine", {"x": ("FP32", np.ones((1, 3), np.float32))}, raw=True, id="bad-shape")
    no_inputs = pb.ModelInferRequest(model_name="affine", id="no-inputs")
    requests = [affine_row(0), affine_row(1), bad_shape, affine_row(2), no_inputs, affine_row(3)]
    answers = stream(stub, requests)  # no exception: the call itself ends OK
    assert len(answers) == len(requests)
    by_id = {a.infer_response.id: a for a in answers}
    assert "shape [1, 3] does not match the model's [-1, 4]" in by_id["bad-shape"].error_message
    assert "at least one input" in by_id["no-inputs"].error_message
    for bad in ("bad-shape", "no-inputs"):  # the failed request's name, version and id come back, no outputs
        resp = by_id[bad].infer_response
        assert (resp.model_name, resp.id) == ("affine", bad) and not resp.outputs
    for i in range(4):
        check_affine(by_id[f"r{i}"], i)


def test_stream_unknown_model_is_an_error_message(stub):
    requests = [affine_row(0, model="nope"), affine_row(1, model="affine", model_version="1"), affine_row(2)]
    answers = {a.infer_response.id: a for a in stream(stub, requests)}
    assert answers["r0"].error_message.startswith("model 'nope' not found (loaded models: affine, ")
    assert answers["r0"].infer_response.model_name == "nope"
    assert "model 'affine' has no version 1 (versions: 2)" in answers["r1"].error_message
    assert answers["r1"].infer_response.model_version == "1"
    check_affine(answers["r2"], 2)


def test_stream_requests_run_concurrently_and_batch_together(server, stub):
    """8 one-row requests on one stream fill one batch of `gather` (8 rows, so it goes at once instead of waiting
    GATHER_DELAY_S): the stream's requests reached the batcher together. Sequential handling would run 8
    batches of one row, each after GATHER_DELAY_S."""
    mv = {"model": "gather", "version": "1"}
    runs0 = counter(server, "dendrite_execution_count_total", **mv)
    rows0 = counter(server, "dendrite_inference_count_total", **mv)
    start = time.monotonic()
    answers = stream(stub, [affine_row(i, model="gather") for i in range(GATHER_ROWS)])
    took = time.monotonic() - start
    assert sorted(a.infer_response.id for a in answers) == sorted(f"r{i}" for i in range(GATHER_ROWS))
    for a in answers:
        assert a.error_message == ""
        i = int(a.infer_response.id[1:])
        np.testing.assert_array_equal(decoded_outputs(a.infer_response)["y"][2], row(i) * 2 + 1)  # its own row back
    assert counter(server, "dendrite_inference_count_total", **mv) - rows0 == GATHER_ROWS
    assert counter(server, "dendrite_execution_count_total", **mv) - runs0 == 1  # one batch of all 8
    assert took < GATHER_DELAY_S


def wait_until(condition, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.02)


@pytest.mark.parametrize("ending", ["client-cancels", "deadline"])
def test_a_stream_that_ends_early_withdraws_its_queued_requests(server, stub, ending):
    """Two rows wait in `gather`'s queue (a partial batch waits GATHER_DELAY_S); the call ends (the client
    cancels, or its deadline passes): the server drops both without compute."""
    mv = {"model": "gather", "version": "1"}
    rows0 = counter(server, "dendrite_inference_count_total", **mv)
    dropped0 = sum(counter(server, "dendrite_rejected_requests_total", **mv, reason=r)
                   for r in ("deadline", "cancelled"))  # fmt: skip
    outgoing: queue.Queue = queue.Queue()
    outgoing.put(affine_row(0, model="gather"))
    outgoing.put(affine_row(1, model="gather"))
    call = stub.ModelStreamInfer(iter(outgoing.get, None), timeout=60 if ending == "client-cancels" else 1.0)
    try:
        wait_until(lambda: counter(server, "dendrite_pending_requests", **mv) == 2)
        if ending == "client-cancels":
            call.cancel()
        with pytest.raises(grpc.RpcError) as err:
            list(call)
        expected = grpc.StatusCode.CANCELLED if ending == "client-cancels" else grpc.StatusCode.DEADLINE_EXCEEDED
        assert err.value.code() == expected
    finally:
        outgoing.put(None)  # ends the request iterator (gRPC's sending thread waits on it)
    wait_until(lambda: sum(counter(server, "dendrite_rejected_requests_total", **mv, reason=r)
                           for r in ("deadline", "cancelled")) == dropped0 + 2)  # fmt: skip
    assert counter(server, "dendrite_pending_requests", **mv) == 0
    assert counter(server, "dendrite_inference_count_total", **mv) == rows0  # nothing computed


def test_stream_in_flight_bound(tmp_path):
    """DENDRITE_GRPC_STREAM_MAX_IN_FLIGHT=2: a stream of 6 requests reaches the batcher two at a time, so
    `gather` (up to 8 rows, a partial batch waits 0.2 s) runs 3 batches of 2 rows, not one of 6."""
    write_model(tmp_path, "gather", affine_model(), {"max_batch_size": 8,
                "dynamic_batching": {"max_queue_delay_microseconds": 200_000, "delay_policy": "fixed"}})  # fmt: skip
    mv = {"model": "gather", "version": "1"}
    with live_server(tmp_path, grpc=True, grpc_stream_max_in_flight=2) as s, \
            grpc.insecure_channel(s.grpc_target) as ch:  # fmt: skip
        answers = stream(pb_grpc.GRPCInferenceServiceStub(ch), [affine_row(i, model="gather") for i in range(6)])
        assert sorted(a.infer_response.id for a in answers) == [f"r{i}" for i in range(6)]
        assert all(a.error_message == "" for a in answers)
        assert counter(s, "dendrite_inference_count_total", **mv) == 6
        assert counter(s, "dendrite_execution_count_total", **mv) == 3
        assert s.service.metrics.registry.get_sample_value("dendrite_batch_size_sum", mv) == 6
        assert s.service.metrics.registry.get_sample_value("dendrite_batch_size_bucket", {**mv, "le": "2.0"}) == 3


# ---------------------------------------------------------------------- health and reflection
def test_health_check_serving(channel):
    health = health_pb2_grpc.HealthStub(channel)
    serving = health_pb2.HealthCheckResponse.SERVING
    assert health.Check(health_pb2.HealthCheckRequest(service="")).status == serving
    assert health.Check(health_pb2.HealthCheckRequest(service="inference.GRPCInferenceService")).status == serving
    err = rpc_error(health.Check, health_pb2.HealthCheckRequest(service="no.such.Service"))
    assert err.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_and_describes_the_services(channel):
    reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
    requests = [reflection_pb2.ServerReflectionRequest(list_services=""),
                reflection_pb2.ServerReflectionRequest(file_containing_symbol="inference.GRPCInferenceService")]  # fmt: skip
    listing, described = list(reflect.ServerReflectionInfo(iter(requests), timeout=10))
    names = {s.name for s in listing.list_services_response.service}
    assert {"inference.GRPCInferenceService", "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection"} <= names
    (proto,) = described.file_descriptor_response.file_descriptor_proto
    file = descriptor_pb2.FileDescriptorProto.FromString(proto)
    assert file.package == "inference"
    assert [m.name for m in file.service[0].method] == [
        "ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer", "ModelStreamInfer",
        "RepositoryIndex"]
    (stream,) = [m for m in file.service[0].method if m.name == "ModelStreamInfer"]
    assert stream.client_streaming and stream.server_streaming
    assert stream.output_type == ".inference.ModelStreamInferResponse"


def test_health_turns_not_serving_when_the_server_shuts_down(tmp_path):
    write_model(tmp_path, "affine", affine_model(), {"max_batch_size": 2})
    with live_server(tmp_path, grpc=True) as s, grpc.insecure_channel(s.grpc_target) as ch:
        watch = health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest(service=""), timeout=30)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        stopping = threading.Thread(target=s.stop)
        stopping.start()
        assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
        watch.cancel()  # a graceful stop waits for open streams; this client is done
        stopping.join(30)
        assert not stopping.is_alive()


@pytest.mark.skipif(not TRITONCLIENT_PYTHON, reason="set DENDRITE_TRITONCLIENT_PYTHON to a Python that has "
                    "tritonclient[grpc] (its own venv: it needs protobuf < 7); make test makes one")  # fmt: skip
def test_tritonclient_is_wire_compatible(server):
    probe = Path(__file__).with_name("tritonclient_probe.py")
    done = subprocess.run([TRITONCLIENT_PYTHON, str(probe), server.grpc_target], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr



def test_a_taken_grpc_port_fails_startup_loudly(server):
    """gRPC's default SO_REUSEPORT would let a second server share the port silently."""
    settings = server.service.settings.model_copy(update={"grpc_port": server.service.grpc_port})

    async def start_second():  # grpc.aio servers are made inside a running loop
        await GrpcServer(server.service.dataplane, settings).start()

    with pytest.raises(RuntimeError, match="cannot bind 127.0.0.1:.*DENDRITE_GRPC_PORT"):
        asyncio.run(start_second())
