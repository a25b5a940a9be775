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
        log.info("repository %s: %s", s.model_repository,
                 ", ".join(f"{r['name']}/{r.get('version', '-')}:{r['state']}" for r in self.repository.index()) or "empty")

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        self.dataplane.shutting_down = True
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


def run(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(settings))
