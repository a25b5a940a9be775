"""Progress bars and log lines that read well both in a terminal and in ``make serve``'s background log."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")
log = logging.getLogger("app.training")


def progress(iterable: Iterable[T], desc: str, total: int | None = None, unit: str = "it") -> Iterable[T]:
    """A tqdm bar with ETA. Off a terminal (a log file) it redraws at most every 30 s so logs stay short."""
    interactive = sys.stderr.isatty()
    return tqdm(
        iterable,
        desc=desc,
        total=total,
        unit=unit,
        mininterval=0.5 if interactive else 30.0,
        dynamic_ncols=interactive,
        leave=interactive,
    )


# The ONNX exporter's optimiser passes log every rewrite at INFO, and torch warns about torchvision ops it
# cannot register; neither says anything about our models.
QUIET_LOGGERS = ("onnx_ir", "onnxscript", "torch.onnx")


def setup_logging(level: int = logging.INFO) -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
