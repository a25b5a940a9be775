"""The outermost REST middleware: API keys (``app.auth``) and cancellation on client disconnect.

Both must also cover ``InferFastPath`` (which bypasses FastAPI's routing), hence ASGI rather
than FastAPI dependencies.

Disconnect: uvicorn does not cancel a handler whose client went away, so a queued request
would still be computed for nobody. For the inference routes, once the request body has been
read, one watcher task waits on ASGI ``receive()``; the server answers it with
``http.disconnect`` when the connection drops (or when the response is complete). A
disconnect before the response started cancels the handler: the batcher withdraws its queued
work (``DynamicBatcher.submit``) and the request counts as ``outcome="cancelled"``.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import auth
from app.config import Settings
from app.errors import Unauthenticated
from app.transports.rest import errors


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def watches_disconnect(method: str, path: str) -> bool:
    return method == "POST" and (path.endswith("/infer") or path.startswith("/predict/"))


class Guard:
    def __init__(self, app: ASGIApp, settings: Settings):
        self.app = app
        self.settings = settings
        self.any_keys = bool(settings.api_keys or settings.repository_api_keys)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if self.any_keys:
            keys, message = auth.required_keys(self.settings, path)
            if keys:
                given = auth.presented_key(_header(scope, b"authorization"), _header(scope, b"x-api-key"))
                if not auth.authorized(given, keys):
                    response = errors.error_response(Unauthenticated(message))
                    await response(scope, receive, send)
                    return
        if watches_disconnect(scope["method"], path):
            await self._cancel_on_disconnect(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _cancel_on_disconnect(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        watcher: asyncio.Task | None = None
        started = False
        gone = False

        async def watch() -> Message:
            nonlocal gone
            message = await receive()  # returns once the client is gone or the response is complete
            if message["type"] == "http.disconnect" and not started:
                gone = True
                handler.cancel()
            return message

        async def receive_wrapper() -> Message:
            nonlocal watcher
            if watcher is not None:  # body complete: the watcher owns receive()
                return await asyncio.shield(watcher)
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                watcher = asyncio.get_running_loop().create_task(watch())
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
            if watcher is not None and not watcher.done():
                watcher.cancel()
