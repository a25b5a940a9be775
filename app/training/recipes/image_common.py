"""Pieces the image recipes share: labels file, ONNX evaluation through the serving image code."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from app.tasks.image.processing import Prediction, load_labels, top_k
from app.tasks.image.processing import ImagePreprocessing, preprocess
from app.training.export import ort_session
from app.training.progress import progress

LABELS_FILE = "labels.json"
MODEL_FILE = "model.onnx"


def write_labels(version_dir: Path, labels: Sequence[str]) -> str:
    (Path(version_dir) / LABELS_FILE).write_text(json.dumps(list(labels), indent=1, ensure_ascii=False) + "\n")
    return LABELS_FILE


def image_config(parameters: dict[str, Any], max_batch_size: int, queue_delay_us: int) -> dict[str, Any]:
    return {
        "task": "image",
        "graphs": {"model": MODEL_FILE},
        "max_batch_size": max_batch_size,
        "dynamic_batching": {"max_queue_delay_microseconds": queue_delay_us},
        "warmup": {"batch_sizes": [1, max_batch_size]},
        "parameters": parameters,
    }


def _batches(items: Sequence[bytes], size: int) -> Iterator[Sequence[bytes]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def classify_encoded(
    version_dir: Path, parameters: dict[str, Any], encoded: Sequence[bytes], batch_size: int = 256, desc: str = "evaluate"
) -> list[list[Prediction]]:
    """Encoded images -> top-k predictions, exactly as the server does it: ``app.tasks.image`` preprocessing,
    the ONNX graph in ONNX Runtime, ``app.tasks.image`` postprocessing with the version's labels file."""
    spec = ImagePreprocessing.from_parameters(parameters)
    labels = load_labels(Path(version_dir) / parameters["labels_file"])
    session = ort_session(Path(version_dir) / MODEL_FILE)
    input_name = session.get_inputs()[0].name
    predictions: list[list[Prediction]] = []
    total = (len(encoded) + batch_size - 1) // batch_size
    for chunk in progress(_batches(encoded, batch_size), desc=desc, total=total, unit="batch"):
        (logits,) = session.run(None, {input_name: preprocess(chunk, spec)})
        predictions.extend(top_k(logits, labels, int(parameters.get("top_k", 5))))
    return predictions


def preprocessed_feeds(version_dir: Path, parameters: dict[str, Any], encoded: Sequence[bytes],
                       batch_size: int) -> list[dict[str, np.ndarray]]:
    """Encoded images -> the graph's input batches, by the serving preprocessing."""
    spec = ImagePreprocessing.from_parameters(parameters)
    input_name = ort_session(Path(version_dir) / MODEL_FILE).get_inputs()[0].name
    return [{input_name: preprocess(chunk, spec)} for chunk in _batches(encoded, batch_size)]


def accuracy(predictions: list[list[Prediction]], labels: np.ndarray) -> float:
    return float(np.mean([p[0].index == int(y) for p, y in zip(predictions, labels)]))
