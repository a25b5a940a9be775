"""Serving benchmark: served throughput vs the in-process ONNX Runtime ceiling; adaptive vs fixed delay vs no batching.

    python -m bench.serving            # (make bench) full run, ~4 minutes on 2 cores
    python -m bench.serving --quick    # shorter cells
    python -m bench.serving --workers  # instead: one server process vs DENDRITE_WORKERS=2 (bench.workers)

For each model (a small Fashion-MNIST-sized CNN and a compute-bound EfficientNet-Lite0-sized
network), it starts a real server (``python -m app serve``) with the model in the
repository three times, otherwise identical: dynamic batching with the adaptive delay policy,
with Triton's fixed delay, and off. It drives each with ``wrk`` over REST using binary tensors
at concurrency 1, 16 and 64, and reads the mean batch size from the server's own metrics. The
ratio table holds the two bars of the adaptive policy: p50 at one client against batching off
(a lone request should not wait) and req/s at 64 clients against the fixed delay (batches still
form under load). The ceiling is the same model in-process with the same session settings
(instances x intra-op threads, spinning off) at its best batch size, measured in the same run,
so the ratios compare like with like on a shared, noisy machine.

Writes bench/results/serving.{md,json} and a latency-vs-throughput plot serving.png.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import orjson
import yaml

from bench import models as bench_models
from testkit.server import Server

RESULTS = Path(__file__).parent / "results"
CONCURRENCY = (1, 16, 64)
# mode -> (dynamic_batching.enabled, delay_policy)
MODES = {"adaptive": (True, "adaptive"), "fixed": (True, "fixed"), "off": (False, "fixed")}


# ---------------------------------------------------------------------- in-process ceiling
def session(path: Path, threads: int) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def ceiling(path: Path, shape: tuple[int, ...], instances: int, threads: int, batch_sizes, seconds: float) -> dict:
    """Samples/s of `instances` sessions running side by side in this process, per batch size."""
    sessions = [session(path, threads) for _ in range(instances)]
    name = sessions[0].get_inputs()[0].name
    out = {}
    for b in batch_sizes:
        x = np.random.default_rng(0).standard_normal((b, *shape)).astype(np.float32)
        for s in sessions:
            s.run(None, {name: x})
        counts = [0] * instances
        stop = time.perf_counter() + seconds

        def work(i):
            while time.perf_counter() < stop:
                sessions[i].run(None, {name: x})
                counts[i] += b

        threads_ = [threading.Thread(target=work, args=(i,)) for i in range(instances)]
        start = time.perf_counter()
        for t in threads_:
            t.start()
        for t in threads_:
            t.join()
        out[b] = sum(counts) / (time.perf_counter() - start)
    return out


# ---------------------------------------------------------------------- served
def write_repo(root: Path, name: str, onnx_path: Path, max_batch: int, instances: int, threads: int, delay_us: int,
               modes: tuple[str, ...] = tuple(MODES)):
    for mode in modes:
        enabled, policy = MODES[mode]
        folder = root / f"{name}-{mode}"
        (folder / "1").mkdir(parents=True)
        shutil.copy(onnx_path, folder / "1" / "model.onnx")
        config = {
            "max_batch_size": max_batch,
            "dynamic_batching": {"enabled": enabled, "max_queue_delay_microseconds": delay_us, "max_queue_size": 4096,
                                 "delay_policy": policy},
            "instance_group": {"count": instances, "intra_op_threads": threads},
            "warmup": {"batch_sizes": sorted({1, 8, 16, 32, max_batch})},
        }
        (folder / "config.yaml").write_text(yaml.safe_dump(config))


def binary_body(shape: tuple[int, ...], path: Path) -> int:
    x = np.random.default_rng(1).standard_normal((1, *shape)).astype(np.float32)
    raw = x.tobytes()
    header = orjson.dumps({"inputs": [{"name": "image", "shape": list(x.shape), "datatype": "FP32",
                                       "parameters": {"binary_data_size": len(raw)}}]})  # fmt: skip
    path.write_bytes(header + raw)
    return len(header)


_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def _seconds(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s|m)$", text)
    return float(m.group(1)) * _UNITS[m.group(2)]


def wrk(url: str, body: Path, header_len: int | None, connections: int, seconds: float) -> dict:
    """``header_len`` None: a JSON body."""
    script = body.with_suffix(".lua")
    headers = ('wrk.headers["Content-Type"] = "application/json"\n' if header_len is None else
               f'wrk.headers["Inference-Header-Content-Length"] = "{header_len}"\n'
               'wrk.headers["Content-Type"] = "application/octet-stream"\n')  # fmt: skip
    script.write_text(
        f'local f = io.open("{body}", "rb"); wrk.body = f:read("*a"); f:close()\n'
        'wrk.method = "POST"\n' + headers
    )
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "30s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = {p: _seconds(v) for p, v in re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", out, re.M)}
    if len(lat) != 2:
        raise RuntimeError(f"could not read latency percentiles from wrk:\n{out}")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50": lat.get("50"), "p99": lat.get("99"), "errors": int(errors.group(1)) if errors else 0}


def bench_model(label, onnx_path, shape, args, tmp: Path) -> list[dict]:
    inst, threads = args.instances, args.threads
    print(f"\n== {label}: {onnx_path.name}, {inst} instance(s) x {threads} thread(s)", flush=True)
    sizes = (1, 8, 32, 64)
    ceil = ceiling(onnx_path, shape, inst, threads, sizes, args.ceiling_seconds)
    print("   in-process samples/s by batch size: " + ", ".join(f"b{b}={v:.0f}" for b, v in ceil.items()), flush=True)
    repo = tmp / f"repo-{label}"
    write_repo(repo, label, onnx_path, args.max_batch, inst, threads, args.delay_us)
    body = tmp / f"{label}.bin"
    header_len = binary_body(shape, body)
    server = Server(repo)
    rows = []
    try:
        for mode in MODES:
            model = f"{label}-{mode}"
            url = f"{server.url}/v2/models/{model}/infer"
            wrk(url, body, header_len, 16, 2)  # warm the connection pool and code paths
            for c in CONCURRENCY:
                inf0, ex0 = server.counters(model)
                res = wrk(url, body, header_len, c, args.seconds)
                inf1, ex1 = server.counters(model)
                mean_batch = (inf1 - inf0) / max(1.0, ex1 - ex0)
                rows.append({"model": label, "mode": mode, "concurrency": c, **res,
                             "samples_per_s": res["rps"], "mean_batch": mean_batch})  # fmt: skip
                print(f"   {mode:9s} c={c:<3d} {res['rps']:8.1f} req/s  p50 {res['p50'] * 1e3:7.2f} ms  "
                      f"p99 {res['p99'] * 1e3:7.2f} ms  batch {mean_batch:5.1f}  errors {res['errors']}",
                      flush=True)  # fmt: skip
    finally:
        server.stop()
    # Measured again after the served runs; the better of the two is the ceiling (conservative ratio
    # on a machine whose background load drifts).
    after = ceiling(onnx_path, shape, inst, threads, sizes, args.ceiling_seconds)
    print("   in-process again:                   " + ", ".join(f"b{b}={v:.0f}" for b, v in after.items()), flush=True)
    ceil = {b: max(ceil[b], after[b]) for b in sizes}
    best_b = max(ceil, key=ceil.get)
    for row in rows:
        row.update(ceiling=ceil[best_b], ceiling_batch=best_b, ceiling_b1=ceil[1], vs_ceiling=row["rps"] / ceil[best_b])
    return rows


def table(rows: list[dict], meta: dict) -> str:
    lines = [
        "# Serving benchmark", "",
        f"{meta['when']}, {meta['cpus']} CPU cores, onnxruntime {ort.__version__}; REST binary tensors driven by wrk; "
        f"{meta['instances']} instance(s) x {meta['threads']} intra-op thread(s), max_queue_delay {meta['delay_us']} us.",
        "Samples/s = requests/s (one sample per request). Ceiling: same model and session settings in-process at "
        "its best batch size, measured in the same run.", "",
        "| model | batching | clients | req/s | p50 ms | p99 ms | mean batch | served / ceiling | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['model']} | {r['mode']} | {r['concurrency']} | {r['rps']:.1f} | "
                     f"{r['p50'] * 1e3:.2f} | {r['p99'] * 1e3:.2f} | {r['mean_batch']:.1f} | {r['vs_ceiling']:.2f} | "
                     f"{r['errors']} |")  # fmt: skip
    lines += ["", "| model | in-process ceiling samples/s (batch) | batch-1 samples/s | adaptive/off throughput at 64 "
              "| served/ceiling at 64, adaptive | p50 at 1 client, adaptive/off (bar <= 1.3) "
              "| req/s at 64, adaptive/fixed (bar >= 0.95) |", "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip

    def cell(label, mode, c):
        return next(r for r in rows if r["model"] == label and r["mode"] == mode and r["concurrency"] == c)

    for label in dict.fromkeys(r["model"] for r in rows):
        on, off, fixed = cell(label, "adaptive", 64), cell(label, "off", 64), cell(label, "fixed", 64)
        lone = cell(label, "adaptive", 1)["p50"] / cell(label, "off", 1)["p50"]
        lines.append(f"| {label} | {on['ceiling']:.0f} (b{on['ceiling_batch']}) | {on['ceiling_b1']:.0f} | "
                     f"{on['rps'] / off['rps']:.2f}x | {on['vs_ceiling']:.2f} | {lone:.2f}x | "
                     f"{on['rps'] / fixed['rps']:.2f}x |")  # fmt: skip
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = plt.subplots(1, len(labels), figsize=(6 * len(labels), 4.5))
    for ax, label in zip(np.atleast_1d(axes), labels):
        for mode, style in zip(MODES, ("o-", "^-.", "s--")):
            pts = [r for r in rows if r["model"] == label and r["mode"] == mode]
            ax.plot([r["rps"] for r in pts], [r["p99"] * 1e3 for r in pts], style,
                    label=f"batching {mode} (p99)")  # fmt: skip
            for r in pts:
                ax.annotate(f"c={r['concurrency']}", (r["rps"], r["p99"] * 1e3), fontsize=8)
        ax.axvline(pts[0]["ceiling"], color="grey", ls=":", label="in-process ceiling")
        ax.set(title=label, xlabel="throughput (req/s)", ylabel="p99 latency (ms)", yscale="log")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short cells (smoke run)")
    parser.add_argument("--seconds", type=float, default=8.0, help="wrk duration per cell")
    parser.add_argument("--ceiling-seconds", type=float, default=3.0)
    parser.add_argument("--instances", type=int, default=1, help="sessions per model")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads per session")
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--delay-us", type=int, default=5000, help="max_queue_delay_microseconds")
    parser.add_argument("--cnn", type=Path, help="ONNX file for the small model (default: built here)")
    parser.add_argument("--big", type=Path, help="ONNX file for the compute-bound model (default: built here)")
    parser.add_argument("--only", choices=["small-cnn", "effnet-sized"], help="run one model only")
    parser.add_argument("--workers", action="store_true", help="instead: 1 vs 2 workers at 64 clients (bench.workers)")
    parser.add_argument("--rounds", type=int, default=1, help="--workers: repeat the 1-vs-2 pair (A B A B)")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.ceiling_seconds = 3.0, 1.0
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk (make bench does this)")
    RESULTS.mkdir(exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp_:
        tmp = Path(tmp_)
        cnn = args.cnn or bench_models.write(bench_models.small_cnn(), tmp / "small_cnn.onnx")
        big = args.big or bench_models.write(bench_models.effnet_sized(), tmp / "effnet_sized.onnx")
        if args.workers:
            from bench import workers

            models = {"small-cnn": (cnn, (1, 28, 28)), "effnet-sized": (big, (3, 224, 224))}
            return workers.run(args, {k: v for k, v in models.items() if args.only in (None, k)}, RESULTS, tmp)
        if args.only in (None, "small-cnn"):
            rows += bench_model("small-cnn", cnn, (1, 28, 28), args, tmp)
        if args.only in (None, "effnet-sized"):
            rows += bench_model("effnet-sized", big, (3, 224, 224), args, tmp)
    meta = {"when": time.strftime("%Y-%m-%d %H:%M"), "cpus": os.cpu_count(), "instances": args.instances,
            "threads": args.threads, "delay_us": args.delay_us}  # fmt: skip
    md = table(rows, meta)
    (RESULTS / "serving.md").write_text(md)
    (RESULTS / "serving.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    plot(rows, RESULTS / "serving.png")
    print("\n" + md)
    print(f"wrote {RESULTS}/serving.md, serving.json, serving.png")


if __name__ == "__main__":
    main()
