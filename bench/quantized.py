"""fp32 vs int8 side by side: each model's int8 version (``python -m app.training quantize``) and the fp32
version it was made from, served by one server, the same single-item requests over REST ``/predict/{task}``
picking the version, runs interleaved fp32, int8, int8, fp32 per concurrency (so drift on a busy machine
hits both alike).

    python -m bench.quantized                          # models with an int8 version in models/
    python -m bench.quantized --models fashion-cnn --quick

Image requests are scikit-learn's sample photos scaled to the model's input size (PNG), so decoding a
large JPEG does not hide the graph; text requests are bench.tasks' texts. The quality columns come from the
int8 card (both versions evaluated in the quantize run). Writes bench/results/quantized.{md,json}.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
import yaml

from testkit.metrics import load_average
from testkit.server import Server
from bench.tasks import RESULTS, cell, photos, show, task_payloads

CONCURRENCY = (16,)
ORDER = ("fp32", "int8", "int8", "fp32")


def quantized_models(repository: Path, names: list[str] | None) -> list[dict]:
    """Per model with an int8 version: its folder, task, the int8 version, the fp32 one it came from, the card's figures."""
    found = []
    for folder in sorted(p for p in repository.iterdir() if (p / "config.yaml").is_file()):
        if names and folder.name not in names:
            continue
        cards = {int(v.name): json.loads((v / "card.json").read_text())
                 for v in folder.iterdir() if v.name.isdigit() and (v / "card.json").is_file()}  # fmt: skip
        int8 = max((v for v, c in cards.items() if "quantization" in c), default=None)
        if int8 is None:
            continue
        q = cards[int8]["quantization"]
        task = yaml.safe_load((folder / "config.yaml").read_text())["task"]
        found.append({"name": folder.name, "task": task, "dir": folder, "int8": str(int8),
                      "fp32": str(q["from_version"]), "quantization": q})  # fmt: skip
    missing = set(names or []) - {m["name"] for m in found}
    if missing:
        sys.exit(f"no int8 version of {', '.join(sorted(missing))} in {repository}: "
                 "run python -m app.training quantize MODEL first")
    return found


def serve_both(root: Path, models: list[dict]) -> Path:
    """A repository holding both versions of each model, its policy set to serve exactly those two."""
    repo = root / "repo"
    for m in models:
        (repo / m["name"]).mkdir(parents=True)
        config = yaml.safe_load((m["dir"] / "config.yaml").read_text())
        config["version_policy"] = {"specific": [int(m["fp32"]), int(m["int8"])]}
        (repo / m["name"] / "config.yaml").write_text(yaml.safe_dump(config))
        for version in (m["fp32"], m["int8"]):
            shutil.copytree(m["dir"] / version, repo / m["name"] / version)
    return repo


def request_bodies(m: dict) -> list[dict]:
    if m["task"] != "image":
        return task_payloads(m["task"], {**m, "version": m["fp32"]})[0]
    from PIL import Image

    preprocess = yaml.safe_load((m["dir"] / "config.yaml").read_text())["parameters"]["preprocess"]
    bodies = []
    for photo in photos():
        buffer = io.BytesIO()
        Image.open(io.BytesIO(photo)).convert(preprocess["color_mode"]).resize(tuple(preprocess["size"])).save(buffer, format="PNG")
        bodies.append({"model": m["name"], "images": [base64.b64encode(buffer.getvalue()).decode()]})
    return bodies


def _pair(rows: list[dict], key: str, fmt: str) -> str:
    return " / ".join(format(np.mean([r[key] or 0 for r in rows if r["precision"] == p]), fmt) for p in ("fp32", "int8"))


