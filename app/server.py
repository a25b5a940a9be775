"""The service: one process, one event loop, REST (uvicorn) and gRPC side by side, both in
front of the same data plane. ``Service`` owns startup (repository load, polling) and shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket

import uvicorn

from app.config import Settings
from app.dataplane import DataPlane
from app.logs import configure_logging
from app.metrics import Metrics
from app.repository.manager import ModelRepository
from app.runtime import workers

log = logging.getLogger(__name__)


class StartupFailed(Exception):
    """The service did not start; uvicorn has logged why."""


class Service:
    def __init__(self, settings: Settings):
        self.settings = settings
        workers.configure(settings)
        self.metrics = Metrics()
        self.repository = ModelRepository(settings.model_repository, settings, self.metrics)
        self.dataplane = DataPlane(settings, self.repository, self.metrics)
        self._started = False
        self.grpc = None  # app.transports.grpc.server.GrpcServer while serving
        self.grpc_port: int | None = None  # the bound port (settings.grpc_port may be 0)
        self._grpc_stopping: asyncio.Task | None = None

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        s = self.settings
        if s.model_control_mode == "explicit":
            await self.repository.load_many(s.startup_models)
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

    async def not_ready(self) -> None:
        """First step of a graceful shutdown: readiness turns 503 / NOT_SERVING; still serving."""
        self.dataplane.shutting_down = True
        if self.grpc is not None:
            await self.grpc.not_serving()

    def stop_accepting(self) -> None:
        """Second step: gRPC refuses new RPCs and gives running ones the grace period
        (uvicorn does the same for REST, side by side)."""
        self.dataplane.shutting_down = True
        if self.grpc is not None and self._grpc_stopping is None:
            self._grpc_stopping = asyncio.get_running_loop().create_task(self.grpc.stop())

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        self.dataplane.shutting_down = True
        if self.grpc is not None:  # before the repository closes: in-flight RPCs finish first
            self.stop_accepting()
            await self._grpc_stopping
            self.grpc = None
        await self.repository.close()


class GracefulServer(uvicorn.Server):
    """uvicorn with Dendrite's SIGTERM sequence: readiness turns 503 at once, serving goes on
    for ``shutdown_delay_seconds``, then REST and gRPC stop accepting together and let accepted
    requests finish within ``shutdown_grace_seconds``; the process then exits 0 (plain uvicorn
    re-raises the signal after its shutdown, which ends the process with -SIGTERM). A second
    signal skips the delay."""

    def __init__(self, config: uvicorn.Config, service: Service):
        super().__init__(config)
        self.service = service
        self._exit_requested = False

    def handle_exit(self, sig: int, frame) -> None:  # signal handler: main thread, the loop's thread
        loop = asyncio.get_event_loop()
        if self._exit_requested or self.should_exit:
            loop.call_soon_threadsafe(self._stop_accepting)
            super().handle_exit(sig, frame)
            return
        self._exit_requested = True
        log.info("%s: turning not-ready; stop accepting in %.1fs, grace %.1fs", signal.Signals(sig).name,
                 self.service.settings.shutdown_delay_seconds, self.service.settings.shutdown_grace_seconds)  # fmt: skip
        loop.call_soon_threadsafe(lambda: loop.create_task(self._sequence()))

    async def _sequence(self) -> None:
        await self.service.not_ready()
        if self.service.settings.shutdown_delay_seconds > 0:
            await asyncio.sleep(self.service.settings.shutdown_delay_seconds)
        self._stop_accepting()

    def _stop_accepting(self) -> None:
        self.service.stop_accepting()
        self.should_exit = True

    @contextlib.contextmanager
    def capture_signals(self):
        with super().capture_signals():
            try:
                yield
            finally:
                self._captured_signals.clear()  # a graceful exit is a clean exit: status 0


def build_rest_app(settings: Settings, service: Service | None = None):
    from app.transports.rest.app import create_app

    return create_app(service or Service(settings))


async def serve(settings: Settings, service: Service | None = None, sockets: list[socket.socket] | None = None,
                headers: list[tuple[str, str]] | None = None) -> None:  # fmt: skip
    """Run REST on settings.http_port (or on ``sockets``, already bound: a worker's) and gRPC beside
    it until SIGINT/SIGTERM. ``headers`` go on every REST response. Raises StartupFailed when
    start-up fails, whatever the uvicorn version."""
    service = service or Service(settings)
    app = build_rest_app(settings, service)
    config = uvicorn.Config(
        app, host=settings.host, port=settings.http_port, log_level=settings.log_level,
        access_log=False, lifespan="on", timeout_graceful_shutdown=settings.shutdown_grace_seconds,
        headers=headers or [],
    )  # fmt: skip
    server = GracefulServer(config, service)
    try:
        await server.serve(sockets=sockets)
    except SystemExit:  # uvicorn >= 0.53 exits 3 on a failed start-up; older versions return quietly
        if server.started:
            raise
    if not server.started:
        raise StartupFailed


def event_loop_factory():
    """uvloop when installed (uvicorn[standard] brings it): measurably less CPU per request."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def run(settings: Settings) -> int:
    """Serve in this process; the exit status: 1 when start-up fails (as with several workers)."""
    configure_logging(settings)
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        try:
            runner.run(serve(settings))
        except StartupFailed:
            return 1
    return 0
