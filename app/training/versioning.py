"""Numbered versions in the model repository, appearing atomically so a polling server never loads half a one."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from app.tasks.registry import load_model_config

CONFIG_FILE = "config.yaml"


def versions(model_dir: Path) -> list[int]:
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit() and int(p.name) > 0)


def has_version(repository: Path, name: str) -> bool:
    return bool(versions(Path(repository) / name))


@contextmanager
def staging_dir(repository: Path, name: str) -> Iterator[Path]:
    """A hidden scratch folder inside the model's folder (same file system, so publishing is a rename).
    Removed if the run fails, or whatever is left after publishing."""
    model_dir = Path(repository) / name
    model_dir.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=".staging-", dir=model_dir))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def next_version(model_dir: Path) -> int:
    existing = versions(model_dir)
    return (existing[-1] + 1) if existing else 1


def publish(staging: Path, version: int) -> Path:
    """Rename the staged folder to ``<model>/<version>``; fails rather than overwrite an existing version."""
    target = staging.parent / str(version)
    staging.chmod(0o755)  # mkdtemp makes it owner-only; a server running as another user must read it
    os.rename(staging, target)  # atomic; raises if the target exists and is not empty
    return target


def ensure_config(model_dir: Path, config: dict[str, Any]) -> bool:
    """Write ``config.yaml`` if the model has none (an existing one is the user's: left alone). The content is
    validated with the server's own loader first. Returns whether it was written."""
    path = Path(model_dir) / CONFIG_FILE
    if path.exists():
        load_model_config(path, model_dir.name)
        return False
    header = "# Written by `python -m app.training` when missing; edit freely, it is not overwritten.\n"
    text = header + yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
    model_dir.mkdir(parents=True, exist_ok=True)
    scratch = path.with_suffix(".yaml.tmp")
    scratch.write_text(text)
    load_model_config(scratch, model_dir.name)
    os.replace(scratch, path)
    return True
