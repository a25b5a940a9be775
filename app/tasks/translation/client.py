"""The translation task's client side: ``dendrite predict translation`` arguments and output, bench requests."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from app.tasks.base import Write, answer_header

SAMPLE_SENTENCES = [
    "Das Wetter ist heute schön.",
    "Ich trinke jeden Morgen einen Kaffee.",
    "Wo ist der Bahnhof?",
    "Wir gehen am Wochenende ins Kino.",
    "Der Zug hat zehn Minuten Verspätung.",
    "Kannst du mir bitte helfen?",
    "Das Essen in diesem Restaurant ist sehr gut.",
    "Meine Schwester wohnt in Berlin.",
    "Ich habe das Buch gestern gelesen.",
    "Die Kinder spielen im Garten.",
    "Morgen habe ich einen wichtigen Termin.",
    "Vielen Dank für deine Hilfe.",
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("texts", nargs="+", metavar="TEXT")
    parser.add_argument("--beam-size", type=int, help="1 = greedy (default), >1 = beam search")
    parser.add_argument("--max-length", type=int, help="most output tokens per text")


def request_fields(args: argparse.Namespace) -> dict[str, Any]:
    return {"texts": args.texts, "beam_size": args.beam_size, "max_length": args.max_length}


def format_answer(args: argparse.Namespace, body: dict[str, Any], write: Write) -> None:
    write(answer_header(body))
    for text, translation in zip(args.texts, body["translations"]):
        note = "  (source truncated)" if translation["source_truncated"] else ""
        write(f"{text}\n  -> {translation['text']}{note}\n")


def samples(version_dir: Path) -> list[dict[str, Any]]:
    return [{"texts": [t]} for t in SAMPLE_SENTENCES]
