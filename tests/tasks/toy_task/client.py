"""The toy task's client side: ``dendrite predict toy`` arguments and output, bench requests."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from app.tasks.base import Write, answer_header


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("values", nargs="+", type=float, metavar="NUMBER")


def request_fields(args: argparse.Namespace) -> dict[str, Any]:
    return {"values": args.values}


def format_answer(args: argparse.Namespace, body: dict[str, Any], write: Write) -> None:
    write(answer_header(body))
    for value, result in zip(args.values, body["results"]):
        write(f"{value:g} -> {result:g}\n")


def samples(version_dir: Path) -> list[dict[str, Any]]:
    return [{"values": [float(i)]} for i in range(8)]
