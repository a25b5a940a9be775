"""Starvation bench: image requests' latency while 64 translation requests run, on this tree's
server ("after") and on an older commit's ("before", default bf4a1e9: every kind of blocking work
shared asyncio's default thread pool), same models, same machine, one run.

    python -m bench.starvation                   # ~3 minutes on 2 cores (+1-2 to train smoke models)
    python -m bench.starvation --before ''       # this tree only

For each server: image requests alone (4 closed-loop clients, a real 427x640 JPEG each, base64
JSON to /predict/image), then the same image clients while 64 closed-loop translation clients run
(one short German sentence per request). Two translation mixes: every client with its own
decoding options (max_length), so nothing coalesces and each request is its own decode loop,
holding a worker thread while it waits on the batcher; and every client with the same options,
where requests coalesce into a few decode groups. Reported: image p50/p99 and requests/s,
translations/s, errors. Writes bench/results/starvation.{md,json}.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import subprocess
import tempfile
import time
from pathlib import Path

import aiohttp

from testkit.metrics import load_average
from testkit.server import Server
from app.tasks.translation.client import SAMPLE_SENTENCES
from bench.tasks import link_repo, photos, scan, train_smoke

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
IMAGE_MODEL, TRANSLATION_MODEL = "fashion-cnn", "translation-de-en"


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def clients(url: str, bodies: list[dict], n: int, stop: float, latencies: list[float], errors: list[str]) -> int:
    """``n`` closed-loop clients, client i sending bodies[i % len(bodies)] until ``stop``; returns 200s."""
    done = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=2),
                                     timeout=aiohttp.ClientTimeout(total=120)) as session:  # fmt: skip

        async def client(i: int) -> None:
            nonlocal done
            body = json.dumps(bodies[i % len(bodies)]).encode()
            while time.perf_counter() < stop:
                started = time.perf_counter()
                try:
                    async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
                        text = await r.read()
                        if r.status == 200:
                            done += 1
                            latencies.append(time.perf_counter() - started)
                        else:
                            errors.append(f"{r.status}: {text[:120]!r}")
                            await asyncio.sleep(0.01)  # a shed request: back off rather than spin on the server
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    errors.append(repr(exc))
                    await asyncio.sleep(0.01)

        await asyncio.gather(*(client(i) for i in range(n)))
    return done


async def phase(server: Server, seconds: float, translation: list[dict] | None, images: bool = True) -> dict:
    bodies = [{"model": IMAGE_MODEL, "images": [base64.b64encode(p).decode()]} for p in photos()]
    stop = time.perf_counter() + seconds
    image_lat, image_err, tr_lat, tr_err = [], [], [], []
    jobs = [clients(f"{server.url}/predict/image", bodies, 4 if images else 0, stop, image_lat, image_err)]
    if translation:
        jobs.append(clients(f"{server.url}/predict/translation", translation, len(translation), stop, tr_lat, tr_err))
    started = time.perf_counter()
    counts = await asyncio.gather(*jobs)
    elapsed = time.perf_counter() - started
    return {
        "image_p50_ms": 1000 * pct(image_lat, 0.5) if image_lat else None,
        "image_p99_ms": 1000 * pct(image_lat, 0.99) if image_lat else None,
        "image_rps": counts[0] / elapsed if images else None, "image_errors": len(image_err),
        "translations_per_s": counts[1] / elapsed if translation else None,
        "translation_errors": len(tr_err), "error_samples": (image_err + tr_err)[:3],
    }


def export_tree(ref: str, into: Path) -> Path:
    """The app package of ``ref`` (git archive), to run a server of that commit."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "app"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", type=Path, default=Path("models"),
                        help="model repository; a missing model is smoke-trained")
    parser.add_argument("--smoke-dir", type=Path, help="where smoke models are trained (and reused from)")
    parser.add_argument("--before", default="bf4a1e9", help="commit to compare against ('' to skip)")
    parser.add_argument("--seconds", type=float, default=12.0, help="measured seconds per phase")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="environment of this tree's server (e.g. DENDRITE_DECODE_THREADS=16); repeatable")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    load_start = load_average()
    print(f"== starvation bench, load average {load_start}", flush=True)
    sentences = SAMPLE_SENTENCES
    mixes = {
        "64 translations, own options each": [{"model": TRANSLATION_MODEL, "texts": [sentences[i % len(sentences)]],
                                               "max_length": 32 + i} for i in range(64)],
        "64 translations, same options": [{"model": TRANSLATION_MODEL, "texts": [sentences[i % len(sentences)]]}
                                          for i in range(64)],
    }  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory() as tmp_:
        tmp = Path(tmp_)
        smoke = args.smoke_dir or tmp / "smoke"
        smoke.mkdir(parents=True, exist_ok=True)
        given = scan(args.repository)
        if missing := [m for m in (IMAGE_MODEL, TRANSLATION_MODEL) if m not in given and m not in scan(smoke)]:
            train_smoke(missing, smoke)
        have = scan(smoke) | given
        repo = link_repo(tmp, {m: have[m] for m in (IMAGE_MODEL, TRANSLATION_MODEL)})
        env = dict(e.split("=", 1) for e in args.env)
        trees = {"after (this tree)" + "".join(f", {k}={v}" for k, v in env.items()): (ROOT, env)}
        if args.before:
            trees = {f"before ({args.before})": (export_tree(args.before, tmp / "before"), {})} | trees
        phases = {"images alone": (None, True), **{m: (t, True) for m, t in mixes.items()},
                  f"{next(iter(mixes))}, no images": (next(iter(mixes.values())), False)}  # fmt: skip
        for label, (tree, tree_env) in trees.items():
            with Server(repo, timeout=600, cwd=tree, env=tree_env) as server:
                for name, (translation, images) in phases.items():
                    r = {"server": label, "load": name,
                         **asyncio.run(phase(server, args.seconds, translation, images))}
                    rows.append(r)
                    print(f"   {label:<22} {name:<36} image p50 {r['image_p50_ms'] or 0:7.1f} ms  "
                          f"p99 {r['image_p99_ms'] or 0:7.1f} ms  {r['image_rps'] or 0:6.1f} img/s  "
                          f"translations/s {r['translations_per_s'] or 0:5.1f}  errors "
                          f"{r['image_errors']}/{r['translation_errors']} {r['error_samples'][:1]}", flush=True)
    meta = {"load_average_start": load_start, "load_average_end": load_average(), "seconds": args.seconds,
            "models": {m: f"{have[m]['dir'].name} v{have[m]['version']} ({have[m]['profile']})"
                       for m in (IMAGE_MODEL, TRANSLATION_MODEL)}}  # fmt: skip
    lines = [f"load average {meta['load_average_start']} -> {meta['load_average_end']}; models {meta['models']}", "",
             "| server | load | image p50 ms | image p99 ms | images/s | translations/s | errors (image/translation) |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    def num(v) -> str:
        return "" if v is None else f"{v:.1f}"

    for r in rows:
        lines.append(f"| {r['server']} | {r['load']} | {num(r['image_p50_ms'])} | {num(r['image_p99_ms'])} | "
                     f"{num(r['image_rps'])} | {num(r['translations_per_s'])} | "
                     f"{r['image_errors']}/{r['translation_errors']} |")
    (RESULTS / "starvation.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "starvation.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print("\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
