"""``python -m app.training quantize MODEL``: an int8 copy of a published version, as the model's next version.

Static quantization (QDQ, per-channel int8 weights, uint8 activations, MinMax calibration) for the image models,
calibrated on training-split images made by the serving preprocessing; dynamic quantization (int8 weights,
activations quantized at run time) for the text models. Both versions are then evaluated in the same run through
the recipe's ``evaluate_onnx`` (the served pre/post code) and timed side by side; the card of the new version
carries both metrics, the delta, the file sizes and the throughput ratio. The method is fixed per recipe, never
chosen by test figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import numpy as np

from app.tasks.registry import load_model_config
from app.training.card import CARD_FILE, RunClock, machine, write_card
from app.training.export import graph_facts, ort_session
from app.training.progress import setup_logging
from app.training.recipe import Evaluation, Recipe
from app.training.recipes import RECIPES
from app.training.reproducibility import TRAINING_THREADS, seed_everything
from app.training.versioning import CONFIG_FILE, next_version, publish, staging_dir, versions

log = logging.getLogger("app.training")

CALIBRATION_ITEMS = 512
TIMING_ROUNDS = 5
# Card fields that describe the trained weights, shared by both versions; the rest is measured anew.
INHERITED = ("model", "task", "recipe", "profile", "data", "training", "hyperparameters", "parameter_count", "assets")


class QuantizeError(ValueError):
    """The model cannot be quantized as asked (no version, no card, a recipe without an int8 method)."""


Feeds = dict[str, np.ndarray]


@dataclass(frozen=True)
class Source:
    model_dir: Path
    version: int
    card: dict[str, Any]
    recipe: Recipe

    @property
    def folder(self) -> Path:
        return self.model_dir / str(self.version)


def _source(repository: Path, model: str, version: int | None) -> Source:
    model_dir = Path(repository) / model
    available = versions(model_dir)
    if not available:
        raise QuantizeError(f"{model}: no version in {model_dir}")
    chosen = version if version is not None else available[-1]
    if chosen not in available:
        raise QuantizeError(f"{model}: no version {chosen} in {model_dir} (have {available})")
    card_path = model_dir / str(chosen) / CARD_FILE
    if not card_path.is_file():
        raise QuantizeError(f"{model} version {chosen}: no {CARD_FILE}; only versions trained here can be quantized")
    card = json.loads(card_path.read_text())
    if "quantization" in card:
        raise QuantizeError(f"{model} version {chosen} is already int8 (from version {card['quantization']['from_version']})")
    recipe_cls = next((r for r in RECIPES.values() if r.name == card.get("model") and r.__module__ == card.get("recipe")), None)
    if recipe_cls is None or recipe_cls.quantization is None:
        raise QuantizeError(f"{model}: its recipe has no int8 method (quantization supports: "
                            f"{', '.join(sorted(r.name for r in RECIPES.values() if r.quantization))})")
    data = card["data"]
    data_path = Path(data["origin"]) if str(data.get("source", "")).startswith("user data at ") else None
    return Source(model_dir, chosen, card, recipe_cls(profile=card["profile"], data_path=data_path))


def _quantize_graph(method: str, fp32: Path, int8: Path, calibration: Sequence[Feeds], scratch: Path) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quant_pre_process, quantize_dynamic,
        quantize_static,
    )  # fmt: skip

    # Shape inference and graph optimisation first, as onnxruntime.quantization recommends.
    prepared = scratch / f"{fp32.stem}.prepared.onnx"
    quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=method == "dynamic")
    if method == "dynamic":
        quantize_dynamic(str(prepared), str(int8), weight_type=QuantType.QInt8)
        return

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds: Iterator[Feeds] = iter(calibration)

        def get_next(self) -> Feeds | None:
            return next(self.feeds, None)

    quantize_static(
        str(prepared), str(int8), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
    )  # fmt: skip


def compare_throughput(fp32: Path, int8: Path, feeds: Sequence[Feeds], rounds: int = TIMING_ROUNDS) -> dict[str, Any]:
    """Items per second of both graphs on the same batches, in interleaved rounds (so a change in the machine's
    load hits both alike); the median round of each."""
    sessions = {"fp32": ort_session(fp32), "int8": ort_session(int8)}
    for session in sessions.values():
        session.run(None, feeds[0])  # first-run allocations are not throughput
    seconds: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(rounds):
        for name, session in sessions.items():
            started = time.perf_counter()
            for feed in feeds:
                session.run(None, feed)
            seconds[name].append(time.perf_counter() - started)
    items = sum(len(next(iter(feed.values()))) for feed in feeds)
    rate = {name: items / statistics.median(s) for name, s in seconds.items()}
    return {
        "fp32_items_per_s": round(rate["fp32"], 1),
        "int8_items_per_s": round(rate["int8"], 1),
        "ratio": round(rate["int8"] / rate["fp32"], 3),
        "items_per_round": items,
        "batch_size": len(next(iter(feeds[0].values()))),
        "rounds": rounds,
        "intra_op_threads": TRAINING_THREADS,
        "measured": "ONNX Runtime session.run only, on training-split inputs made by the serving preprocessing; "
        "fp32 and int8 rounds interleaved, median round",
    }


def _delta(fp32: dict[str, Any], int8: dict[str, Any]) -> dict[str, float]:
    return {k: round(int8[k] - v, 4) for k, v in fp32.items()
            if isinstance(v, (int, float)) and isinstance(int8.get(k), (int, float))}


def quantize(model: str, repository: Path = Path("models"), version: int | None = None,
             calibration_items: int = CALIBRATION_ITEMS) -> Path:
    """Write an int8 copy of ``model``'s version (default: the latest) as its next version; returns its folder."""
    clock = RunClock()
    source = _source(repository, model, version)
    recipe, method = source.recipe, source.recipe.quantization
    assert method is not None
    config = load_model_config(source.model_dir / CONFIG_FILE, model)
    parameters = config.parameters
    seed_everything(source.card.get("training", {}).get("seed", 0), recipe.threads)
    recipe.load_data()  # the same splits as the trained version (fixed seeds)
    batch = max(1, config.max_batch_size or 1)
    samples = recipe.sample_feeds(source.folder, parameters, calibration_items, batch)
    log.info("%s: %s int8 quantization of version %d (%d training-split items)", model, method, source.version,
             sum(len(next(iter(f.values()))) for f in samples))

    with staging_dir(repository, model) as staging, tempfile.TemporaryDirectory() as scratch:
        graph_files = set(config.graphs.values())
        for item in source.folder.iterdir():
            if item.is_file() and item.name != CARD_FILE and item.name not in graph_files:
                shutil.copy2(item, staging / item.name)
        for name, file in config.graphs.items():
            _quantize_graph(method, source.folder / file, staging / file, samples, Path(scratch))
        fp32, int8 = recipe.evaluate_onnx(source.folder, parameters), recipe.evaluate_onnx(staging, parameters)
        log.info("%s: fp32 %s, int8 %s", model, fp32.metrics, int8.metrics)
        main_file = next(iter(config.graphs.values()))
        throughput = compare_throughput(source.folder / main_file, staging / main_file, samples)
        log.info("%s: int8 runs at %.2fx the fp32 throughput", model, throughput["ratio"])
        new_version = next_version(source.model_dir)
        card = _card(source, new_version, method, fp32, int8, throughput, staging, config.graphs, clock)
        write_card(staging, card)
        version_dir = publish(staging, new_version)
    log.info("%s: published int8 version %d at %s", model, new_version, version_dir)
    return version_dir


