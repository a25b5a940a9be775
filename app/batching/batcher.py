"""Dynamic batcher with Triton's semantics.

- When an instance is free, queued requests join a batch in arrival order, up to
  ``max_batch_size`` rows. A full batch goes at once; a partial batch waits until its oldest
  request has waited ``max_queue_delay`` (0 = no waiting: whatever queued while the instances
  were busy goes together).
- Delay policy ``adaptive`` (the default in config.yaml) waits only when waiting can pay: a
  partial batch is complete as soon as every peer that recent traffic leads us to expect is
  already queued or computing (see ``PeerEstimate``), so a lone request runs at once while
  concurrent traffic still forms batches. ``fixed`` is Triton's rule: always wait the delay.
- Requests are batched only with requests of the same shape signature (non-batch dims and
  dtypes of every input); the oldest request decides which signature goes next, so no shape
  starves.
- ``max_queue_size`` bounds the queue: past it, ``submit`` raises ``Overloaded`` at once.
- A request with a deadline that is still queued when the deadline passes is dropped without
  compute (``DeadlineExceeded``); one already computing is allowed to finish. A cancelled
  caller (client gone) has its queued work removed.
- Each request gets exactly its own rows back: outputs are sliced by the row offsets of the
  concatenated batch.
- If the scheduling loop itself dies (a bug), its queued requests fail at once with
  ``ModelNotReady`` (503 / UNAVAILABLE) instead of waiting for their clients to give up, and a
  new loop starts. A batch whose task raises (a bug, not an inference error) fails its requests.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from app.errors import DeadlineExceeded, InferenceFailed, InvalidInput, ModelNotReady, Overloaded

log = logging.getLogger(__name__)

ShapeKey = tuple[tuple[str, tuple[int, ...], str], ...]

DELAY_POLICIES = ("adaptive", "fixed")


class PeerEstimate:
    """How many requests arrive together: the most that were inside the batcher at once
    (queued or computing) over the last one to two windows.

    Closed-loop clients (the usual serving load: each client sends its next request after the
    previous answer) keep at most that many requests inside; once they are all queued or
    computing, no one else is coming and waiting for more would only add latency. The peak
    decays within two windows, so a past burst does not hold lone requests back for long.
    """

    def __init__(self, window_s: float = 1.0, clock=time.monotonic):
        self._window = window_s
        self._clock = clock
        self._start = clock()
        self._current = 0
        self._previous = 0

    def _roll(self, now: float) -> None:
        elapsed = now - self._start
        if elapsed >= self._window:
            # The finished window becomes the previous one; after a silent window there is none.
            self._previous = self._current if elapsed < 2 * self._window else 0
            self._current = 0
            self._start = now - elapsed % self._window

    def observe(self, inside: int) -> None:
        now = self._clock()
        self._roll(now)
        self._current = max(self._current, inside)

    def peak(self) -> int:
        self._roll(self._clock())
        return max(self._current, self._previous)


def partial_batch_complete(waiting: int, computing: int, peak: int) -> bool:
    """Adaptive policy: a partial batch need not wait when the requests waiting plus those
    computing are as many as the recent peak (every expected peer is already here)."""
    return waiting + computing >= peak


class Runner(Protocol):
    """What the batcher needs from a session pool."""

    count: int
    output_names: list[str]

    async def run(self, instance: int, feeds: dict[str, np.ndarray], outputs: list[str] | None = None) -> tuple[
        list[np.ndarray], float]: ...  # fmt: skip


class BatchObserver(Protocol):
    """Metric hooks (see app.metrics); a no-op implementation is fine for tests."""

    def queued(self, delta: int) -> None: ...
    def dropped(self, reason: str) -> None: ...
    def executed(self, rows: int, compute_s: float, queue_waits: list[float]) -> None: ...


class NullObserver:
    def queued(self, delta: int) -> None:
        pass

    def dropped(self, reason: str) -> None:
        pass

    def executed(self, rows: int, compute_s: float, queue_waits: list[float]) -> None:
        pass


@dataclass(eq=False)
class _Request:
    inputs: dict[str, np.ndarray]
    rows: int
    key: ShapeKey
    enqueued: float
    deadline: float | None
    future: asyncio.Future = field(repr=False)
    dispatched: bool = False


@dataclass
class BatchResult:
    outputs: dict[str, np.ndarray]
    queue_seconds: float
    compute_seconds: float
    batch_rows: int


def shape_key(inputs: dict[str, np.ndarray]) -> ShapeKey:
    return tuple(sorted((name, a.shape[1:], a.dtype.str) for name, a in inputs.items()))


class DynamicBatcher:
    def __init__(
        self,
        runner: Runner,
        *,
        max_batch_size: int,
        max_queue_delay_s: float = 0.0,
        max_queue_size: int = 1024,
        batching: bool = True,
        retry_after_s: int = 1,
        observer: BatchObserver | None = None,
        name: str = "",
        delay_policy: str = "fixed",
        peers: PeerEstimate | None = None,
    ):
        if delay_policy not in DELAY_POLICIES:
            raise ValueError(f"delay_policy must be one of {DELAY_POLICIES}, not {delay_policy!r}")
        self.runner = runner
        self.max_batch_size = max(1, max_batch_size)
        self.max_queue_delay_s = max_queue_delay_s
        self.max_queue_size = max_queue_size
        self.batching = batching and max_batch_size > 0
        self.retry_after_s = retry_after_s
        self.observer = observer or NullObserver()
        self.name = name
        self.delay_policy = delay_policy
        self._peers = peers or PeerEstimate()
        self._computing = 0  # requests dispatched and not yet answered
        self._queues: dict[ShapeKey, deque[_Request]] = {}
        self._queued = 0
        self._in_flight: set[asyncio.Task] = set()
        self._free: asyncio.Queue[int] = asyncio.Queue()
        for i in range(runner.count):
            self._free.put_nowait(i)
        self._arrival = asyncio.Event()
        self._accepting = True
        self._loop_task: asyncio.Task | None = None
        self._held: int | None = None  # the instance the scheduler took and has not handed on yet

    # ------------------------------------------------------------------ public API
    def start(self) -> None:
        if self._loop_task is None:
            self._loop_task = asyncio.get_running_loop().create_task(self._schedule(), name=f"batcher-{self.name}")
            self._loop_task.add_done_callback(self._scheduler_ended)

    def _scheduler_ended(self, task: asyncio.Task) -> None:
        # Without its scheduler a model's queued requests would wait until their clients gave up:
        # fail them now (nothing was computed for them, so a retry is safe) and start a new one.
        if task.cancelled() or task.exception() is None:
            return
        log.critical("%s: batch scheduler died; failing its %d queued request(s) and restarting it", self.name,
                     self._queued, exc_info=task.exception())  # fmt: skip
        if self._held is not None:
            self._free.put_nowait(self._held)
            self._held = None
        self._loop_task = None
        try:
            self._fail_queued(ModelNotReady(
                f"{self.name}: the batch scheduler failed and was restarted; this request was not run, retry it"))
        finally:
            self.start()

    @property
    def queued(self) -> int:
        return self._queued

    @property
    def busy(self) -> bool:
        return self._queued > 0 or bool(self._in_flight)

    async def submit(self, inputs: dict[str, np.ndarray], rows: int, deadline: float | None = None) -> BatchResult:
        """Queue ``rows`` rows (every input carries them as its leading dim) and wait for them.

        ``deadline`` is a ``time.monotonic()`` instant; None means no deadline.
        """
        if not self._accepting:
            raise ModelNotReady(f"{self.name} is unloading and accepts no new requests")
        if self._queued >= self.max_queue_size:
            self.observer.dropped("queue_full")
            raise Overloaded(
                f"{self.name}: queue is full ({self.max_queue_size} requests waiting, "
                "dynamic_batching.max_queue_size); retry later",
                retry_after=self.retry_after_s,
            )
        now = time.monotonic()
        if deadline is not None and deadline <= now:
            self.observer.dropped("deadline")
            raise DeadlineExceeded(f"{self.name}: the request's deadline had passed before it was queued")
        req = _Request(inputs, rows, shape_key(inputs), now, deadline, asyncio.get_running_loop().create_future())
        self._queues.setdefault(req.key, deque()).append(req)
        self._queued += 1
        self._peers.observe(self._queued + self._computing)
        self.observer.queued(1)
        self._arrival.set()
        try:
            if deadline is None:
                return await asyncio.shield(req.future)
            try:
                return await asyncio.wait_for(asyncio.shield(req.future), timeout=max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                if req.dispatched:  # already computing: let it finish rather than waste the work
                    return await req.future
                self._withdraw(req, "deadline")
                raise DeadlineExceeded(
                    f"{self.name}: deadline exceeded after {time.monotonic() - req.enqueued:.3f}s in the queue; "
                    "dropped without compute"
                ) from None
        except asyncio.CancelledError:
            if not req.dispatched:
                self._withdraw(req, "cancelled")
            raise

    async def drain(self, timeout_s: float) -> bool:
        """Stop accepting, wait for queued and running work; True if everything finished in time."""
        self._accepting = False
        deadline = time.monotonic() + timeout_s
        while self.busy and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return not self.busy

    async def close(self) -> None:
        self._accepting = False
        self._fail_queued(ModelNotReady(f"{self.name} was unloaded"))
        if self._loop_task:
            self._loop_task.cancel()
            try:
                await self._loop_task
            except asyncio.CancelledError:
                pass

    # ------------------------------------------------------------------ scheduling
    def _fail_queued(self, error: Exception) -> None:
        """Answer every queued request with ``error`` and empty the queue."""
        failed = self._queued
        for q in self._queues.values():
            for req in q:
                if not req.future.done():
                    req.future.set_exception(error)
        self._queues.clear()
        self._queued = 0
        self.observer.queued(-failed)

    def _withdraw(self, req: _Request, reason: str) -> None:
        q = self._queues.get(req.key)
        if q is not None and req in q:
            q.remove(req)
            self._queued -= 1
            self.observer.queued(-1)
            self.observer.dropped(reason)
            if not q:
                del self._queues[req.key]

    def _oldest_key(self) -> ShapeKey | None:
        best, best_t = None, float("inf")
        for key, q in self._queues.items():
            if q and q[0].enqueued < best_t:
                best, best_t = key, q[0].enqueued
        return best

    def _expire(self, now: float) -> None:
        """Drop queued requests whose deadline passed (their waiters raise on their own timers;
        this keeps them out of a batch that forms in the same instant)."""
        for key in list(self._queues):
            q = self._queues[key]
            for req in [r for r in q if r.deadline is not None and r.deadline <= now]:
                self._withdraw(req, "deadline")
                if not req.future.done():
                    req.future.set_exception(DeadlineExceeded(f"{self.name}: deadline exceeded in the queue"))

    def _collect(self, key: ShapeKey) -> tuple[list[_Request], int]:
        q = self._queues[key]
        batch: list[_Request] = []
        rows = 0
        limit = self.max_batch_size if self.batching else 0
        for req in q:
            if batch and (not self.batching or rows + req.rows > limit):
                break
            batch.append(req)
            rows += req.rows
        return batch, rows

    async def _schedule(self) -> None:
        while True:
            while not self._queued:
                self._arrival.clear()
                await self._arrival.wait()
            instance = self._held = await self._free.get()
            while True:
                # Collected afresh on every pass: while a partial batch waits, its requests may be withdrawn
                # (deadline, cancelled caller), and a stale list would dispatch them from a deleted queue.
                batch: list[_Request] = []
                now = time.monotonic()
                self._expire(now)
                key = self._oldest_key()
                if key is None:
                    break
                batch, rows = self._collect(key)
                full = not self.batching or rows >= self.max_batch_size
                wait = batch[0].enqueued + self.max_queue_delay_s - now
                if full or wait <= 0 or self._nobody_else_coming():
                    break
                self._arrival.clear()
                try:
                    await asyncio.wait_for(self._arrival.wait(), timeout=wait)
                except asyncio.TimeoutError:
                    pass
            if not batch:
                self._free.put_nowait(instance)
                self._held = None
                continue
            self.observer.queued(-len(batch))  # first: should it fail, the batch is still queued
            q = self._queues[batch[0].key]
            for req in batch:
                q.popleft()
                req.dispatched = True
            if not q:
                del self._queues[batch[0].key]
            self._queued -= len(batch)
            self._computing += len(batch)
            task = asyncio.get_running_loop().create_task(self._execute(instance, batch))
            self._held = None
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
            task.add_done_callback(functools.partial(self._batch_ended, batch))

    def _batch_ended(self, batch: list[_Request], task: asyncio.Task) -> None:
        # Inference errors are answered inside the task; anything else raised there would leave
        # the batch's callers waiting forever.
        if task.cancelled() or task.exception() is None:
            return
        log.error("%s: a batch of %d request(s) failed unexpectedly", self.name, len(batch), exc_info=task.exception())
        error = InferenceFailed(f"{self.name}: the batch failed unexpectedly (the server log has the details)")
        for r in batch:
            if not r.future.done():
                r.future.set_exception(error)

    def _nobody_else_coming(self) -> bool:
        return self.delay_policy == "adaptive" and partial_batch_complete(
            self._queued, self._computing, self._peers.peak())

    async def _execute(self, instance: int, batch: list[_Request], *, release: bool = True) -> None:
        """Run ``batch`` on ``instance`` and answer its requests; ``release`` frees the instance after."""
        started = time.monotonic()
        waits = [started - r.enqueued for r in batch]
        try:
            if len(batch) == 1:
                feeds = batch[0].inputs
            else:
                feeds = {name: np.concatenate([r.inputs[name] for r in batch]) for name in batch[0].inputs}
            total = sum(r.rows for r in batch)
            try:
                outputs, compute_s = await self.runner.run(instance, feeds)
            except InvalidInput as exc:
                if len(batch) > 1:
                    # A value only one request carries (an id out of range) fails the whole batch in ONNX Runtime:
                    # rerun each request alone so that only its own request fails.
                    log.info("%s: batch of %d requests refused as invalid; running them one by one",
                             self.name, len(batch))
                    for r in batch:
                        if not r.future.done():
                            await self._execute(instance, [r], release=False)
                elif not batch[0].future.done():
                    batch[0].future.set_exception(exc)
                return
            except Exception:  # the runtime failed: the log has its text, the client only that it failed
                log.exception("%s: batch of %d rows failed", self.name, total)
                err = InferenceFailed(f"{self.name}: inference failed (the server log has the details)")
                for r in batch:
                    if not r.future.done():
                        r.future.set_exception(err)
                return
            self.observer.executed(total, compute_s, waits)
            names = self.runner.output_names
            offset = 0
            for r, wait in zip(batch, waits):
                if r.future.done():  # caller gone (cancelled while computing)
                    offset += r.rows
                    continue
                if len(batch) == 1:
                    mine = dict(zip(names, outputs))
                else:
                    mine = {}
                    for name, out in zip(names, outputs):
                        if out.ndim == 0 or out.shape[0] != total:
                            r.future.set_exception(InferenceFailed(
                                f"{self.name}: output {name!r} has shape {list(out.shape)}, no batch dimension "
                                f"of {total} rows to split; set max_batch_size: 0 for this model"))  # fmt: skip
                            break
                        mine[name] = out[offset : offset + r.rows]
                if not r.future.done():
                    r.future.set_result(BatchResult(mine, wait, compute_s, total))
                offset += r.rows
        finally:
            if release:  # the outer call of a rerun one by one: it owns the batch and the instance
                self._computing -= len(batch)
                self._free.put_nowait(instance)
                self._arrival.set()  # wake the scheduler in case it is waiting for an instance with work queued
