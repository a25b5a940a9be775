"""Progress bars and log lines that read well both in a terminal and in ``make serve``'s background log."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")
log = logging.getLogger("app.training")


# Called as reporter(desc, step, total, eta_seconds) by every bar, at most every REPORT_SECONDS: the runner
# sets it to write the model's progress report for the server (app.repository.training).
Reporter = Callable[[str, int, int, "float | None"], None]
_reporter: Reporter | None = None
REPORT_SECONDS = 2.0


def set_reporter(reporter: Reporter | None) -> None:
    global _reporter
    _reporter = reporter


def progress(iterable: Iterable[T], desc: str, total: int | None = None, unit: str = "it") -> Iterable[T]:
    """A tqdm bar with ETA. Off a terminal (a log file) it redraws at most every 30 s so logs stay short."""
    interactive = sys.stderr.isatty()
    bar = tqdm(
        iterable,
        desc=desc,
        total=total,
        unit=unit,
        mininterval=0.5 if interactive else 30.0,
        dynamic_ncols=interactive,
        leave=interactive,
    )
    return bar if _reporter is None else _reported(bar, desc, _reporter)


def _reported(bar: tqdm, desc: str, reporter: Reporter) -> Iterator[T]:
    total = int(bar.total or 0)
    start = last = time.monotonic()
    for step, item in enumerate(bar, 1):
        yield item
        now = time.monotonic()
        if now - last >= REPORT_SECONDS or step == total:
            last = now
            eta = (total - step) * (now - start) / step if total else None
            reporter(desc, step, total, eta)


# The ONNX exporter's optimiser passes log every rewrite at INFO, and torch warns about torchvision ops it
# cannot register; neither says anything about our models.
QUIET_LOGGERS = ("onnx_ir", "onnxscript", "torch.onnx")


def setup_logging(level: int = logging.INFO) -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
