"""Soak: a real server process at a steady fraction of its capacity for a long time, reporting
latency drift and memory (RSS) over time.

    python -m bench.soak                      # 10 minutes at 70% of the measured capacity
    python -m bench.soak --minutes 1          # a quick look

It measures the served capacity first (closed loop), then offers Poisson arrivals at
``--load`` x capacity over REST with batch sizes that vary (1..16 rows), checking every
answer. Each window (``--window`` seconds) reports p50/p99 latency, throughput, non-200
counts and the server's RSS; the summary compares the last windows with the first ones
(latency drift, RSS growth). Writes bench/results/soak.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
from pathlib import Path

import aiohttp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from testkit.load import Tally, closed_loop, infer_once  # noqa: E402
from testkit.server import ServerProcess  # noqa: E402
from testkit.models import chain_weights, matmul_chain_model, write_model  # noqa: E402
from testkit.oip import chain_cases, check_chain_answer  # noqa: E402


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000 if values else float("nan")


async def soak(url: str, work: list, rate: float, seconds: float, window: float, server: ServerProcess) -> list[dict]:
    rng = random.Random(0)
    windows: list[dict] = []
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=2)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        loop = asyncio.get_running_loop()
        start = loop.time()
        tasks: set[asyncio.Task] = set()
        tally, window_start, next_at = Tally(), start, start
        while next_at - start < seconds:
            now = loop.time()
            if now - window_start >= window:
                windows.append(summarise(tally, now - start, now - window_start, server))
                print(format_window(windows[-1]), flush=True)
                tally, window_start = Tally(), now
            if next_at > now:
                await asyncio.sleep(next_at - now)
            t = loop.create_task(infer_once(session, url, rng.choice(work), tally, check_chain_answer))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
            next_at += rng.expovariate(rate)
        if tasks:
            await asyncio.gather(*tasks)
        windows.append(summarise(tally, loop.time() - start, loop.time() - window_start, server))
        print(format_window(windows[-1]), flush=True)
    return windows


def summarise(t: Tally, at: float, length: float, server: ServerProcess) -> dict:
    return {"t": round(at, 1), "ok": t.statuses.get(200, 0), "rps": round(t.statuses.get(200, 0) / length, 1),
            "p50_ms": round(pct(t.latencies, 50), 2), "p99_ms": round(pct(t.latencies, 99), 2),
            "non_200": {str(k): v for k, v in t.statuses.items() if k != 200}, "errors": len(t.errors),
            "wrong": len(t.wrong), "rss_mib": round(server.rss_mib(), 1)}  # fmt: skip


def format_window(w: dict) -> str:
    return (f"t={w['t']:7.1f}s  {w['rps']:7.1f} req/s  p50 {w['p50_ms']:7.2f} ms  p99 {w['p99_ms']:7.2f} ms  "
            f"RSS {w['rss_mib']:7.1f} MiB  non-200 {w['non_200'] or 0}  errors {w['errors']}  wrong {w['wrong']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--load", type=float, default=0.7, help="offered load as a fraction of the measured capacity")
    ap.add_argument("--window", type=float, default=None, help="seconds per report line (default: 1/10 of the run)")
    args = ap.parse_args()
    seconds = args.minutes * 60
    window = args.window or max(5.0, seconds / 10)
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp)
        model = matmul_chain_model(width=1024, depth=16)
        write_model(repo, "heavy", model, {"max_batch_size": 32, "dynamic_batching": {"max_queue_size": 64}})
        work = chain_cases(chain_weights(model))
        with ServerProcess(repo) as server:
            url = f"{server.url}/v2/models/heavy/infer"
            _, capacity = asyncio.run(closed_loop(url, work, concurrency=6, seconds=10, check=check_chain_answer))
            rate = args.load * capacity
            print(f"capacity {capacity:.1f} req/s; offering {rate:.1f} req/s ({args.load:.0%}) for {seconds:.0f}s; "
                  f"load average {os.getloadavg()[0]:.2f}", flush=True)  # fmt: skip
            windows = asyncio.run(soak(url, work, rate, seconds, window, server))
    head, tail = windows[: max(1, len(windows) // 5)], windows[-max(1, len(windows) // 5) :]
    mean = lambda ws, k: sum(w[k] for w in ws) / len(ws)  # noqa: E731
    summary = {
        "capacity_rps": round(capacity, 1), "offered_rps": round(rate, 1), "seconds": seconds,
        "p50_drift_ms": round(mean(tail, "p50_ms") - mean(head, "p50_ms"), 2),
        "p99_drift_ms": round(mean(tail, "p99_ms") - mean(head, "p99_ms"), 2),
        "rss_first_mib": windows[0]["rss_mib"], "rss_last_mib": windows[-1]["rss_mib"],
        "rss_growth_mib": round(windows[-1]["rss_mib"] - windows[0]["rss_mib"], 1),
        "non_200": sum(sum(w["non_200"].values()) for w in windows), "errors": sum(w["errors"] for w in windows),
        "wrong": sum(w["wrong"] for w in windows), "load_average": os.getloadavg()[0],
    }  # fmt: skip
    print("summary:", json.dumps(summary))
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "soak.json").write_text(json.dumps({"summary": summary, "windows": windows}, indent=1))


if __name__ == "__main__":
    main()
