"""Test support: a real Dendrite server on 127.0.0.1 in this process (uvicorn in a thread). Tiny ONNX
models, server processes and load generators, which benches use too, are in ``testkit``."""

from __future__ import annotations

import asyncio
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import uvicorn

from testkit.server import free_port


class LiveServer:
    """A real Dendrite REST server (uvicorn) on 127.0.0.1 in a background thread, plus gRPC at
    ``grpc_target`` when the settings enable it."""

    def __init__(self, settings):
        from app.server import Service
        from app.transports.rest.app import create_app

        self.service = Service(settings)
        self.app = create_app(self.service)
        self.port = settings.http_port
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.server.serve())

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.service.grpc_port}"

    def call(self, coro, timeout: float = 60):
        """Run a coroutine on the server's loop (e.g. a repository operation) and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@contextmanager
def live_server(repo: Path, *, grpc: bool = False, **overrides) -> Iterator[LiveServer]:
    """``grpc=True`` also serves gRPC on a free port (``server.grpc_target``)."""
    from app.config import Settings

    defaults = {"http_port": free_port(), "host": "127.0.0.1", "grpc_port": 0}
    settings = Settings(model_repository=repo, grpc_enabled=grpc, **{**defaults, **overrides})
    server = LiveServer(settings).start()
    try:
        yield server
    finally:
        server.stop()
