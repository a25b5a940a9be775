"""The sentiment task's client side: ``dendrite predict sentiment`` arguments and output, bench requests."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from app.tasks.base import Write, answer_header

SAMPLE_TEXTS = [
    "just got my coffee and the sun is out, best morning in weeks!",
    "my flight got cancelled again. third time this month. done with this airline",
    "the new update is okay i guess, nothing special",
    "can't believe how good the concert was last night!!! still buzzing",
    "stuck in traffic for two hours, phone battery at 3%",
    "anyone else watching the game tonight?",
    "customer service hung up on me twice. never ordering from them again",
    "finally finished my thesis draft, feeling proud",
    "meh. monday again",
    "loving the new phone, the camera is unreal",
    "the package arrived broken and nobody answers emails",
    "reading a book in the park, perfect afternoon",
    "that movie was a total waste of time",
    "got the job!!! starting next week",
    "weather is grey, mood is grey",
    "thanks everyone for the birthday wishes, you made my day",
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("texts", nargs="+", metavar="TEXT")


def request_fields(args: argparse.Namespace) -> dict[str, Any]:
    return {"texts": args.texts}


def format_answer(args: argparse.Namespace, body: dict[str, Any], write: Write) -> None:
    write(answer_header(body))
    width = max(len(p["label"]) for p in body["predictions"])
    for text, prediction in zip(args.texts, body["predictions"]):
        # sorted: a gRPC map arrives in any order, and the same answer should read the same way twice
        probabilities = "  ".join(f"{label} {100 * p:4.1f}%" for label, p in sorted(prediction["probabilities"].items()))
        note = "  (truncated)" if prediction["truncated"] else ""
        write(f"{prediction['label']:<{width}}  {text}{note}\n{'':<{width}}  {probabilities}\n")


def samples(version_dir: Path) -> list[dict[str, Any]]:
    return [{"texts": [t]} for t in SAMPLE_TEXTS]
