"""Request coalescing for multi-step tasks (e.g. a decode loop).

The dynamic batcher batches single graph runs. A translation is a loop of runs whose shapes
change every step, so concurrent requests would rarely meet in the batcher. The coalescer
merges concurrent *requests* instead: items that arrive while a group is running (or within
``max_delay_s`` of the first) are processed together as one group, and each caller gets its
own results back, in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass(eq=False)
class _Waiting(Generic[Item]):
    items: Sequence[Item]
    future: asyncio.Future = field(repr=False)


class Coalescer(Generic[Item, Result]):
    def __init__(
        self,
        process: Callable[[Hashable, list[Item]], Awaitable[list[Result]]],
        *,
        max_items: int = 32,
        max_delay_s: float = 0.002,
    ):
        self._process = process
        self.max_items = max_items
        self.max_delay_s = max_delay_s
        self._waiting: dict[Hashable, list[_Waiting[Item]]] = {}
        self._running: set[Hashable] = set()

    async def submit(self, key: Hashable, items: Sequence[Item]) -> list[Result]:
        """Process ``items`` together with concurrent submissions of the same ``key`` (e.g. the same
        decoding options)."""
        waiting = _Waiting(items, asyncio.get_running_loop().create_future())
        self._waiting.setdefault(key, []).append(waiting)
        if key not in self._running:
            self._running.add(key)
            asyncio.get_running_loop().create_task(self._drain(key))
        return await waiting.future

    async def _drain(self, key: Hashable) -> None:
        try:
            await asyncio.sleep(self.max_delay_s)
            while self._waiting.get(key):
                queue = self._waiting[key]
                group, count = [], 0
                while queue and (not group or count + len(queue[0].items) <= self.max_items):
                    w = queue.pop(0)
                    if w.future.cancelled():
                        continue
                    group.append(w)
                    count += len(w.items)
                if not group:
                    continue
                try:
                    results = await self._process(key, [item for w in group for item in w.items])
                except Exception as exc:  # noqa: BLE001 - every caller of the group learns why
                    for w in group:
                        if not w.future.done():
                            w.future.set_exception(exc)
                    continue
                offset = 0
                for w in group:
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
