"""Worker thread pools, one per kind of blocking work, each sized on its own.

With one shared pool (asyncio's default executor: min(32, cores + 4) threads), translation
decode loops, which hold a thread for a whole request while they wait on the batcher, took
every thread, and image requests queued behind them for their pre-processing; a model load
did too. Separate pools keep each kind's wait to its own kind:

- ``decode``: translation decode loops (DENDRITE_DECODE_THREADS); more loops wait their turn.
- ``preprocess``: image decoding and resizing, tokenisation, parsing of big request bodies
  and messages (DENDRITE_PREPROCESS_THREADS; 0 = one per core): short CPU work.
- ``load``: model loading and closing (DENDRITE_LOAD_THREADS).

ONNX Runtime sessions run on their own per-instance threads (``app.runtime.session``).
"""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

from app.config import Settings, usable_cores

T = TypeVar("T")

# Parsing work above this many bytes (base64 images, gRPC messages, REST bodies) goes to the
# preprocess pool; below it, a thread hop costs more than it saves the event loop.
OFFLOAD_BYTES = 256 * 1024

_pools: dict[str, ThreadPoolExecutor] = {}


def configure(settings: Settings) -> None:
    """(Re)create the pools at the settings' sizes; work already submitted to the old ones finishes there."""
    # "one per core": the cores this process may use, shared with the other workers of the server
    per_core = max(1, usable_cores() // settings.worker_count())
    sizes = {"decode": settings.decode_threads, "preprocess": settings.preprocess_threads or per_core,
             "load": settings.load_threads}
    old = dict(_pools)
    for kind, size in sizes.items():
        _pools[kind] = ThreadPoolExecutor(max_workers=size, thread_name_prefix=f"dendrite-{kind}")
    for pool in old.values():
        pool.shutdown(wait=False)


def size(kind: str) -> int:
    return _pool(kind)._max_workers


def _pool(kind: str) -> ThreadPoolExecutor:
    if not _pools:  # used without a server (tests, offline tools): the settings' defaults
        configure(Settings())
    return _pools[kind]


async def _run(kind: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(_pool(kind), functools.partial(fn, *args, **kwargs))


async def decode(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await _run("decode", fn, *args, **kwargs)


async def preprocess(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await _run("preprocess", fn, *args, **kwargs)


async def load(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await _run("load", fn, *args, **kwargs)


async def offload_if_large(size: int, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args)`` on the preprocess pool when ``size`` (bytes of input) is over OFFLOAD_BYTES, else inline."""
    if size > OFFLOAD_BYTES:
        return await preprocess(fn, *args, **kwargs)
    return fn(*args, **kwargs)
