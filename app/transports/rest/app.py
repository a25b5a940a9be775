"""The FastAPI application: routes only; the service's lifecycle is owned by ``app.server``."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Protocol

from fastapi import FastAPI, Request, Response

from app import __version__
from app.config import Settings
from app.dataplane import DataPlane
from app.metrics import CONTENT_TYPE, Metrics
from app.tasks import registry
from app.transports.rest import errors, guard, oip, openapi, predict, ui


class Service(Protocol):
    """What the application needs of the service that owns it (``app.server.Service``, a layer
    above): its parts, and the start and stop that the application's lifespan runs."""

    settings: Settings
    dataplane: DataPlane
    metrics: Metrics

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def create_app(service: Service) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI):
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(
        title="Dendrite",
        version=__version__,
        description="Inference serving: Open Inference Protocol (KServe v2) over REST and gRPC, "
        "dynamic batching, Prometheus metrics.",
        lifespan=lifespan,
        # /docs and /redoc are served by ui.install from packaged assets (FastAPI's own pages use a CDN)
        docs_url=None,
        redoc_url=None,
        **({} if service.settings.docs_enabled else {"openapi_url": None}),
    )
    app.state.dataplane = service.dataplane
    errors.install(app)
    app.include_router(oip.router)
    app.include_router(oip.repository_router)
    app.include_router(predict.task_router(list(registry.tasks().values())))
    openapi.install(app)
    ui.install(app, service.metrics)  # playground at /, GET /status, offline /docs and /redoc
    app.add_middleware(oip.InferFastPath)
    app.add_middleware(guard.Guard, settings=service.settings)  # outermost: keys and disconnects cover the fast path

    if service.settings.metrics_enabled:

        @app.get("/metrics", tags=["Observability"], response_class=Response)
        async def metrics(request: Request) -> Response:
            return Response(service.metrics.expose(), media_type=CONTENT_TYPE)

    return app
