"""What every gRPC handler shares: the one place errors become status codes, and the
client's deadline as a data-plane deadline."""

from __future__ import annotations

import asyncio
import functools
import logging
from contextvars import ContextVar
from typing import Any, Awaitable, Callable, TypeVar

import grpc

from app.errors import UNEXPECTED, DendriteError
from app.protocol import deadlines

log = logging.getLogger(__name__)

Handler = TypeVar("Handler", bound=Callable[..., Awaitable[Any]])

# The size of the unary request being handled, as received (set by the server's DecodeGuard): a
# handler decides on it whether to work off the event loop without ``ByteSize()``, which with
# protobuf's upb backend serializes the whole message again on the loop.
RECEIVED_BYTES: ContextVar[int | None] = ContextVar("received_bytes", default=None)


def received_size(message: Any) -> int:
    """The request's size on the wire: as received for unary calls, else computed (stream messages)."""
    size = RECEIVED_BYTES.get()
    return message.ByteSize() if size is None else size

def status_of(exc: Exception, where: str) -> tuple[grpc.StatusCode, str, tuple[tuple[str, str], ...]]:
    """An exception as (status code, message, trailing metadata), logged where it is the server's
    fault: DendriteError -> its ``grpc_code`` and message; anything else -> INTERNAL. ``where``
    names the handler in the log. (Call it inside the ``except`` block: the log has the traceback.)"""
    if isinstance(exc, DendriteError):
        code = grpc.StatusCode[exc.grpc_code]
        if code is grpc.StatusCode.INTERNAL:
            log.error("%s: %s", type(exc).__name__, exc.message)
        # e.g. Retry-After of a full queue: clients read it from the trailers
        return code, exc.message, tuple((key.lower(), value) for key, value in exc.headers.items())
    log.exception("unhandled error in %s", where)
    return grpc.StatusCode.INTERNAL, UNEXPECTED, ()


def rpc_handler(method: Handler) -> Handler:
    """Wrap a unary servicer method: an error becomes the call's status (``status_of``)."""

    @functools.wraps(method)
    async def handler(self, request, context: grpc.aio.ServicerContext):
        try:
            return await method(self, request, context)
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception as exc:
            code, message, trailers = status_of(exc, method.__name__)
            await context.abort(code, message, trailing_metadata=trailers)

    return handler  # type: ignore[return-value]


def deadline_of(context: grpc.aio.ServicerContext) -> float | None:
    """The client's gRPC deadline as a ``time.monotonic()`` instant (None: no deadline), so the
    batcher drops the request without compute once nobody waits for the answer."""
    return deadlines.from_remaining(context.time_remaining())

