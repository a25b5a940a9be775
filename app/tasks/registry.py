"""The task registry: every task the server, the client, the CLI and the bench know.

A new task is one package under app/tasks/ (its ``__init__.py`` declares ``TASK``), one line in
``BUILTIN`` and its messages in protos/dendrite/v1/predict.proto: docs/adding-a-task.md.
``register`` adds a task from elsewhere (a plug-in, a test) before the server or client starts.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from app.config import Settings
from app.errors import NotFound
from app.protocol.model_config import ModelConfig, load_config
from app.tasks.base import Pipeline, Task

BUILTIN = (
    "app.tasks.image",
    "app.tasks.sentiment",
    "app.tasks.translation",
    "app.tasks.recommendation",
)

_tasks: dict[str, Task] = {}


def register(task: Task) -> Task:
    """Add ``task`` (a task of the same name is replaced: the newest declaration wins)."""
    tasks()[task.name] = task
    return task


def tasks() -> dict[str, Task]:
    """Name -> task, in registration order (built-in tasks first); imported on first use."""
    if not _tasks:
        for module in BUILTIN:
            task = importlib.import_module(module).TASK
            _tasks[task.name] = task
    return _tasks


def get(name: str) -> Task:
    try:
        return tasks()[name]
    except KeyError:
        raise NotFound(f"no task {name!r}; the tasks are {', '.join(tasks())}") from None


def load_model_config(path: Path, folder_name: str) -> ModelConfig:
    """``config.yaml`` of a model, its ``task`` one of the registered tasks (or ``generic``)."""
    return load_config(path, folder_name, tasks=tuple(tasks()))


def optional_graphs(config: ModelConfig) -> frozenset[str]:
    """The graphs a version of this model may lack (``Pipeline.optional_graphs`` of its task)."""
    task = tasks().get(config.task)
    return task.pipeline.optional_graphs if task else frozenset()


def build_pipeline(version_dir: Path, config: ModelConfig, settings: Settings,
                   inputs: dict[str, list[str]]) -> Pipeline | None:  # fmt: skip
    """The pipeline of a model version (None for `generic` models, served only through OIP infer)."""
    task = tasks().get(config.task)
    return task.pipeline(version_dir, config, settings, inputs) if task else None
