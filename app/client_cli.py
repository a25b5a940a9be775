"""``dendrite predict <task> ...`` and ``dendrite models``: the command-line client.

Over REST by default (``--url``, or ``DENDRITE_URL``), over gRPC with ``--grpc`` (``--grpc-target``,
or ``DENDRITE_GRPC_TARGET``); ``--api-key`` (or ``DENDRITE_API_KEY``) when the server needs one.
Human-readable by default, ``--json`` prints the response body for scripts. A failure prints the
server's message (stderr; with ``--json``, ``{"error": ..., "status": ...}`` on stdout) and exits 1.
A reader that stops early (``dendrite models | head -2``) ends it quietly with 141, as SIGPIPE would.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, TextIO

from app.client import (
    DEFAULT_GRPC_TARGET, DEFAULT_URL, ClientError, ClientTimeout, GrpcClient, RestClient, build_request,
)  # fmt: skip

BAR_WIDTH = 24


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``predict`` and ``models`` on the ``dendrite`` command's subparsers."""
    rest = argparse.ArgumentParser(add_help=False)
    rest.add_argument("--url", default=os.environ.get("DENDRITE_URL", DEFAULT_URL),
                      help=f"REST base URL (DENDRITE_URL; default {DEFAULT_URL})")  # fmt: skip
    rest.add_argument("--api-key", default=os.environ.get("DENDRITE_API_KEY"),
                      help="sent as X-API-Key (DENDRITE_API_KEY)")  # fmt: skip
    rest.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the answer")
    rest.add_argument("--json", action="store_true", help="print the response body as JSON")
    transport = argparse.ArgumentParser(add_help=False, parents=[rest])
    transport.add_argument("--grpc", action="store_true", help="use gRPC (dendrite.v1.Predict) instead of REST")
    transport.add_argument("--grpc-target", default=os.environ.get("DENDRITE_GRPC_TARGET", DEFAULT_GRPC_TARGET),
                           help=f"gRPC host:port (DENDRITE_GRPC_TARGET; default {DEFAULT_GRPC_TARGET})")  # fmt: skip
    model = argparse.ArgumentParser(add_help=False)
    model.add_argument("--model", help="model name (default: the task's default model)")
    model.add_argument("--version", dest="model_version", help="model version (default: the newest ready one)")

    predict = sub.add_parser("predict", help="ask a running server for a prediction (REST, or gRPC with --grpc)")
    tasks = predict.add_subparsers(dest="task", required=True, metavar="TASK")
    common = [transport, model]
    image = tasks.add_parser("image", parents=common, help="classify photos: top labels with probabilities")
    image.add_argument("photos", nargs="+", type=Path, metavar="PHOTO", help="JPEG, PNG, WebP, BMP or GIF files")
    image.add_argument("--top-k", type=int, help="labels per photo (default: the model's)")
    sentiment = tasks.add_parser("sentiment", parents=common, help="sentiment of texts")
    sentiment.add_argument("texts", nargs="+", metavar="TEXT")
    translation = tasks.add_parser("translation", parents=common, help="translate German texts to English")
    translation.add_argument("texts", nargs="+", metavar="TEXT")
    translation.add_argument("--beam-size", type=int, help="1 = greedy (default), >1 = beam search")
    translation.add_argument("--max-length", type=int, help="most output tokens per text")
    recommendation = tasks.add_parser("recommendation", parents=common, help="recommended movies for a user")
    recommendation.add_argument("user_id", metavar="USER_ID")
    recommendation.add_argument("-k", type=int, help="how many items (default: the model's)")
    recommendation.add_argument("--include-seen", action="store_true",
                                help="also recommend items the user already rated")  # fmt: skip
    for parser in (image, sentiment, translation, recommendation):
        parser.set_defaults(handler=run_predict)

    models = sub.add_parser("models", parents=[rest], help="list the server's models with their states (REST)")
    models.set_defaults(handler=run_models)


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    try:
        code = args.handler(args, out)
        out.flush()  # here, not at exit, so that a closed pipe is caught below
        return code
    except BrokenPipeError:
        # the reader is gone: nothing more to say, and the interpreter's last flush must not complain either
        if out is sys.stdout:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13  # what a shell reports for a process ended by SIGPIPE
    except ClientError as exc:
        message = exc.message + (" (--timeout)" if isinstance(exc, ClientTimeout) else "")
        if args.json:
            json.dump({"error": message, "status": exc.status}, out)
            out.write("\n")
        else:
            where = ""  # the HTTP status or gRPC code when the server sent one
            if exc.status and not isinstance(exc, ClientTimeout):
                where = f" ({'HTTP ' if isinstance(exc.status, int) else ''}{exc.status})"
            print(f"dendrite: error{where}: {message}", file=err)
        return 1


