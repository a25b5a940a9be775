"""Workers benchmark (``python -m bench.serving --workers``): one server process vs DENDRITE_WORKERS=2.

For each model (the small CNN and the EfficientNet-Lite0-sized network of ``bench.serving``), it
starts a real server with 1 and then 2 workers, same model config (dynamic batching on), and drives
it with ``wrk`` (its own process) at 64 clients over REST with binary tensors and with JSON. Per
cell: requests/s, p50/p99, server CPU per request (``process_cpu_seconds_total``: with workers, the
supervisor's and every worker's), and the mean batch size from the server's merged /metrics. ``--rounds 2``
runs the 1-vs-2 pair twice (A B A B), which shows how much the shared machine drifts.

Writes bench/results/workers.{md,json}.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from testkit.metrics import load_average, metric
from testkit.server import Server
from bench.serving import binary_body, wrk, write_repo

CLIENTS = 64


def server_cpu(server: Server) -> float:
    """CPU seconds of the server so far: with workers, the supervisor's and every worker's summed."""
    return metric(server.metrics(), "process_cpu_seconds_total")


def json_body(shape: tuple[int, ...], path: Path) -> None:
    x = np.random.default_rng(1).standard_normal((1, *shape)).astype(np.float32)
    path.write_text(json.dumps({"inputs": [{"name": "image", "shape": list(x.shape), "datatype": "FP32",
                                            "data": x.ravel().tolist()}]}))  # fmt: skip


def bench_workers(label: str, onnx_path: Path, shape: tuple[int, ...], args, tmp: Path) -> list[dict]:
    print(f"\n== {label}: workers 1 vs 2, {CLIENTS} clients, REST binary and JSON", flush=True)
    repo = tmp / f"repo-workers-{label}"
    write_repo(repo, label, onnx_path, args.max_batch, args.instances, args.threads, args.delay_us, modes=("adaptive",))
    binary, as_json = tmp / f"{label}-w.bin", tmp / f"{label}-w.json"
    json_body(shape, as_json)
    bodies = {"binary": (binary, binary_body(shape, binary)), "json": (as_json, None)}  # (file, binary header length)
    model = f"{label}-adaptive"  # the default delay policy, the only copy written
    rows = []
    for rnd in range(args.rounds):
        for workers in (1, 2):
            server = Server(repo, env={"DENDRITE_WORKERS": str(workers)})
            try:
                url = f"{server.url}/v2/models/{model}/infer"
                for encoding, (body, header_len) in bodies.items():
                    wrk(url, body, header_len, 16, 2)  # warm every worker's code paths
                    inf0, ex0 = server.counters(model)
                    cpu0, t0 = server_cpu(server), time.perf_counter()
                    res = wrk(url, body, header_len, CLIENTS, args.seconds)
                    cpu1, t1 = server_cpu(server), time.perf_counter()
                    inf1, ex1 = server.counters(model)
                    requests = res["rps"] * (t1 - t0)
                    row = {"model": label, "workers": workers, "encoding": encoding, "round": rnd + 1, **res,
                           "cpu_ms_per_request": (cpu1 - cpu0) / max(1.0, requests) * 1e3,
                           "server_cores": (cpu1 - cpu0) / (t1 - t0),
                           "mean_batch": (inf1 - inf0) / max(1.0, ex1 - ex0), "load": load_average()}  # fmt: skip
                    rows.append(row)
                    print(f"   workers={workers} {encoding:6s} {res['rps']:8.1f} req/s  p50 {res['p50'] * 1e3:7.2f} ms  "
                          f"p99 {res['p99'] * 1e3:7.2f} ms  cpu {row['cpu_ms_per_request']:.3f} ms/req "
                          f"({row['server_cores']:.2f} cores)  batch {row['mean_batch']:5.1f}  errors {res['errors']}"
                          f"  load {row['load']}", flush=True)  # fmt: skip
            finally:
                server.stop()
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    """Per model and encoding: 2 workers against 1 (means over rounds)."""
    out = []
    for key in dict.fromkeys((r["model"], r["encoding"]) for r in rows):
        cell = {w: [r for r in rows if (r["model"], r["encoding"]) == key and r["workers"] == w] for w in (1, 2)}
        mean = {w: {k: float(np.mean([r[k] for r in cell[w]])) for k in ("rps", "p99", "cpu_ms_per_request")}
                for w in (1, 2)}  # fmt: skip
        out.append({"model": key[0], "encoding": key[1], "rps_ratio": mean[2]["rps"] / mean[1]["rps"],
                    "p99_ratio": mean[2]["p99"] / mean[1]["p99"],
                    "cpu_ratio": mean[2]["cpu_ms_per_request"] / mean[1]["cpu_ms_per_request"]})  # fmt: skip
    return out


def table(rows: list[dict], meta: dict) -> str:
    lines = [
        "# Workers benchmark", "",
        f"{meta['when']}, {meta['cpus']} CPU cores (shared with wrk), onnxruntime {ort.__version__}; REST, "
        f"{CLIENTS} clients (wrk, own process), {meta['seconds']:.0f} s per cell; dynamic batching on, "
        f"max_queue_delay {meta['delay_us']} us, {meta['instances']} instance(s) x {meta['threads']} intra-op "
        "thread(s) (capped at cores / workers). Server CPU: `process_cpu_seconds_total` (supervisor + workers).", "",
        "| model | encoding | workers | round | req/s | p50 ms | p99 ms | server CPU ms/req | server cores "
        "| mean batch | errors | load avg |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['model']} | {r['encoding']} | {r['workers']} | {r['round']} | {r['rps']:.1f} | "
                     f"{r['p50'] * 1e3:.2f} | {r['p99'] * 1e3:.2f} | {r['cpu_ms_per_request']:.3f} | "
                     f"{r['server_cores']:.2f} | {r['mean_batch']:.1f} | {r['errors']} | {r['load']} |")  # fmt: skip
    lines += ["", "| model | encoding | req/s 2 vs 1 worker | p99 2 vs 1 | CPU/req 2 vs 1 |", "|---|---|---:|---:|---:|"]
    for s in summarize(rows):
        lines.append(f"| {s['model']} | {s['encoding']} | {s['rps_ratio']:.2f}x | {s['p99_ratio']:.2f}x | "
                     f"{s['cpu_ratio']:.2f}x |")  # fmt: skip
    return "\n".join(lines) + "\n"


def run(args, models: dict[str, tuple[Path, tuple[int, ...]]], results: Path, tmp: Path) -> None:
    rows = []
    for label, (path, shape) in models.items():
        rows += bench_workers(label, path, shape, args, tmp)
    meta = {"when": time.strftime("%Y-%m-%d %H:%M"), "cpus": os.cpu_count(), "instances": args.instances,
            "threads": args.threads, "delay_us": args.delay_us, "seconds": args.seconds}  # fmt: skip
    md = table(rows, meta)
    (results / "workers.md").write_text(md)
    (results / "workers.json").write_text(json.dumps({"meta": meta, "rows": rows, "summary": summarize(rows)}, indent=2))
    print("\n" + md)
    print(f"wrote {results}/workers.md, workers.json")
