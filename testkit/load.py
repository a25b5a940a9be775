"""Load generators over aiohttp: open-loop Poisson arrivals (a traffic spike) and closed-loop clients
(the served capacity), each request's outcome counted in a ``Tally``."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

import aiohttp


@dataclass
class Tally:
    """What an open-loop run saw: status counts, wrong answers, transport errors, latencies."""

    statuses: dict[int, int] = field(default_factory=dict)
    wrong: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    missing_retry_after: int = 0
    latencies: list[float] = field(default_factory=list)
    sent: int = 0

    def count(self, status: int) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1


async def infer_once(session: aiohttp.ClientSession, url: str, case, tally: Tally, check) -> None:
    body, headers, expected = case
    start = time.perf_counter()
    tally.sent += 1
    try:
        async with session.post(url, data=body, headers=headers) as r:
            data = await r.read()
            tally.count(r.status)
            if r.status == 200:
                tally.latencies.append(time.perf_counter() - start)
                problem = check(r, data, expected)
                if problem:
                    tally.wrong.append(problem)
            elif r.status == 503 and "Retry-After" not in r.headers:
                tally.missing_retry_after += 1
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        tally.errors.append(f"{type(exc).__name__}: {exc}")


async def open_loop(url: str, cases: list, rate: float, seconds: float, check, *, seed: int = 0,
                    max_outstanding: int = 2000) -> Tally:  # fmt: skip
    """Poisson arrivals at ``rate`` requests/s for ``seconds`` regardless of how fast the server
    answers (what a traffic spike looks like), each a random one of ``cases``."""
    rng = random.Random(seed)
    tally = Tally()
    # keep-alive shorter than uvicorn's 5 s, so the client never reuses a connection the server is closing
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=2)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks: set[asyncio.Task] = set()
        loop = asyncio.get_running_loop()
        start = loop.time()
        next_at = start
        while next_at - start < seconds:
            delay = next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(tasks) < max_outstanding:
                t = loop.create_task(infer_once(session, url, rng.choice(cases), tally, check))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
            next_at += rng.expovariate(rate)
        if tasks:
            await asyncio.gather(*tasks)
    return tally


async def closed_loop(url: str, cases: list, concurrency: int, seconds: float, check) -> tuple[Tally, float]:
    """``concurrency`` clients back to back: the served capacity in requests/s."""
    tally = Tally()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(keepalive_timeout=2),
                                     timeout=aiohttp.ClientTimeout(total=60)) as session:
        stop = time.perf_counter() + seconds
        rng = random.Random(1)

        async def client():
            while time.perf_counter() < stop:
                await infer_once(session, url, rng.choice(cases), tally, check)

        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return tally, tally.statuses.get(200, 0) / elapsed
