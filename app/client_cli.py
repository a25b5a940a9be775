"""``dendrite predict <task> ...`` and ``dendrite models``: the command-line client.

Over REST by default (``--url``, or ``DENDRITE_URL``), over gRPC with ``--grpc`` (``--grpc-target``,
or ``DENDRITE_GRPC_TARGET``); ``--api-key`` (or ``DENDRITE_API_KEY``) when the server needs one.
Human-readable by default, ``--json`` prints the response body for scripts. A failure prints the
server's message (stderr; with ``--json``, ``{"error": ..., "status": ...}`` on stdout) and exits 1.
A reader that stops early (``dendrite models | head -2``) ends it quietly with 141, as SIGPIPE would.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, TextIO

from app.client import (
    DEFAULT_GRPC_TARGET, DEFAULT_URL, ClientError, ClientTimeout, GrpcClient, RestClient, build_request,
)  # fmt: skip
from app.tasks import registry
from app.tasks.base import ArgumentError


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
    for task in registry.tasks().values():
        parser = tasks.add_parser(task.name, parents=common, help=task.summary)
        task.client.add_arguments(parser)
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
    try:
        return fields | registry.get(args.task).client.request_fields(args)
    except ArgumentError as exc:
        raise ClientError(str(exc)) from None


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
        registry.get(args.task).client.format_answer(args, body, out.write)
    return 0


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
