"""Logits -> the top-k labels with probabilities (numpy only)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Prediction:
    index: int
    label: str
    probability: float


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, shifted by the row maximum so large logits cannot overflow."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def top_k_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores per row, best first; ties go to the lower index (stable)."""
    k = min(k, scores.shape[-1])
    return np.argsort(-scores, axis=-1, kind="stable")[..., :k]


def top_k(logits: np.ndarray, labels: list[str], k: int = 5) -> list[list[Prediction]]:
    """(batch, classes) logits -> for each row the k most probable classes, best first."""
    if logits.ndim != 2 or logits.shape[1] != len(labels):
        raise ValueError(f"logits of shape {logits.shape} do not match {len(labels)} labels")
    probabilities = softmax(logits.astype(np.float64))
    return [
        [Prediction(int(i), labels[i], float(row[i])) for i in indices]
        for row, indices in zip(probabilities, top_k_indices(probabilities, k))
    ]


def load_labels(path: Path) -> list[str]:
    """A labels file: a JSON list of class names, index = class id."""
    labels = json.loads(Path(path).read_text())
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise ValueError(f"{path}: expected a JSON list of strings")
    return labels
