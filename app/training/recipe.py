"""The contract every recipe fulfils; ``runner.run_recipe`` drives it. See the package docstring."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch

from app.training.export import ExportedGraph
from app.training.reproducibility import TRAINING_THREADS

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


class Recipe(ABC):
    """One model: data -> torch training -> ONNX version. Subclasses set the class attributes."""

    name: ClassVar[str]  # model name in the repository
    task: ClassVar[str]  # a task of app.repository.config.TASKS
    expected_minutes: ClassVar[float]  # full-profile wall time on 2 cores; ``all`` trains fastest first
    source: ClassVar[DataSource]
    threads: ClassVar[int] = TRAINING_THREADS  # torch intra-op threads while training (fixed: part of determinism)

    def __init__(self, profile: Profile = "full", data_path: Path | None = None) -> None:
        if profile not in PROFILES:
            raise ValueError(f"profile must be one of {PROFILES}, not {profile!r}")
        self.profile: Profile = profile
        self.data_path = Path(data_path) if data_path is not None else None
        self.hyperparameters: dict[str, Any] = {}  # filled by subclasses; recorded in the card

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
        """The ``config.yaml`` content (validated against app.repository.config)."""

    @abstractmethod
    def evaluate_onnx(self, version_dir: Path, parameters: dict[str, Any]) -> Evaluation:
        """Metrics of the exported graph, run through the serving pre/post-processing in ``app.tasks``."""
