"""The image task's client side: ``dendrite predict image`` arguments and output, bench requests."""

from __future__ import annotations

import argparse
import base64
import io
from pathlib import Path
from typing import Any

from app.tasks.base import ArgumentError, Write, answer_header, bar


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("photos", nargs="+", type=Path, metavar="PHOTO", help="JPEG, PNG, WebP, BMP or GIF files")
    parser.add_argument("--top-k", type=int, help="labels per photo (default: the model's)")


def request_fields(args: argparse.Namespace) -> dict[str, Any]:
    return {"images": [read_photo(p) for p in args.photos], "top_k": args.top_k}


def read_photo(path: Path) -> str:
    try:
        return base64.b64encode(path.read_bytes()).decode()
    except OSError as exc:
        raise ArgumentError(f"cannot read {path}: {exc.strerror or exc}") from None


def format_answer(args: argparse.Namespace, body: dict[str, Any], write: Write) -> None:
    write(answer_header(body))
    width = max((len(label["label"]) for p in body["predictions"] for label in p["labels"]), default=0)
    for photo, prediction in zip(args.photos, body["predictions"]):
        write(f"{photo}\n")
        for label in prediction["labels"]:
            write(f"  {label['label']:<{width}}  {100 * label['probability']:5.1f}%  {bar(label['probability'])}\n")


def samples(version_dir: Path) -> list[dict[str, Any]]:
    """scikit-learn's two sample photos (427x640) as JPEG files, one per request."""
    from PIL import Image
    from sklearn.datasets import load_sample_image

    out = []
    for name in ("china.jpg", "flower.jpg"):
        buf = io.BytesIO()
        Image.fromarray(load_sample_image(name)).save(buf, format="JPEG", quality=90)
        out.append({"images": [base64.b64encode(buf.getvalue()).decode()]})
    return out
