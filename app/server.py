"""The service: one process, one event loop, REST (uvicorn) and gRPC side by side, both in
front of the same data plane. ``Service`` owns startup (repository load, polling) and shutdown.
"""

from __future__ import annotations

import asyncio
import logging

import uvicorn

from app.config import Settings
from app.dataplane import DataPlane
from app.metrics import Metrics
from app.repository.repository import ModelRepository

log = logging.getLogger(__name__)


class Service:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.metrics = Metrics()
        self.repository = ModelRepository(settings.model_repository, settings, self.metrics)
        self.dataplane = DataPlane(settings, self.repository, self.metrics)
        self._started = False
        self.grpc = None  # app.transports.grpc.server.GrpcServer while serving
        self.grpc_port: int | None = None  # the bound port (settings.grpc_port may be 0)

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        s = self.settings
        if s.model_control_mode == "explicit":
            for name in s.startup_models:
                await self.repository.load(name)
        else:
            await self.repository.load_all()
        if s.model_control_mode == "poll":
            self.repository.start_polling()
        self.dataplane.started = True
        if s.grpc_enabled:
            from app.transports.grpc.server import GrpcServer  # grpc loads only when enabled

            self.grpc = GrpcServer(self.dataplane, s)
            self.grpc_port = await self.grpc.start()
        log.info("repository %s: %s", s.model_repository,
                 ", ".join(f"{r['name']}/{r.get('version', '-')}:{r['state']}" for r in self.repository.index()) or "empty")

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        self.dataplane.shutting_down = True
        if self.grpc is not None:  # before the repository closes: in-flight RPCs finish first
            await self.grpc.stop()
            self.grpc = None
        await self.repository.close()


def build_rest_app(settings: Settings):
    from app.transports.rest.app import create_app

    return create_app(Service(settings))


async def serve(settings: Settings) -> None:
    """Run REST on settings.http_port until SIGINT/SIGTERM."""
    app = build_rest_app(settings)
    config = uvicorn.Config(
        app, host=settings.host, port=settings.http_port, log_level=settings.log_level,
        access_log=False, lifespan="on", timeout_graceful_shutdown=30,
    )  # fmt: skip
    await uvicorn.Server(config).serve()


def event_loop_factory():
    """uvloop when installed (uvicorn[standard] brings it): measurably less CPU per request."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def run(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        runner.run(serve(settings))
