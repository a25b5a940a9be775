"""Request coalescing for multi-step tasks (e.g. a decode loop).

The dynamic batcher batches single graph runs. A translation is a loop of runs whose shapes
change every step, so concurrent requests would rarely meet in the batcher. The coalescer
merges concurrent *requests* instead: items that arrive while a group is running (or within
``max_delay_s`` of the first) are processed together as one group, and each caller gets its
own results back, in order.

It gives callers the batcher's guarantees:
- ``max_waiting`` bounds the callers waiting for a group (all keys together): past it,
  ``submit`` raises ``Overloaded`` at once. At most ``max_groups`` groups run at a time (all
  keys together), so callers with many different keys wait here, counted, rather than as
  groups queued for a worker thread, where nothing would bound them.
- Each caller has its own deadline. Past it, the caller gets ``DeadlineExceeded`` while the
  others of its group go on; a group's graph runs carry the latest deadline of its callers.
- A caller that leaves (deadline, cancelled: the client went away) is withdrawn: removed from
  the waiting list, or, inside a running group, its items report not live (``Group.live``),
  so the process can stop computing them.

Refusals and withdrawals go to ``observer.dropped(reason)`` with the batcher's reasons
(queue_full, deadline, cancelled), so a model's rejected-requests metric means the same for
every task. Unlike the batcher, a caller withdrawn from a running group counts too: it gets no
answer and its items stop being computed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from app.batching.batcher import BatchObserver, NullObserver
from app.errors import DeadlineExceeded, Overloaded
from app.protocol import deadlines

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass(eq=False)
class _Waiting(Generic[Item]):
    items: Sequence[Item]
    deadline: float | None
    future: asyncio.Future = field(repr=False)
    withdrawn: bool = False  # read by the process's worker thread: a plain bool, set once


class Group:
    """What a running group's process sees of its callers."""

    def __init__(self, members: list[_Waiting]):
        self._members = members
        # the group runs as long as its most patient caller waits
        self.deadline: float | None = deadlines.latest([w.deadline for w in members])

    def live(self) -> list[bool]:
        """Per item of the group, in order: does its caller still wait for it? (Safe from any thread.)"""
        return [not w.withdrawn for w in self._members for _ in w.items]


Process = Callable[[Hashable, list[Item], Group], Awaitable[list[Result]]]


class Coalescer(Generic[Item, Result]):
    def __init__(self, process: Process, *, max_items: int = 32, max_delay_s: float = 0.002,
                 max_waiting: int = 1024, max_groups: int = 4, retry_after_s: int = 1, name: str = "",
                 observer: BatchObserver | None = None):  # fmt: skip
        """``process(key, items, group)`` returns one result per item (any value for items no
        longer live). Only ``observer.dropped`` is called."""
        self._process = process
        self.max_items = max_items
        self.max_delay_s = max_delay_s
        self.max_waiting = max_waiting
        self.retry_after_s = retry_after_s
        self.name = name
        self.observer = observer if observer is not None else NullObserver()
        self._waiting: dict[Hashable, list[_Waiting[Item]]] = {}
        self._waiting_count = 0
        self._running: set[Hashable] = set()
        self._slots = asyncio.Semaphore(max_groups)

    @property
    def waiting(self) -> int:
        return self._waiting_count

    async def submit(self, key: Hashable, items: Sequence[Item], deadline: float | None = None) -> list[Result]:
        """Process ``items`` together with concurrent submissions of the same ``key`` (e.g. the same
        decoding options). ``deadline`` is a ``time.monotonic()`` instant; None means no deadline."""
        if self._waiting_count >= self.max_waiting:
            self.observer.dropped("queue_full")
            raise Overloaded(f"{self.name}: {self._waiting_count} requests are waiting for a decode group "
                             "(dynamic_batching.max_queue_size); retry later", retry_after=self.retry_after_s)
        if deadline is not None and deadline <= time.monotonic():
            self.observer.dropped("deadline")
            raise DeadlineExceeded(f"{self.name}: the request's deadline had passed before it was queued")
        loop = asyncio.get_running_loop()
        waiting = _Waiting(items, deadline, loop.create_future())
        self._waiting.setdefault(key, []).append(waiting)
        self._waiting_count += 1
        if key not in self._running:
            self._running.add(key)
            loop.create_task(self._drain(key))
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            return await asyncio.wait_for(asyncio.shield(waiting.future), timeout)
        except asyncio.TimeoutError:
            self._withdraw(key, waiting, "deadline")
            raise DeadlineExceeded(f"{self.name}: deadline exceeded; this request's items were dropped, "
                                   "the others of its group go on") from None
        except asyncio.CancelledError:
            self._withdraw(key, waiting, "cancelled")
            raise

    def _withdraw(self, key: Hashable, waiting: _Waiting, reason: str) -> None:
        waiting.withdrawn = True
        self.observer.dropped(reason)
        queue = self._waiting.get(key)
        if queue is not None and waiting in queue:
            queue.remove(waiting)
            self._waiting_count -= 1
        if not waiting.future.done():
            waiting.future.cancel()
        elif not waiting.future.cancelled():
            waiting.future.exception()  # its group failed as it left: read, so asyncio does not log it as lost

    async def _drain(self, key: Hashable) -> None:
        try:
            await asyncio.sleep(self.max_delay_s)
            while self._waiting.get(key):
                async with self._slots:
                    queue = self._waiting.get(key)
                    if not queue:  # every caller left while the group waited for a slot
                        break
                    members, count = [], 0
                    while queue and (not members or count + len(queue[0].items) <= self.max_items):
                        w = queue.pop(0)
                        self._waiting_count -= 1
                        members.append(w)
                        count += len(w.items)
                    try:
                        results = await self._process(key, [item for w in members for item in w.items],
                                                      Group(members))  # fmt: skip
                    except Exception as exc:  # noqa: BLE001 - every caller of the group learns why
                        for w in members:
                            if not w.future.done():
                                w.future.set_exception(exc)
                        continue
                offset = 0
                for w in members:
                    if not w.future.done():
                        w.future.set_result(results[offset : offset + len(w.items)])
                    offset += len(w.items)
        finally:
            self._running.discard(key)
            if not self._waiting.get(key):
                self._waiting.pop(key, None)
            elif key not in self._running:  # arrivals during the last group's teardown
                self._running.add(key)
                asyncio.get_running_loop().create_task(self._drain(key))