def table(results: list[dict], meta: dict) -> str:
    lines = [
        "# fp32 vs int8", "",
        f"{meta['when']}, {meta['cpus']} CPU cores shared with other work: load average {meta['load_start']} at the "
        f"start, {meta['load_end']} at the end. One server holds both versions; REST /predict/{{task}}, one item per "
        f"request, closed-loop clients in a separate process, {meta['warmup']:g} s warm-up + {meta['seconds']:g} s "
        "per run, runs fp32, int8, int8, fp32 (req/s: the mean of each version's two runs, each listed).", "",
        "| model | task | clients | fp32 req/s | int8 req/s | int8 / fp32 | p50 ms fp32 / int8 | mean batch fp32 / int8 "
        "| pre/post share fp32 / int8 | server CPU ms/req fp32 / int8 | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    for r in results:
        runs = r["runs"]
        each = {p: [x["rps"] for x in runs if x["precision"] == p] for p in ("fp32", "int8")}
        rps = {p: float(np.mean(v)) for p, v in each.items()}
        p50 = " / ".join(format(1e3 * float(np.mean([x["p50"] for x in runs if x["precision"] == p])), ".1f")
                         for p in ("fp32", "int8"))  # fmt: skip
        lines.append(
            f"| {r['model']} v{r['fp32']} / v{r['int8']} | {r['task']} | {r['concurrency']} | "
            f"{rps['fp32']:.1f} ({' / '.join(f'{x:.0f}' for x in each['fp32'])}) | "
            f"{rps['int8']:.1f} ({' / '.join(f'{x:.0f}' for x in each['int8'])}) | **{rps['int8'] / rps['fp32']:.2f}** | "
            f"{p50} | {_pair(runs, 'mean_batch', '.1f')} | {_pair(runs, 'processing_share', '.0%')} | "
            f"{_pair(runs, 'server_cpu_ms', '.2f')} | {sum(x['error_count'] for x in runs)} |")  # fmt: skip
    lines += ["", "Quality and size, from the int8 card (both versions evaluated on the test split in the quantize run):", "",
              "| model | method | metrics fp32 | metrics int8 | delta | graph bytes int8 / fp32 | graph-only items/s int8 / fp32 |",
              "|---|---|---|---|---|---:|---:|"]  # fmt: skip
    for m in meta["models"]:
        q = m["quantization"]
        fmt = lambda d: ", ".join(f"{k} {v}" for k, v in d.items())  # noqa: E731
        lines.append(f"| {m['name']} | {q['method'].split(':')[0]} | {fmt(q['metrics']['fp32'])} | {fmt(q['metrics']['int8'])} "
                     f"| {fmt(q['metrics']['delta'])} | {q['bytes']['ratio']:.2f} | {q['throughput']['ratio']:.2f} |")
    lines += ["", f"Reproduce: `{meta['command']}`."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", type=Path, default=Path("models"))
    parser.add_argument("--models", default="", help="comma-separated; default: every model with an int8 version")
    parser.add_argument("--clients", default=",".join(map(str, CONCURRENCY)), help="comma-separated concurrencies")
    parser.add_argument("--quick", action="store_true", help="short runs (end-to-end smoke run)")
    parser.add_argument("--seconds", type=float, default=6.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=1.5, help="warm-up seconds per run")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.warmup = 2.0, 0.5
    args.channels = 1  # REST only; cell() passes it on
    models = quantized_models(args.repository, [n for n in args.models.split(",") if n] or None)
    if not models:
        sys.exit(f"no model in {args.repository} has an int8 version: run python -m app.training quantize MODEL first")
    RESULTS.mkdir(exist_ok=True)
    load_start = load_average()
    results = []
    with tempfile.TemporaryDirectory() as tmp_:
        tmp = Path(tmp_)
        with Server(serve_both(tmp, models), timeout=600) as server:
            for m in models:
                bodies = request_bodies(m)
                for clients in (int(c) for c in args.clients.split(",")):
                    runs = []
                    for precision in ORDER:
                        version = m[precision]
                        payloads = [(f"/predict/{m['task']}", {"Content-Type": "application/json"},
                                     orjson.dumps({**b, "version": version})) for b in bodies]  # fmt: skip
                        r = cell(server, tmp, kind="rest", model=m["name"], version=version, concurrency=clients,
                                 payloads=payloads, method=None, args=args)  # fmt: skip
                        show(f"{m['name']} {precision} v{version}", r)
                        runs.append({**r, "precision": precision})
                    results.append({"model": m["name"], "task": m["task"], "concurrency": clients, "fp32": m["fp32"],
                                    "int8": m["int8"], "runs": runs})  # fmt: skip
    meta = {"when": time.strftime("%Y-%m-%d %H:%M"), "cpus": os.cpu_count(), "load_start": load_start,
            "load_end": load_average(), "warmup": args.warmup, "seconds": args.seconds,
            "models": [{k: v for k, v in m.items() if k != "dir"} for m in models],
            "command": " ".join(["python -m bench.quantized", *sys.argv[1:]])}  # fmt: skip
    md = table(results, meta)
    (RESULTS / "quantized.md").write_text(md)
    (RESULTS / "quantized.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2, default=str))
    print("\n" + md)
    print(f"wrote {RESULTS}/quantized.md, quantized.json")


if __name__ == "__main__":
    main()
