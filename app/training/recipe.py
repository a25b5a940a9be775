"""The contract every recipe fulfils; ``runner.run_recipe`` drives it. See the package docstring."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, Literal, TypeVar

import numpy as np
import torch

from app.training.export import ExportedGraph
from app.training.reproducibility import TRAINING_THREADS

T = TypeVar("T")
Profile = Literal["smoke", "full"]
PROFILES: tuple[Profile, ...] = ("smoke", "full")


@dataclass(frozen=True)
class DataSource:
    """Where a recipe's default data comes from, for the model card."""

    name: str
    origin: str  # how it is obtained (package, URL)
    licence: str
    url: str | None = None


@dataclass
class DataSummary:
    """What ``load_data`` actually read: goes into the card."""

    location: str
    splits: dict[str, int]
    split_method: str
    notes: list[str] = field(default_factory=list)


@dataclass
class ExportResult:
    graphs: dict[str, ExportedGraph]  # graph name in config.yaml -> file facts
    parity: list[dict[str, Any]]  # one entry per graph checked


@dataclass
class Evaluation:
    """Metrics of the exported ONNX model on held-out data, beside baselines on the same split."""

    metrics: dict[str, float]
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)
    protocol: str = ""
    examples: list[dict[str, Any]] = field(default_factory=list)


class HeldOut(Generic[T]):
    """The test split behind a counter. Epochs, hyper-parameters and variants are chosen on the validation
    split; the test split is read once, to evaluate the exported model at the end, and the card shows the count."""

    def __init__(self, data: T) -> None:
        self._data = data
        self.reads = 0

    def read(self) -> T:
        self.reads += 1
        return self._data


class Recipe(ABC):
    """One model: data -> torch training -> ONNX version. Subclasses set the class attributes."""

    name: ClassVar[str]  # model name in the repository
    task: ClassVar[str]  # a task of app.tasks.registry
    expected_minutes: ClassVar[float]  # full-profile wall time on 2 cores; ``all`` trains fastest first
    source: ClassVar[DataSource]
    threads: ClassVar[int] = TRAINING_THREADS  # torch intra-op threads while training (fixed: part of determinism)
    selected_on: ClassVar[str] = "validation"  # the split every choice below was made on
    selection: ClassVar[str]  # what was chosen on it, and how (for the card)
    # int8 method of ``python -m app.training quantize`` (app.training.quantize); None: not offered
    quantization: ClassVar[Literal["static", "dynamic"] | None] = None

    def __init__(self, profile: Profile = "full", data_path: Path | None = None) -> None:
        if profile not in PROFILES:
            raise ValueError(f"profile must be one of {PROFILES}, not {profile!r}")
        self.profile: Profile = profile
        self.data_path = Path(data_path) if data_path is not None else None
        self.hyperparameters: dict[str, Any] = {}  # filled by subclasses; recorded in the card
        self.test: HeldOut[Any] | None = None  # set by ``load_data``; read only by ``evaluate_onnx``

    def model_selection(self) -> dict[str, Any]:
        return {"selected_on": self.selected_on, "how": self.selection,
                "test_reads": self.test.reads if self.test is not None else 0}

    @abstractmethod
    def load_data(self) -> DataSummary:
        """Read and split the data (``self.data_path`` or the default source)."""

    @abstractmethod
    def build_model(self) -> torch.nn.Module: ...

    @abstractmethod
    def train(self, model: torch.nn.Module) -> dict[str, Any]:
        """Train in place; return facts for the card (epochs, final loss...)."""

    @abstractmethod
    def export(self, model: torch.nn.Module, version_dir: Path) -> ExportResult:
        """Write the graph(s) into ``version_dir`` and check parity against ``model``."""

    @abstractmethod
    def write_assets(self, version_dir: Path) -> list[str]:
        """Write the task files the server needs (labels, catalogues); return their names."""

    @abstractmethod
    def model_config(self) -> dict[str, Any]:
        """The ``config.yaml`` content (validated against app.protocol.model_config)."""

    @abstractmethod
    def evaluate_onnx(self, version_dir: Path, parameters: dict[str, Any]) -> Evaluation:
        """Metrics of the exported graph, run through the serving pre/post-processing in ``app.tasks``."""

    def sample_feeds(self, version_dir: Path, parameters: dict[str, Any], count: int,
                     batch_size: int) -> list[dict[str, np.ndarray]]:
        """About ``count`` training-split inputs for the first graph, in batches, made by the serving
        preprocessing: the calibration set of static quantization and the batches both versions are timed on."""
        raise NotImplementedError(f"{self.name}: no sample inputs for quantization")
