"""The schema of a model's ``config.yaml`` (the Triton-style model configuration).

Layout of a repository::

    models/
      <model>/
        config.yaml          # this schema (source, committed)
        1/                   # numbered versions (build outputs, git-ignored)
          model.onnx         # the graph(s) named in `graphs`
          labels.txt ...     # whatever the task needs
          card.json          # model card written by the training module
        2/

A config error is reported with the file and the dotted field path. ``effective_config`` fills in
and overrides what server settings decide (instance kind, threads, queue size), once per model:
what a version really runs with, shown by ``GET /v2/models/{model}/config``.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from app.config import Settings
from app.errors import InvalidInput
from app.protocol.datatypes import DATATYPES


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class TensorSpec(_Strict):
    """One input or output. ``shape`` excludes the batch dimension when max_batch_size > 0; -1 = variable."""

    name: str
    datatype: Literal[DATATYPES]  # type: ignore[valid-type]
    shape: list[int]
    min: int | float | None = Field(None, description="Smallest valid value (inputs): checked before batching.")
    max: int | float | None = Field(None, description="Largest valid value (inputs), e.g. an embedding table's last id.")

    @field_validator("shape")
    @classmethod
    def _dims(cls, v: list[int]) -> list[int]:
        if any(d < -1 or d == 0 for d in v):
            raise ValueError("dimensions must be positive or -1 (variable)")
        return v

    @model_validator(mode="after")
    def _range(self) -> "TensorSpec":
        if (self.min is not None or self.max is not None) and self.datatype in ("BYTES", "BOOL"):
            raise ValueError(f"min/max apply to numbers, not {self.datatype}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self

    def check_range(self, values: np.ndarray) -> None:
        """A value outside min..max (an id the model has no row for) is the client's mistake: refuse it
        before it joins a batch, where ONNX Runtime would fail the batch or, for a negative id, silently
        answer for another row."""
        if values.size == 0 or (self.min is None and self.max is None):
            return
        bad = None
        if values.dtype.kind == "f" and np.isnan(values).any():  # NaN compares false with both bounds
            bad = np.nan
        elif self.min is not None and values.min() < self.min:
            bad = values.min()
        elif self.max is not None and values.max() > self.max:
            bad = values.max()
        if bad is not None:
            raise InvalidInput(f"input {self.name!r}: value {bad} is outside the valid range {self.range_text()}")

    def range_text(self) -> str:
        def text(bound: int | float | None, unbounded: str) -> str:
            return unbounded if bound is None else f"{bound:g}" if isinstance(bound, float) else str(bound)

        return f"{text(self.min, '-inf')}..{text(self.max, 'inf')}"


class DynamicBatching(_Strict):
    """Triton semantics: a full batch goes at once; a partial one waits until its oldest
    request has waited ``max_queue_delay_microseconds`` (``fixed``), or less when no other
    request is expected (``adaptive``: see app.batching.batcher.PeerEstimate)."""

    enabled: bool = True
    max_queue_delay_microseconds: int = Field(0, ge=0, le=10_000_000)
    delay_policy: Literal["adaptive", "fixed"] = Field(
        "adaptive", description="adaptive: wait the delay only while more requests are expected; fixed: always wait it."
    )
    max_queue_size: int | None = Field(None, ge=1, description="Requests queued before rejecting (None: server default).")
    default_timeout_microseconds: int = Field(
        0, ge=0, description="Deadline for a request that brings none (0 = none); expired queued requests are dropped."
    )


class InstanceGroup(_Strict):
    count: int = Field(1, ge=1, le=64)
    kind: Literal["cpu", "cuda"] = "cpu"
    device_id: int = Field(0, ge=0)
    fallback: Literal["cpu", "fail"] = Field("cpu", description="cuda requested but not running: use CPU, or fail the load.")
    intra_op_threads: int | None = Field(None, ge=0, description="None: the server default.")


class VersionPolicy(_Strict):
    """Exactly one of latest / all / specific (default: latest 1)."""

    latest: int | None = Field(None, ge=1)
    all: bool = False
    specific: list[int] | None = None

    @model_validator(mode="after")
    def _one(self) -> "VersionPolicy":
        chosen = sum([self.latest is not None, self.all, self.specific is not None])
        if chosen > 1:
            raise ValueError("choose one of latest, all, specific")
        if chosen == 0:
            self.latest = 1
        return self

    def select(self, available: list[int]) -> list[int]:
        available = sorted(available)
        if self.all:
            return available
        if self.specific is not None:
            return [v for v in available if v in set(self.specific)]
        return available[-(self.latest or 1):]


class Warmup(_Strict):
    """Warm-up runs before a version reports ready: one run per batch size on every instance.
    ``dims`` gives a size for variable (-1) non-batch dimensions, by input name."""

    enabled: bool = True
    batch_sizes: list[int] | None = Field(None, description="None: [1, max_batch_size].")
    dims: dict[str, list[int]] = Field(default_factory=dict)


class ModelConfig(_Strict):
    name: str | None = Field(None, description="Defaults to the folder name; must match it when given.")
    task: str = Field("generic", description="A task of app.tasks.registry, or generic (OIP infer only).")
    platform: Literal["onnxruntime_onnx"] = "onnxruntime_onnx"
    graphs: dict[str, str] = Field(
        default_factory=lambda: {"model": "model.onnx"},
        description="Named ONNX graphs of a version (file names). The first is the one OIP infer runs by default.",
    )
    max_batch_size: int = Field(32, ge=0, le=4096, description="0: the model has no batch dimension; no batching.")
    inputs: list[TensorSpec] | None = Field(None, description="None: read from the ONNX graph.")
    outputs: list[TensorSpec] | None = None
    dynamic_batching: DynamicBatching = Field(default_factory=DynamicBatching)
    instance_group: InstanceGroup = Field(default_factory=InstanceGroup)
    version_policy: VersionPolicy = Field(default_factory=VersionPolicy)
    warmup: Warmup = Field(default_factory=Warmup)
    parameters: dict[str, Any] = Field(default_factory=dict, description="Task-specific settings (labels, preprocessing).")

    @field_validator("graphs")
    @classmethod
    def _graph_files(cls, v: dict[str, str]) -> dict[str, str]:
        if not v:
            raise ValueError("at least one graph")
        for name, file in v.items():
            if "/" in file or "\\" in file or file.startswith(".") or not file.endswith(".onnx"):
                raise ValueError(f"graph {name!r}: {file!r} must be a plain .onnx file name inside the version folder")
        return v

    @property
    def batching(self) -> bool:
        return self.max_batch_size > 0 and self.dynamic_batching.enabled


class ConfigError(InvalidInput):
    """A config.yaml that cannot be used; the message names the file and the field."""


def load_config(path: Path, folder_name: str, tasks: Collection[str] | None = None) -> ModelConfig:
    """``path`` as a ModelConfig named after its folder. ``tasks``: the task names it may give besides
    ``generic`` (``app.tasks.registry.load_model_config`` passes the registered ones; None: any)."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    try:
        cfg = ModelConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"field '{'.'.join(str(p) for p in e['loc']) or '<root>'}': {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from exc
    if tasks is not None and cfg.task not in ("generic", *tasks):
        raise ConfigError(f"{path}: field 'task': {cfg.task!r} is not a task of this server "
                          f"(tasks: {', '.join(('generic', *tasks))})")  # fmt: skip
    if cfg.name is not None and cfg.name != folder_name:
        raise ConfigError(f"{path}: field 'name': {cfg.name!r} does not match its folder {folder_name!r}")
    cfg.name = folder_name
    return cfg