# ------------------------------------------------------------------------------------------ predict
def request_fields(args: argparse.Namespace) -> dict[str, Any]:
    fields: dict[str, Any] = {"model": args.model, "version": args.model_version}
    if args.task == "image":
        fields |= {"images": [read_photo(p) for p in args.photos], "top_k": args.top_k}
    elif args.task == "sentiment":
        fields |= {"texts": args.texts}
    elif args.task == "translation":
        fields |= {"texts": args.texts, "beam_size": args.beam_size, "max_length": args.max_length}
    else:
        fields |= {"user_id": args.user_id, "k": args.k, "exclude_seen": False if args.include_seen else None}
    return fields


def read_photo(path: Path) -> str:
    try:
        return base64.b64encode(path.read_bytes()).decode()
    except OSError as exc:
        raise ClientError(f"cannot read {path}: {exc.strerror or exc}") from None


def run_predict(args: argparse.Namespace, out: TextIO) -> int:
    request = build_request(args.task, **request_fields(args))
    if args.grpc:
        client = GrpcClient(args.grpc_target, api_key=args.api_key, timeout=args.timeout)
        try:
            response = client.predict(args.task, request)
        finally:
            client.close()
    else:
        response = RestClient(args.url, api_key=args.api_key, timeout=args.timeout).predict(args.task, request)
    body = response.model_dump(mode="json")
    if args.json:
        json.dump(body, out, indent=2, ensure_ascii=False)
        out.write("\n")
    else:
        FORMATTERS[args.task](args, body, out.write)
    return 0


def bar(p: float) -> str:
    eighths = round(max(0.0, min(1.0, p)) * BAR_WIDTH * 8)
    return "█" * (eighths // 8) + ("", "▏", "▎", "▍", "▌", "▋", "▊", "▉")[eighths % 8]


def header(body: dict) -> str:
    return f"{body['model']} v{body['version']}\n"


def format_image(args, body: dict, write: Callable[[str], Any]) -> None:
    write(header(body))
    width = max((len(label["label"]) for p in body["predictions"] for label in p["labels"]), default=0)
    for photo, prediction in zip(args.photos, body["predictions"]):
        write(f"{photo}\n")
        for label in prediction["labels"]:
            write(f"  {label['label']:<{width}}  {100 * label['probability']:5.1f}%  {bar(label['probability'])}\n")


def format_sentiment(args, body: dict, write: Callable[[str], Any]) -> None:
    write(header(body))
    width = max(len(p["label"]) for p in body["predictions"])
    for text, prediction in zip(args.texts, body["predictions"]):
        # sorted: a gRPC map arrives in any order, and the same answer should read the same way twice
        probabilities = "  ".join(f"{label} {100 * p:4.1f}%" for label, p in sorted(prediction["probabilities"].items()))
        note = "  (truncated)" if prediction["truncated"] else ""
        write(f"{prediction['label']:<{width}}  {text}{note}\n{'':<{width}}  {probabilities}\n")


def format_translation(args, body: dict, write: Callable[[str], Any]) -> None:
    write(header(body))
    for text, translation in zip(args.texts, body["translations"]):
        note = "  (source truncated)" if translation["source_truncated"] else ""
        write(f"{text}\n  -> {translation['text']}{note}\n")


def format_recommendation(args, body: dict, write: Callable[[str], Any]) -> None:
    who = (f"user {body['user_id']} is not in the training data: most popular items" if body["cold_start"]
           else f"for user {body['user_id']}")  # fmt: skip
    write(f"{body['model']} v{body['version']}, {who}\n")
    for rank, item in enumerate(body["items"], 1):
        write(f"{rank:>3}. {item['title']}  (item {item['item_id']}, score {item['score']:.3f})\n")


FORMATTERS = {"image": format_image, "sentiment": format_sentiment, "translation": format_translation,
              "recommendation": format_recommendation}  # fmt: skip


# ------------------------------------------------------------------------------------------- models
def run_models(args: argparse.Namespace, out: TextIO) -> int:
    rows = RestClient(args.url, api_key=args.api_key, timeout=args.timeout).models()
    if args.json:
        json.dump(rows, out, indent=2)
        out.write("\n")
        return 0
    table = [("MODEL", "VERSION", "STATE", "PROVIDERS", "REASON")] + [
        (r["name"], r.get("version") or "-", r["state"], ",".join(r.get("providers") or []) or "-", r.get("reason") or "")
        for r in rows
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row in table:
        out.write(("  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths)) + "  " + row[4]).rstrip() + "\n")
    return 0
