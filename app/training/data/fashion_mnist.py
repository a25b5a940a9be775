"""Fashion-MNIST (Zalando, MIT): 60,000 training and 10,000 test images, 28x28 grey, 10 classes."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

from app.training.data import data_root
from app.training.data.download import download

log = logging.getLogger(__name__)

DEBIAN_PACKAGE = "dataset-fashion-mnist"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def _complete(folder: Path) -> bool:
    return all((folder / name).exists() for name in FILES)


def locate() -> Path | None:
    """The folder holding the four IDX files, or None if they are not on this machine."""
    for folder in (DEBIAN_DIR, data_root() / "fashion-mnist"):
        if _complete(folder):
            return folder
    return None


def obtain(allow_download: bool = True) -> Path:
    """Find the data, else install the Debian package (as root with apt-get), else download the originals."""
    if (found := locate()) is not None:
        return found
    if shutil.which("apt-get") and os.geteuid() == 0:
        log.info("apt-get install %s", DEBIAN_PACKAGE)
        result = subprocess.run(["apt-get", "install", "-y", "-q", DEBIAN_PACKAGE], check=False)
        if result.returncode == 0 and _complete(DEBIAN_DIR):
            return DEBIAN_DIR
    if not allow_download:
        raise FileNotFoundError(f"Fashion-MNIST not found in {DEBIAN_DIR} or {data_root() / 'fashion-mnist'}; run `make data`")
    folder = data_root() / "fashion-mnist"
    for name in FILES:
        download(URL + name, folder / name)
    return folder
