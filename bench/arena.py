"""ONNX Runtime CPU memory with varying batch shapes: arena on/off, memory pattern on/off,
arena shrinkage after each run. Each variant runs in a fresh process; RSS is sampled as
random batch sizes (1..max) go through a session, so growth past the first few hundred runs
shows memory that is not bounded by the largest shape.

    python -m bench.arena [--runs 1500] [--max-batch 64]

Prints a table (and writes bench/results/arena.json). The server default (DENDRITE_CPU_MEM_ARENA)
comes from this comparison; see docs/reliability.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

VARIANTS = {
    "arena+pattern (ORT default)": {"arena": True, "pattern": True, "shrink": False},
    "arena, no pattern": {"arena": True, "pattern": False, "shrink": False},
    "arena+shrink each run": {"arena": True, "pattern": True, "shrink": True},
    "no arena": {"arena": False, "pattern": True, "shrink": False},
    "no arena, no pattern": {"arena": False, "pattern": False, "shrink": False},
}

CHILD = r"""
import json, sys, time, numpy as np, onnxruntime as ort
path, arena, pattern, shrink, runs, max_batch = sys.argv[1], *map(int, sys.argv[2:5]), int(sys.argv[5]), int(sys.argv[6])
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"): return int(line.split()[1]) / 1024
so = ort.SessionOptions(); so.intra_op_num_threads = 1; so.enable_cpu_mem_arena = bool(arena)
so.enable_mem_pattern = bool(pattern)
s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
ro = ort.RunOptions()
if shrink: ro.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
name, width = s.get_inputs()[0].name, s.get_inputs()[0].shape[1]
rng = np.random.default_rng(0)
start = rss(); samples = []; t0 = time.perf_counter()
for i in range(runs):
    b = int(rng.integers(1, max_batch + 1))
    s.run(None, {name: rng.standard_normal((b, width)).astype(np.float32)}, ro)
    if (i + 1) % max(1, runs // 10) == 0: samples.append(round(rss(), 1))
print(json.dumps({"start": round(start, 1), "samples": samples, "seconds": round(time.perf_counter() - t0, 2)}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=600)
    ap.add_argument("--max-batch", type=int, default=512)
    ap.add_argument("--width", type=int, default=1024)
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from testkit.models import matmul_chain_model, save

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = save(matmul_chain_model(width=args.width, depth=8), Path(tmp) / "chain.onnx")
        for label, v in VARIANTS.items():
            out = subprocess.run([sys.executable, "-c", CHILD, str(path), str(int(v["arena"])), str(int(v["pattern"])),
                                  str(int(v["shrink"])), str(args.runs), str(args.max_batch)],
                                 capture_output=True, text=True, check=True)  # fmt: skip
            r = json.loads(out.stdout)
            s = r["samples"]
            r["after_10pct"], r["end"], r["late_growth"] = s[0], s[-1], round(s[-1] - s[0], 1)
            results[label] = r
            print(f"{label:30s} RSS start {r['start']:7.1f}  after 10% {s[0]:7.1f}  end {s[-1]:7.1f} MiB  "
                  f"(growth after 10%: {r['late_growth']:+.1f})  {r['seconds']:.1f}s", flush=True)
    out_dir = Path(__file__).parent / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "arena.json").write_text(json.dumps({"runs": args.runs, "max_batch": args.max_batch, "width": args.width, **results}, indent=1))


if __name__ == "__main__":
    main()
