"""The supervisor: spawns the workers, relays repository control, keeps the readiness board,
forwards SIGTERM/SIGINT and restarts a worker that dies (see ``app.workers``).

It stays light (no ONNX Runtime, no event loop): one thread waiting on the workers' pipes and
process sentinels.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import shutil
import signal
import socket
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait

from prometheus_client import multiprocess

from app.config import Settings
from app.logs import configure_logging
from app.workers.net import reserve

log = logging.getLogger(__name__)

BACKOFF_FIRST, BACKOFF_MAX = 0.5, 30.0
STABLE_SECONDS = 30.0  # a worker that lived this long restarts without backoff


def _worker(*args) -> None:
    """Spawn target: the worker module (ONNX Runtime, the server) is imported in the child only."""
    from app.workers.worker import main

    main(*args)


@dataclass
class Worker:
    index: int
    process: mp.process.BaseProcess
    conn: Connection
    started: float
    first: bool  # of the workers started with the server (one failing there stops the server)
    ever_ready: bool = False
    conn_open: bool = True


@dataclass
class Pending:
    origin: int
    model: str
    waiting: set[int] = field(default_factory=set)
    previous: tuple[str, str] | None = None  # the model's last logged operation, restored if this one fails


class Supervisor:
    def __init__(self, settings: Settings, count: int):
        self.settings = settings
        self.count = count
        self.ctx = mp.get_context("spawn")  # fork would copy the parent's threads and locks
        self.board = self.ctx.Array("b", count, lock=False)
        self.workers: dict[int, Worker] = {}
        self.control_log: dict[str, tuple[str, str]] = {}  # model -> its last (operation, id), oldest first
        self.pending: dict[str, Pending] = {}
        self.failures = [0] * count  # consecutive short lives, for the backoff
        self.restart_at: dict[int, float] = {}
        self.stopping = False
        self.failed: str | None = None
        self.signals: list[int] = []  # received, not yet forwarded (the handler only notes them)

    # ------------------------------------------------------------------ processes
    def spawn(self, index: int, first: bool = False) -> None:
        ours, theirs = self.ctx.Pipe()
        replay = [(op, name) for name, (op, _) in self.control_log.items()]  # what the others were told
        process = self.ctx.Process(target=_worker, args=(index, self.settings, theirs, self.board, replay),
                                   name=f"dendrite-worker-{index}")  # fmt: skip
        process.start()
        theirs.close()
        self.workers[index] = Worker(index, process, ours, time.monotonic(), first)
        log.info("worker %d started (pid %d)", index, process.pid)

    def exited(self, w: Worker) -> None:
        w.process.join()
        del self.workers[w.index]
        w.conn.close()
        self.set_ready(w.index, False)
        multiprocess.mark_process_dead(w.process.pid)  # its live gauges leave the merged view
        for req in list(self.pending):
            self._done(req, w.index, ok=True)
        code = w.process.exitcode
        how = f"signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"code {code}"
        if self.stopping:
            log.info("worker %d (pid %d) exited with %s", w.index, w.process.pid, how)
            return
        lived = time.monotonic() - w.started
        if w.first and not w.ever_ready:
            self.stop(signal.SIGTERM, f"worker {w.index} failed to start ({how})")
            return
        self.failures[w.index] = 0 if lived >= STABLE_SECONDS else self.failures[w.index] + 1
        delay = 0.0 if not self.failures[w.index] else min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (self.failures[w.index] - 1))
        log.error("worker %d (pid %d) exited with %s after %.1fs; restarting it in %.1fs",
                  w.index, w.process.pid, how, lived, delay)  # fmt: skip
        self.restart_at[w.index] = time.monotonic() + delay

    def stop(self, sig: int, failure: str | None = None) -> None:
        """Forward the signal to every worker (each drains as one server would)."""
        if failure and not self.failed:
            self.failed = failure
            log.error("%s: stopping", failure)
        elif not failure:
            log.info("%s: stopping %d worker(s)", signal.Signals(sig).name, len(self.workers))
        self.stopping = True
        self.restart_at.clear()
        for w in self.workers.values():
            try:
                os.kill(w.process.pid, sig)
            except ProcessLookupError:
                pass

    # ------------------------------------------------------------------ messages
    def send(self, index: int, msg: tuple) -> None:
        w = self.workers.get(index)
        if w is None or not w.conn_open:
            return
        try:
            w.conn.send(msg)
        except OSError:  # it is dying; its sentinel says so next
            pass

    def set_ready(self, index: int, ready: bool) -> None:
        if bool(self.board[index]) == ready:
            return
        self.board[index] = int(ready)
        for i in list(self.workers):
            self.send(i, ("readiness",))
        if all(self.board):
            log.info("all %d workers ready", self.count)

    def receive(self, w: Worker) -> None:
        try:
            msg = w.conn.recv()
        except (EOFError, OSError):
            w.conn_open = False
            return
        kind = msg[0]
        if kind == "ready":
            w.ever_ready = w.ever_ready or msg[1]
            self.set_ready(w.index, msg[1])
        elif kind == "control":
            _, req, op, name = msg
            previous = self.control_log.pop(name, None)
            self.control_log[name] = (op, req)
            self.pending[req] = Pending(w.index, name, set(self.workers), previous)
            for i in list(self.workers):
                self.send(i, ("apply", req, op, name))
        elif kind == "done":
            self._done(msg[1], w.index, msg[2])

    def _done(self, req: str, index: int, ok: bool) -> None:
        p = self.pending.get(req)
        if p is None:
            return
        if index == p.origin and not ok and self.control_log.get(p.model, (None, None))[1] == req:
            # It failed where it was asked (e.g. no such model): replay what stood before it, not this.
            if p.previous is None:
                del self.control_log[p.model]
            else:
                self.control_log[p.model] = p.previous
        p.waiting.discard(index)
        if not p.waiting:
            del self.pending[req]
            self.send(p.origin, ("applied", req))

    # ------------------------------------------------------------------ main loop
    def on_signal(self, sig: int, _frame) -> None:
        self.signals.append(sig)  # the main loop wakes (set_wakeup_fd) and forwards it

    def run(self, wakeup: socket.socket) -> int:
        for i in range(self.count):
            self.spawn(i, first=True)
        while self.workers or not self.stopping:
            while self.signals:
                self.stop(self.signals.pop(0))
            waitables = {wakeup: None}
            for w in self.workers.values():
                waitables[w.process.sentinel] = w
                if w.conn_open:
                    waitables[w.conn] = w
            now = time.monotonic()
            timeout = min([t - now for t in self.restart_at.values()] + [1.0])
            for obj in wait(list(waitables), max(0.0, timeout)):
                w = waitables[obj]
                if w is None:
                    wakeup.recv(64)
                elif obj is w.conn:
                    if w.index in self.workers and w.conn_open:
                        self.receive(w)
                elif w.index in self.workers:
                    while w.conn_open and w.conn.poll():  # what it said before dying
                        self.receive(w)
                    self.exited(w)
            for i, at in list(self.restart_at.items()):
                if at <= time.monotonic() and not self.stopping:
                    del self.restart_at[i]
                    self.spawn(i)
        return 1 if self.failed else 0


def supervise(settings: Settings) -> int:
    """Serve with ``settings.worker_count()`` workers until SIGTERM/SIGINT; the exit status."""
    count = settings.worker_count()
    configure_logging(settings, "supervisor")
    held = [reserve(settings.host, settings.http_port, "REST (DENDRITE_HOST / DENDRITE_HTTP_PORT)")]
    ports = {"http_port": held[0].getsockname()[1]}
    if settings.grpc_enabled:
        held.append(reserve(settings.host, settings.grpc_port, "gRPC (DENDRITE_HOST / DENDRITE_GRPC_PORT)"))
        ports["grpc_port"] = held[1].getsockname()[1]
    settings = settings.model_copy(update={**ports, "workers": count})
    # Set before any worker imports prometheus_client: a fresh folder, so no old counts are summed.
    metrics_dir = tempfile.mkdtemp(prefix="dendrite-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    log.info("%d workers on REST %s:%d%s; intra-op threads per session at most %d", count, settings.host,
             settings.http_port, f", gRPC {settings.grpc_port}" if settings.grpc_enabled else "",
             settings.intra_op_thread_cap())  # fmt: skip
    supervisor = Supervisor(settings, count)
    wakeup, wakeup_w = socket.socketpair()
    wakeup.setblocking(False)
    wakeup_w.setblocking(False)
    previous_fd = signal.set_wakeup_fd(wakeup_w.fileno())
    previous = {s: signal.signal(s, supervisor.on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        return supervisor.run(wakeup)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        signal.set_wakeup_fd(previous_fd)
        wakeup.close()
        wakeup_w.close()
        for sock in held:
            sock.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
