"""NVIDIA's tritonclient (gRPC and HTTP) asking a Dendrite server which models are ready.

Runs in the tritonclient venv (see tritonclient_probe.py); ``tests/test_lifecycle.py`` starts the
server and runs ``<python> tritonclient_ready_probe.py GRPC_TARGET HTTP_HOST:PORT READY NOT_READY``:
``is_model_ready`` must return True for READY and False (not raise) for NOT_READY, a known model that
is not ready; an unknown model is NOT_FOUND over gRPC; get_model_repository_index lists both
(NOT_READY as PENDING: the test's model is being trained).
"""

from __future__ import annotations

import sys

import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException


def main(grpc_target: str, http_target: str, ready: str, not_ready: str) -> None:
    for client in (triton_grpc.InferenceServerClient(grpc_target), triton_http.InferenceServerClient(http_target)):
        kind = type(client).__module__
        assert client.is_model_ready(ready) is True, kind
        assert client.is_model_ready(not_ready) is False, kind
    index = triton_grpc.InferenceServerClient(grpc_target).get_model_repository_index()
    assert {(m.name, m.state) for m in index.models} >= {(ready, "READY"), (not_ready, "PENDING")}, index
    try:
        triton_grpc.InferenceServerClient(grpc_target).is_model_ready("no-such-model")
    except InferenceServerException as exc:
        assert exc.status() == "StatusCode.NOT_FOUND", exc.status()
    else:
        raise AssertionError("an unknown model did not answer NOT_FOUND")
    print("tritonclient ready probe: all checks passed")


if __name__ == "__main__":
    main(*sys.argv[1:5])
