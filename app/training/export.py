"""torch -> single-file ONNX with a dynamic batch axis, and the ONNX Runtime session used to check it."""

from __future__ import annotations

import hashlib
import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import onnx
import onnxruntime as ort
import torch

from app.training.reproducibility import TRAINING_THREADS

log = logging.getLogger(__name__)


class ExportError(RuntimeError):
    """The ONNX export failed or produced something the server cannot use."""


@dataclass(frozen=True)
class ExportedGraph:
    file: str
    opset: int
    sha256: str
    bytes: int
    exporter: str

    def as_card(self) -> dict[str, object]:
        return {"file": self.file, "opset": self.opset, "sha256": self.sha256, "bytes": self.bytes, "exporter": self.exporter}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def export_onnx(
    model: torch.nn.Module,
    example_inputs: Sequence[torch.Tensor],
    path: Path,
    input_names: Sequence[str],
    output_names: Sequence[str],
    *,
    dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
    dynamo: bool = True,
) -> ExportedGraph:
    """Export ``model(*example_inputs)`` to ``path`` as one self-contained ONNX file.

    Axis 0 of every input is the dynamic ``batch`` axis; ``dynamic_axes`` adds more (e.g. ``{"ids": {1: "seq"}}``).
    Examples must have batch >= 2, or the dynamo exporter specialises the graph to batch 1.
    ``dynamo=True`` (torch.export) is required for Transformers: the classic TorchScript exporter bakes the
    example sequence length into ``nn.MultiheadAttention``.
    """
    if any(t.shape[0] < 2 for t in example_inputs):
        raise ExportError("export examples need a batch of at least 2 so the batch axis stays dynamic")
    axes: dict[str, dict[int, str]] = {name: {0: "batch"} for name in input_names}
    for name, extra in (dynamic_axes or {}).items():
        axes.setdefault(name, {}).update(extra)
    model = model.eval()
    path = Path(path)
    try:
        # torch.export's own deprecation chatter (pytree internals) says nothing about the model.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            if dynamo:
                dims: dict[str, torch.export.Dim] = {}
                shapes = tuple(
                    {axis: dims.setdefault(label, torch.export.Dim(label)) for axis, label in axes[name].items()}
                    for name in input_names
                )
                torch.onnx.export(
                    model, tuple(example_inputs), str(path), input_names=list(input_names),
                    output_names=list(output_names), dynamic_shapes=shapes, dynamo=True,
                    external_data=False, optimize=True, verbose=False,
                )  # fmt: skip
            else:
                output_axes = {name: {0: "batch"} for name in output_names}
                torch.onnx.export(
                    model, tuple(example_inputs), str(path), input_names=list(input_names),
                    output_names=list(output_names), dynamic_axes={**axes, **output_axes}, dynamo=False,
                    opset_version=17,
                )  # fmt: skip
    except Exception as exc:  # the exporters raise a zoo of types; all mean the same here
        raise ExportError(f"ONNX export of {type(model).__name__} to {path.name} failed: {exc}") from exc
    if any(p.name != path.name for p in path.parent.glob(path.name + "*")):
        raise ExportError(f"export of {path.name} left external data files beside it; expected a single file")
    onnx.checker.check_model(onnx.load(str(path)))
    graph = graph_facts(path, "torch.onnx dynamo" if dynamo else "torch.onnx torchscript")
    log.info("exported %s (%.1f MB, opset %d)", path.name, graph.bytes / 1e6, graph.opset)
    return graph


def graph_facts(path: Path, exporter: str) -> ExportedGraph:
    """The card's facts about a single-file graph."""
    proto = onnx.load(str(path), load_external_data=False)
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    return ExportedGraph(file=path.name, opset=opset, sha256=sha256_of(path), bytes=path.stat().st_size, exporter=exporter)


def ort_session(path: Path, threads: int = TRAINING_THREADS) -> ort.InferenceSession:
    """A CPU session like the server's (no spin-waiting), used for parity and evaluation."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
