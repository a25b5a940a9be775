"""Logging setup for the serving processes (one format, the process named when there are several)."""

from __future__ import annotations

import logging

from app.config import Settings


def configure_logging(settings: Settings, process: str = "") -> None:
    """``process`` tags every line (``supervisor``, ``worker 1``) when several processes serve."""
    tag = f"[{process}] " if process else ""
    logging.basicConfig(level=settings.log_level.upper(), format=f"%(asctime)s %(levelname)s {tag}%(name)s: %(message)s")
