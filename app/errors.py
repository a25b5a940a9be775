"""The error vocabulary of the data plane.

The core raises these; each transport maps them in exactly one place (REST: an exception
handler, gRPC: one translation to a status code). A new error kind is a new subclass here
with its HTTP status and gRPC code name, nothing else.
"""

from __future__ import annotations

import asyncio


class DendriteError(Exception):
    """Base class: ``http_status`` and ``grpc_code`` (a grpc.StatusCode name) describe it."""

    http_status = 500
    grpc_code = "INTERNAL"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class InvalidInput(DendriteError):
    """The request is malformed or does not match the model (shape, datatype, count)."""

    http_status = 400
    grpc_code = "INVALID_ARGUMENT"


class NotFound(DendriteError):
    """Unknown model, version or task."""

    http_status = 404
    grpc_code = "NOT_FOUND"


class PayloadTooLarge(DendriteError):
    """A size limit was exceeded; the message names the limit and its setting."""

    http_status = 413
    grpc_code = "INVALID_ARGUMENT"


class UnsupportedMediaType(DendriteError):
    http_status = 415
    grpc_code = "INVALID_ARGUMENT"


class ModelNotReady(DendriteError):
    """The model exists but is loading, failed or unloading."""

    http_status = 503
    grpc_code = "UNAVAILABLE"


class ModelTraining(ModelNotReady):
    """The model has no version yet and a trainer is producing one: retry later (REST adds Retry-After)."""

    def __init__(self, message: str, *, retry_after: int = 30):
        super().__init__(message, headers={"Retry-After": str(retry_after)})


class Overloaded(DendriteError):
    """A bounded queue is full: the client should retry later (REST adds Retry-After)."""

    http_status = 503
    grpc_code = "RESOURCE_EXHAUSTED"

    def __init__(self, message: str, *, retry_after: int = 1):
        super().__init__(message, headers={"Retry-After": str(retry_after)})
        self.retry_after = retry_after


class DeadlineExceeded(DendriteError):
    """The request's deadline passed before it was computed; it was dropped without compute."""

    http_status = 504
    grpc_code = "DEADLINE_EXCEEDED"


class Unauthenticated(DendriteError):
    """No valid API key / bearer token for a route that needs one (see app.auth)."""

    http_status = 401
    grpc_code = "UNAUTHENTICATED"

    def __init__(self, message: str):
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(DendriteError):
    """An API that is switched off by configuration."""

    http_status = 403
    grpc_code = "PERMISSION_DENIED"


class InferenceFailed(DendriteError):
    """ONNX Runtime raised while running a batch."""

    http_status = 500
    grpc_code = "INTERNAL"


# Outcomes that are the caller's doing (4xx), and those that are nobody's failure: the rest are the server's.
CLIENT_OUTCOMES = frozenset({"client_error", "not_found"})
NOT_FAILURES = frozenset({"success", "cancelled"})

# What a client is told about a failure that is the server's own: the details (exception class, traceback)
# go to the server log only.
UNEXPECTED = "internal error; the server log has the details"


def outcome_of(exc: BaseException | None) -> str:
    """Metric label for a request's outcome."""
    if exc is None:
        return "success"
    if isinstance(exc, asyncio.CancelledError):  # the client went away (disconnect, its own deadline)
        return "cancelled"
    if isinstance(exc, Overloaded):
        return "rejected"
    if isinstance(exc, DeadlineExceeded):
        return "timeout"
    if isinstance(exc, NotFound):
        return "not_found"
    if isinstance(exc, ModelTraining):
        return "training"
    if isinstance(exc, DendriteError) and exc.http_status < 500:
        return "client_error"
    if isinstance(exc, ModelNotReady):
        return "unavailable"
    return "server_error"
