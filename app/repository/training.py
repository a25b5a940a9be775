"""A trainer's progress report for a model it is producing: ``<model>/.training.json``.

The trainer (``python -m app.training``, also started by ``serve --train-missing``) writes it; the
repository reads it, so a model without a version yet shows as PENDING with its progress rather than
as a failure. A file is the simplest channel that works whether the trainer is our child process,
another process on the host, or another container sharing the volume. Writes are atomic (temporary
file + rename), so a reader never sees half a report.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

STATUS_FILE = ".training.json"

TrainingState = Literal["queued", "training", "failed"]


@dataclass
class TrainingStatus:
    state: TrainingState
    step: int = 0
    total: int = 0
    eta_seconds: float | None = None
    phase: str = ""  # what the trainer is doing now, e.g. "sentiment-minilm epoch 1/3"
    pid: int = 0
    host: str = ""
    message: str = ""  # queued: behind what; failed: why
    updated: float = 0.0

    def trainer_gone(self) -> bool:
        """The trainer ran on this host and its process has ended without saying so (killed, crashed)."""
        if self.state == "failed" or not self.pid or self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, owned by another user
            return False
        return False

    def describe(self) -> str:
        """One line for people: the index reason, the 503 message, the playground."""
        if self.state == "failed":
            return f"training failed: {self.message or 'see the trainer log'}"
        if self.trainer_gone():
            return f"training stopped: trainer process {self.pid} has ended"
        if self.state == "queued":
            return f"queued for training{' behind ' + self.message if self.message else ''}"
        text = "training"
        if self.phase:
            text += f": {self.phase}"
        if self.total:
            text += f"{',' if self.phase else ':'} step {self.step}/{self.total}"
        if self.eta_seconds is not None:
            text += f", about {_duration(self.eta_seconds)} left"
        return text

    @property
    def active(self) -> bool:
        """Still expected to produce a version."""
        return self.state != "failed" and not self.trainer_gone()


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def read_status(model_dir: Path) -> TrainingStatus | None:
    """The model's training report, or None when there is none (or it cannot be read)."""
    try:
        raw = json.loads((Path(model_dir) / STATUS_FILE).read_text())
        fields = {k: raw[k] for k in TrainingStatus.__dataclass_fields__ if k in raw}
        return TrainingStatus(**fields)
    except (OSError, ValueError, TypeError):
        return None


def write_status(model_dir: Path, state: TrainingState, **fields) -> TrainingStatus:
    status = TrainingStatus(state, pid=os.getpid(), host=socket.gethostname(), updated=time.time(), **fields)
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    scratch = model_dir / f"{STATUS_FILE}.{os.getpid()}.tmp"
    scratch.write_text(json.dumps(asdict(status)))
    os.replace(scratch, model_dir / STATUS_FILE)
    return status


def clear_status(model_dir: Path) -> None:
    (Path(model_dir) / STATUS_FILE).unlink(missing_ok=True)
