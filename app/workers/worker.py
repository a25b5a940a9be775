"""One worker: the ordinary server (``app.server``) on the shared ports, plus its line to the
supervisor (readiness, repository control). See ``app.workers``."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import sys
from multiprocessing.connection import Connection

from app.config import Settings
from app.errors import DendriteError
from app.logs import configure_logging
from app.server import Service, StartupFailed, event_loop_factory, serve
from app.workers.net import reuseport_socket

log = logging.getLogger(__name__)

WORKER_HEADER = "Dendrite-Worker"  # on every REST response: which worker answered


class Link:
    """This worker's end of the pipe to the supervisor."""

    def __init__(self, index: int, conn: Connection, board):
        self.index = index
        self.conn = conn
        self.board = board  # one flag per worker, written by the supervisor
        self.service: WorkerService | None = None
        self.ready_sent = False
        self._ids = itertools.count()
        self._mine: dict[str, asyncio.Future] = {}  # this worker's outcome of a control it asked for
        self._everyone: dict[str, asyncio.Future] = {}  # every worker applied it
        self._queue: asyncio.Queue | None = None
        self._applier: asyncio.Task | None = None
        self._refreshes: set[asyncio.Task] = set()

    def all_ready(self) -> bool:
        return all(self.board)

    def send(self, msg: tuple) -> None:
        try:
            self.conn.send(msg)
        except OSError:  # the supervisor is gone: the reader notices and shuts this worker down
            pass

    def ready(self, ready: bool) -> None:
        self.ready_sent = self.ready_sent or ready
        self.send(("ready", ready))

    def attach(self, service: "WorkerService") -> None:
        """Start reading the supervisor's messages (on the running loop)."""
        self.service = service
        self._queue = asyncio.Queue()
        loop = asyncio.get_running_loop()
        self._applier = loop.create_task(self._apply_in_order(), name="worker-control")  # held: the loop keeps weak refs
        loop.add_reader(self.conn.fileno(), self._readable)

    def _readable(self) -> None:
        try:
            while self.conn.poll():
                self._dispatch(self.conn.recv())
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(self.conn.fileno())
            self._orphaned()

    def _dispatch(self, msg: tuple) -> None:
        kind = msg[0]
        if kind == "apply":
            self._queue.put_nowait(msg[1:])
        elif kind == "applied":
            fut = self._everyone.pop(msg[1], None)
            if fut is not None and not fut.done():
                fut.set_result(None)
        elif kind == "readiness":
            task = asyncio.get_running_loop().create_task(self.service.refresh_health())
            self._refreshes.add(task)  # held: the loop keeps only weak references to tasks
            task.add_done_callback(self._refreshes.discard)

    async def control(self, op: str, name: str):
        """Repository ``op`` in every worker, in the order the supervisor set; this worker's outcome."""
        req = f"{self.index}.{os.getpid()}.{next(self._ids)}"  # unique across restarts of this worker
        loop = asyncio.get_running_loop()
        mine = self._mine[req] = loop.create_future()
        everyone = self._everyone[req] = loop.create_future()
        self.send(("control", req, op, name))
        try:
            await everyone
            return mine.result()
        finally:  # also when the caller left: nothing stays behind for a request no one waits on
            self._everyone.pop(req, None)
            self._mine.pop(req, None)
            if mine.done() and not mine.cancelled():
                mine.exception()  # read, so asyncio does not log an outcome no one retrieved

    async def _apply_in_order(self) -> None:
        while True:
            req, op, name = await self._queue.get()
            try:
                result = await self.service.dataplane.apply_control(op, name)
            except Exception as exc:  # noqa: BLE001 - the outcome goes back to the asking worker's caller
                result = exc
            mine = self._mine.pop(req, None)
            if mine is not None and not mine.done():
                if isinstance(result, Exception):
                    mine.set_exception(result)
                else:
                    mine.set_result(result)
            elif isinstance(result, Exception):
                log.debug("%s %s: %s", op, name, result)
            self.send(("done", req, not isinstance(result, Exception)))

    def _orphaned(self) -> None:
        """The supervisor died: fail what waits on it and shut down gracefully."""
        log.error("the supervisor is gone: shutting down")
        for fut in self._everyone.values():
            if not fut.done():
                fut.set_exception(DendriteError("the server is shutting down (its supervisor is gone)"))
        self._everyone.clear()
        os.kill(os.getpid(), signal.SIGTERM)


class WorkerService(Service):
    def __init__(self, settings: Settings, link: Link, replay: list[tuple[str, str]]):
        super().__init__(settings)
        self.link = link
        self.replay = replay
        self.dataplane.peers_ready = link.all_ready
        self.dataplane.control = link.control

    async def start(self) -> None:
        if self._started:
            return
        await super().start()
        for op, name in self.replay:  # load/unload the others did while this worker was away
            try:
                await self.dataplane.apply_control(op, name)
            except Exception as exc:  # noqa: BLE001 - as the others saw it; the model keeps its error
                log.warning("replaying %s %s: %s", op, name, exc)
        self.link.attach(self)
        self.link.ready(True)

    async def not_ready(self) -> None:
        self.link.ready(False)
        await super().not_ready()

    async def refresh_health(self) -> None:
        if self.grpc is not None:
            await self.grpc.refresh_health()


def main(index: int, settings: Settings, conn: Connection, board, replay: list[tuple[str, str]]) -> None:
    os.setpgrp()  # a terminal's Ctrl-C reaches the supervisor only, which forwards it once
    configure_logging(settings, f"worker {index}")
    sock = reuseport_socket(settings.host, settings.http_port)
    link = Link(index, conn, board)
    service = WorkerService(settings, link, replay)
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        try:
            runner.run(serve(settings, service, [sock], [(WORKER_HEADER, str(index))]))
        except StartupFailed:
            pass
    if not link.ready_sent:
        sys.exit(3)  # never served: the supervisor sees a failed start