def _card(source: Source, new_version: int, method: str, fp32: Evaluation, int8: Evaluation, throughput: dict[str, Any],
          staging: Path, graphs: dict[str, str], clock: RunClock) -> dict[str, Any]:
    described = {
        "static": "static QDQ: int8 per-channel weights, uint8 activations, MinMax calibration on training-split "
        "inputs made by the serving preprocessing",
        "dynamic": "dynamic: int8 weights, activations quantized at run time",
    }[method]
    fp32_bytes = {name: (source.folder / file).stat().st_size for name, file in graphs.items()}
    int8_bytes = {name: (staging / file).stat().st_size for name, file in graphs.items()}
    selection = source.recipe.model_selection()
    return {
        **{k: source.card[k] for k in INHERITED if k in source.card},
        "version": new_version,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "metrics": int8.metrics,
        "baselines": int8.baselines,
        "evaluation_protocol": int8.protocol,
        "examples": int8.examples,
        "graphs": {name: graph_facts(staging / file, f"onnxruntime.quantization {package_version('onnxruntime')} "
                                     f"({method})").as_card() for name, file in graphs.items()},
        "quantization": {
            "from_version": source.version,
            "method": described,
            "tool": f"onnxruntime.quantization {package_version('onnxruntime')}",
            "metrics": {"fp32": fp32.metrics, "int8": int8.metrics, "delta": _delta(fp32.metrics, int8.metrics)},
            "fp32_card_metrics_reproduced": fp32.metrics == source.card.get("metrics"),
            "bytes": {"fp32": fp32_bytes, "int8": int8_bytes,
                      "ratio": round(sum(int8_bytes.values()) / sum(fp32_bytes.values()), 3)},
            "throughput": throughput,
        },
        "model_selection": {**selection, "how": f"{selection['how']}; the int8 method is fixed per recipe, not chosen "
                            "on test (the test split is read once per version compared)"},
        "environment": machine(),
        "run": clock.as_card(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.training quantize", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="model name in the repository, e.g. fashion-cnn")
    parser.add_argument("--version", type=int, default=None, help="the fp32 version to quantize (default: latest)")
    parser.add_argument("--repository", type=Path, default=Path("models"), help="model repository folder")
    parser.add_argument("--calibration", type=int, default=CALIBRATION_ITEMS,
                        help="training-split items for calibration (static) and timing")
    args = parser.parse_args(argv)
    setup_logging()
    try:
        print(quantize(args.model, args.repository, args.version, args.calibration))
    except QuantizeError as exc:
        parser.exit(2, f"python -m app.training quantize: {exc}\n")
    return 0
