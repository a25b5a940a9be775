"""The model card (``card.json`` beside the graphs), written from what the run measured."""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from app.config import usable_cores
from app.training.recipe import DataSummary, Evaluation, ExportResult, Recipe

CARD_FILE = "card.json"


LIBRARIES = ("torch", "onnx", "onnxscript", "onnxruntime", "numpy", "tokenizers")


def _package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine() -> dict[str, Any]:
    """What the figures were measured on, so cards from different machines are not read as equal."""
    return {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cores": usable_cores(),  # what this process may run on (containers, taskset)
        "os": platform.platform(),
        "architecture": platform.machine(),
        "python": platform.python_version(),
        "libraries": {pkg: _package_version(pkg) for pkg in LIBRARIES},
    }


@dataclass
class RunClock:
    """Started with a run: its wall time and the load average (1, 5, 15 min) at both ends, since on a
    shared machine the neighbours move every timing on the card."""

    started: float = field(default_factory=time.perf_counter)
    load_at_start: list[float] | None = field(default_factory=_load_average)

    def as_card(self) -> dict[str, Any]:
        return {
            "wall_seconds": round(time.perf_counter() - self.started, 1),
            "load_average_at_start": self.load_at_start,
            "load_average_at_end": _load_average(),
        }


def build_card(
    recipe: Recipe,
    *,
    version: int,
    data: DataSummary,
    exported: ExportResult,
    evaluation: Evaluation,
    training: dict[str, Any],
    training_seconds: float,
    parameter_count: int,
    seed: int,
    assets: list[str],
    clock: RunClock | None = None,
) -> dict[str, Any]:
    return {
        "model": recipe.name,
        "version": version,
        "task": recipe.task,
        "recipe": type(recipe).__module__,
        "profile": recipe.profile,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "data": {
            "source": recipe.source.name if recipe.data_path is None else f"user data at {recipe.data_path}",
            "origin": recipe.source.origin if recipe.data_path is None else str(recipe.data_path),
            "licence": recipe.source.licence if recipe.data_path is None else "as provided by the user",
            **asdict(data),
        },
        "metrics": evaluation.metrics,
        "baselines": evaluation.baselines,
        "evaluation_protocol": evaluation.protocol,
        "examples": evaluation.examples,
        "parity": exported.parity,
        "graphs": {name: graph.as_card() for name, graph in exported.graphs.items()},
        "assets": assets,
        "parameter_count": parameter_count,
        "training": {**training, "seconds": round(training_seconds, 1), "seed": seed, "torch_threads": recipe.threads},
        "hyperparameters": recipe.hyperparameters,
        "model_selection": recipe.model_selection(),
        "environment": machine(),
        "run": (clock or RunClock()).as_card(),
    }


def write_card(version_dir: Path, card: dict[str, Any]) -> Path:
    path = Path(version_dir) / CARD_FILE
    path.write_text(json.dumps(card, indent=2, sort_keys=False) + "\n")
    return path
