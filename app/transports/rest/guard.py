"""The outermost REST middleware: API keys (``app.auth``) and cancellation on client disconnect.

Both must also cover ``InferFastPath`` (which bypasses FastAPI's routing), hence ASGI rather
than FastAPI dependencies.

Disconnect: uvicorn does not cancel a handler whose client went away, so a queued request
would still be computed for nobody. For the inference routes, once the request body has been
read, one watcher task waits on ASGI ``receive()``; the server answers it with
``http.disconnect`` when the connection drops (or when the response is complete). A
disconnect before the response started cancels the handler: the batcher withdraws its queued
work (``DynamicBatcher.submit``) and the request counts as ``outcome="cancelled"``.

The watcher starts only once a request has taken ``WATCH_AFTER_S`` (a timer handle until
then): a watcher task costs about 20 us of CPU per request (measured in isolation), a timer
about 2 us, and a request answered within 10 ms has no queued work worth withdrawing. A
client that left earlier is seen as soon as the watcher starts.
"""

from __future__ import annotations

import asyncio

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import auth
from app.config import Settings
from app.errors import PayloadTooLarge, Unauthenticated
from app.tasks import registry
from app.transports.rest import errors


WATCH_AFTER_S = 0.01


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


# REST paths that never need a key (probes, the API description, the playground page).
OPEN_PATHS = frozenset({"/v2/health/live", "/v2/health/ready", "/docs", "/docs/oauth2-redirect", "/redoc",
                        "/openapi.json", "/"})  # fmt: skip
# Static files (Swagger UI / ReDoc assets, the playground's JS and CSS): no data in them; the
# routes the playground calls (/status, /predict/...) still need a key.
OPEN_PREFIXES = ("/docs-assets/", "/playground/")


def access_of(path: str) -> auth.Access:
    """What a REST request to ``path`` needs (``app.auth`` says which keys that takes)."""
    if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
        return auth.Access.OPEN
    if path.startswith("/v2/repository/models/") and path.endswith(("/load", "/unload")):
        return auth.Access.REPOSITORY
    if path == "/metrics":
        return auth.Access.METRICS
    return auth.Access.SERVING


def watches_disconnect(method: str, path: str) -> bool:
    return method == "POST" and (path.endswith("/infer") or path.startswith("/predict/"))


class Guard:
    def __init__(self, app: ASGIApp, settings: Settings):
        self.app = app
        self.settings = settings
        self.any_keys = bool(settings.api_keys or settings.repository_api_keys)
        # A task route's body is bounded by what its item limits allow, so an oversized one costs no parsing.
        self.body_limits = {f"/predict/{name}": task.request.body_limit(settings) for name, task in registry.tasks().items()}
        self.default_body_limit = (settings.max_request_bytes, "DENDRITE_MAX_REQUEST_BYTES")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if self.any_keys:
            keys, message = auth.required_keys(self.settings, access_of(path))
            if keys:
                given = auth.presented_key(_header(scope, b"authorization"), _header(scope, b"x-api-key"))
                if not auth.authorized(given, keys):
                    response = errors.error_response(Unauthenticated(message))
                    await response(scope, receive, send)
                    return
        watch = watches_disconnect(scope["method"], path)
        if scope["method"] in ("POST", "PUT") and not path.endswith("/infer"):  # infer enforces its own (read_body)
            await self._limit_body(scope, receive, send, watch)
        elif watch:
            await self._cancel_on_disconnect(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _limit_body(self, scope: Scope, receive: Receive, send: Send, watch: bool) -> None:
        """DENDRITE_MAX_REQUEST_BYTES, or a task route's smaller ``body_limit``, for routes whose body
        FastAPI reads (typed /predict routes, repository routes): a declared length over it is refused
        before reading; a chunked body is cut off where it passes the limit and answered 413 instead of
        whatever the route says."""
        limit, setting = self.body_limits.get(scope["path"], self.default_body_limit)
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await errors.error_response(PayloadTooLarge(
                f"request body of {length} bytes exceeds the limit of {limit} ({setting})"
            ))(scope, receive, send)  # fmt: skip
            return
        size = 0
        too_large = False

        async def receive_wrapper() -> Message:
            nonlocal size, too_large
            message = await receive()
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if size > limit:
                    too_large = True
                    return {"type": "http.disconnect"}  # the route stops reading
            return message

        async def send_wrapper(message: Message) -> None:
            if not too_large:
                await send(message)
            elif message["type"] == "http.response.start":
                response = errors.error_response(PayloadTooLarge(
                    f"request body exceeds the limit of {limit} bytes ({setting})"))
                await response(scope, receive, send)

        try:
            if watch:
                await self._cancel_on_disconnect(scope, receive_wrapper, send_wrapper)
            else:
                await self.app(scope, receive_wrapper, send_wrapper)
        except ClientDisconnect:  # a route that reads the body itself stopped at the cut (or the client left)
            if too_large:
                await send_wrapper({"type": "http.response.start", "status": 413, "headers": []})

    async def _cancel_on_disconnect(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        loop = asyncio.get_running_loop()
        watcher: asyncio.Task | None = None
        timer: asyncio.TimerHandle | None = None
        body_done = False
        started = False
        gone = False

        async def watch() -> Message:
            nonlocal gone
            message = await receive()  # returns once the client is gone or the response is complete
            if message["type"] == "http.disconnect" and not started:
                gone = True
                handler.cancel()
            return message

        def start_watching() -> None:
            nonlocal watcher
            if watcher is None and not started:
                watcher = loop.create_task(watch())

        async def receive_wrapper() -> Message:
            nonlocal body_done, timer
            if body_done:  # the handler asks again (rare): the watcher owns receive()
                start_watching()
                if watcher is None:  # the response has started: the server says disconnect
                    return await receive()
                return await asyncio.shield(watcher)
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                body_done = True
                timer = loop.call_later(WATCH_AFTER_S, start_watching)
            return message

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive_wrapper, send_wrapper)
        except asyncio.CancelledError:
            if gone and handler.uncancel() == 0:
                return  # the client left: nobody to answer
            raise
        finally:
            if timer is not None:
                timer.cancel()
            if watcher is not None and not watcher.done():
                watcher.cancel()
