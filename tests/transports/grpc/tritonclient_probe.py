"""Wire-compatibility probe: NVIDIA's tritonclient (gRPC) against a Dendrite server.

Runs in its own virtual environment (tritonclient needs protobuf < 7, Dendrite pins >= 7), so
it imports nothing from Dendrite. ``test_oip.py::test_tritonclient_is_wire_compatible`` starts
the server and runs ``<python with tritonclient[grpc]> tritonclient_probe.py HOST:PORT``.
Checks ModelInfer and the ModelStreamInfer stream (start_stream / async_stream_infer).
Expects the test's models: affine (x FP32 [-1, 4] -> y = 2x + 1, s = row sums) and identity.
"""

from __future__ import annotations

import queue
import sys

import numpy as np
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException


def main(target: str) -> None:
    client = triton.InferenceServerClient(target)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("affine") and client.is_model_ready("affine", "2")
    assert client.get_server_metadata().name == "dendrite"
    meta = client.get_model_metadata("affine")
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [("x", "FP32", [-1, 4])]

    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    tensor = triton.InferInput("x", [2, 4], "FP32")
    tensor.set_data_from_numpy(x)
    result = client.infer("affine", [tensor], outputs=[triton.InferRequestedOutput("y")], request_id="probe-1")
    np.testing.assert_array_equal(result.as_numpy("y"), x * 2 + 1)
    assert result.as_numpy("s") is None  # not requested
    assert result.get_response().id == "probe-1"

    # FP16 and BYTES travel as raw contents (tritonclient always sends raw), with its own serialisation.
    inputs = []
    for dt, arr in {"FP16": np.array([[1.5, -2.0]], np.float16), "BYTES": np.array([[b"hello", b"w\xc3\xb6rld"]], object),
                    "INT64": np.array([[-(2**63), 2**63 - 1]], np.int64), "BOOL": np.array([[True, False]])}.items():  # fmt: skip
        t = triton.InferInput(f"in_{dt}", list(arr.shape), dt)
        t.set_data_from_numpy(arr)
        inputs.append((dt, arr, t))
    others = {"UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "FP32", "FP64"}
    for dt in sorted(others):
        t = triton.InferInput(f"in_{dt}", [1, 2], dt)
        t.set_data_from_numpy(np.zeros((1, 2), dtype=triton_np(dt)))
        inputs.append((dt, None, t))
    result = client.infer("identity", [t for _, _, t in inputs])
    for dt, arr, _ in inputs:
        if arr is not None:
            np.testing.assert_array_equal(result.as_numpy(f"out_{dt}"), arr, err_msg=dt)

    check_stream(client, x)

    try:
        client.infer("nope", [tensor])
    except InferenceServerException as exc:
        assert exc.status() == "StatusCode.NOT_FOUND", exc.status()
    else:
        raise AssertionError("unknown model accepted")
    print("tritonclient: all checks passed")


def check_stream(client, x: np.ndarray) -> None:
    """ModelStreamInfer through tritonclient's stream API: answers reach the callback (in any order), the
    bad request as an error, and the stream carries on."""
    answers: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    sent = {}
    for i in range(4):
        sent[f"s{i}"] = x[:1] + i
        t = triton.InferInput("x", [1, 4], "FP32")
        t.set_data_from_numpy(sent[f"s{i}"])
        client.async_stream_infer("affine", [t], request_id=f"s{i}")
        if i == 1:
            bad = triton.InferInput("x", [1, 3], "FP32")
            bad.set_data_from_numpy(np.zeros((1, 3), np.float32))
            client.async_stream_infer("affine", [bad], request_id="bad")
    got, errors = {}, []
    for _ in range(5):
        result, error = answers.get(timeout=30)
        if error is not None:
            errors.append(error)
        else:
            got[result.get_response().id] = result.as_numpy("y")
    client.stop_stream()
    assert sorted(got) == sorted(sent), sorted(got)
    for request_id, arr in sent.items():
        np.testing.assert_array_equal(got[request_id], arr * 2 + 1)
    assert len(errors) == 1 and "does not match the model's [-1, 4]" in errors[0].message(), errors


def triton_np(datatype: str):
    from tritonclient.utils import triton_to_np_dtype

    return triton_to_np_dtype(datatype)


if __name__ == "__main__":
    main(sys.argv[1])
