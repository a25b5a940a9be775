"""torch vs ONNX Runtime on a held-out batch: the export is rejected unless both agree."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from app.training.export import ort_session

log = logging.getLogger(__name__)

MAX_ABS_DIFF = 1e-4


class ParityError(RuntimeError):
    """The ONNX graph does not reproduce the torch model."""


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-scores, axis=-1, kind="stable")[..., :k]


def check_parity(
    model: torch.nn.Module,
    onnx_path: Path,
    inputs: Mapping[str, np.ndarray],
    *,
    top_k: int = 1,
    tolerance: float = MAX_ABS_DIFF,
) -> dict[str, object]:
    """Run the same batch through torch and ONNX Runtime, whole and as a batch of one (the batch axis must
    really be dynamic). Every output must agree within ``tolerance`` and the top-k indices of the first
    output (predicted class, recommended items) must be identical. Returns the figures for the card;
    raises ParityError otherwise."""
    session = ort_session(onnx_path)
    output_names = [o.name for o in session.get_outputs()]
    batch = next(iter(inputs.values())).shape[0]
    worst = 0.0
    mismatched_rows = 0
    for size in sorted({batch, 1}, reverse=True):
        feed = {name: np.ascontiguousarray(value[:size]) for name, value in inputs.items()}
        with torch.no_grad():
            expected = model(*(torch.from_numpy(v) for v in feed.values()))
        expected_outputs = expected if isinstance(expected, (tuple, list)) else (expected,)
        actual_outputs = session.run(output_names, feed)
        for name, want, got in zip(output_names, expected_outputs, actual_outputs):
            want = want.detach().numpy()
            if want.shape != got.shape:
                raise ParityError(f"{onnx_path.name}: output {name} shape {got.shape}, torch gives {want.shape}")
            worst = max(worst, float(np.max(np.abs(want.astype(np.float64) - got.astype(np.float64)))))
        want0 = expected_outputs[0].detach().numpy()
        mismatched_rows += int(np.sum(np.any(_top_k(want0, top_k) != _top_k(actual_outputs[0], top_k), axis=-1)))
    figures = {
        "graph": onnx_path.name,
        "batch": batch,
        "also_checked_batch_1": True,
        "max_abs_diff": worst,
        "tolerance": tolerance,
        "compared": f"top-{top_k} indices of '{output_names[0]}'",
        "top_k_mismatched_rows": mismatched_rows,
    }
    log.info("parity %s: max |torch - onnx| = %.2e, top-%d mismatches %d", onnx_path.name, worst, top_k, mismatched_rows)
    if worst > tolerance or mismatched_rows:
        raise ParityError(
            f"{onnx_path.name}: ONNX Runtime disagrees with torch: max abs diff {worst:.3e} (tolerance {tolerance:.0e}), "
            f"{mismatched_rows} rows with different top-{top_k}"
        )
    return figures
