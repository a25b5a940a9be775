"""The model card (``card.json`` beside the graphs), written from what the run measured."""

from __future__ import annotations

import json
import platform
from dataclasses import asdict
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from app.training.recipe import DataSummary, Evaluation, ExportResult, Recipe

CARD_FILE = "card.json"


def _package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


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
        "environment": {
            "python": platform.python_version(),
            "machine": platform.machine(),
            **{pkg: _package_version(pkg) for pkg in ("torch", "onnx", "onnxscript", "onnxruntime")},
        },
    }


def write_card(version_dir: Path, card: dict[str, Any]) -> Path:
    path = Path(version_dir) / CARD_FILE
    path.write_text(json.dumps(card, indent=2, sort_keys=False) + "\n")
    return path