def intra_op_threads(requested: int, cap: int) -> int:
    """The threads a session gets: ``requested`` (0 = ORT's choice, one per core) within ``cap``."""
    if cap and (requested == 0 or requested > cap):
        return cap
    return requested


def effective_config(config: ModelConfig, settings: Settings) -> ModelConfig:
    """``config`` with the server settings that fill or override it resolved, the one place they meet:
    ``DENDRITE_INSTANCE_KIND`` (unless ``config``) over ``instance_group.kind``; intra-op threads as
    config.yaml asks, else ``DENDRITE_INTRA_OP_THREADS``, within the cores each worker may use
    (``DENDRITE_WORKERS``); ``dynamic_batching.max_queue_size`` as config.yaml asks, else
    ``DENDRITE_DEFAULT_MAX_QUEUE_SIZE``; warm-up at ``[1, max_batch_size]`` unless config.yaml lists sizes."""
    group, batching = config.instance_group, config.dynamic_batching
    requested = group.intra_op_threads if group.intra_op_threads is not None else settings.intra_op_threads
    group = group.model_copy(update={
        "kind": group.kind if settings.instance_kind == "config" else settings.instance_kind,
        "intra_op_threads": intra_op_threads(requested, settings.intra_op_thread_cap()),
    })  # fmt: skip
    batching = batching.model_copy(update={"max_queue_size": batching.max_queue_size or settings.default_max_queue_size})
    warmup = config.warmup.model_copy(update={"batch_sizes": config.warmup.batch_sizes
                                              or sorted({1, max(1, config.max_batch_size)})})  # fmt: skip
    return config.model_copy(update={"instance_group": group, "dynamic_batching": batching, "warmup": warmup})
