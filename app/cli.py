"""Command line: ``python -m app serve`` (and ``dendrite serve``)."""

from __future__ import annotations

import argparse
import json
import sys

from app.config import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dendrite", description="Dendrite inference server")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the model repository over REST and gRPC")
    serve.add_argument("--repository", help="model repository folder (DENDRITE_MODEL_REPOSITORY)")
    serve.add_argument("--http-port", type=int, help="REST port (DENDRITE_HTTP_PORT)")
    serve.add_argument("--grpc-port", type=int, help="gRPC port (DENDRITE_GRPC_PORT)")
    serve.add_argument("--host", help="bind address (DENDRITE_HOST)")
    serve.add_argument("--control-mode", choices=["none", "poll", "explicit"], help="DENDRITE_MODEL_CONTROL_MODE")
    sub.add_parser("settings", help="print the effective settings (defaults + DENDRITE_* environment)")
    args = parser.parse_args(argv)

    if args.command == "settings":
        json.dump(Settings().model_dump(mode="json"), sys.stdout, indent=2)
        print()
        return 0
    overrides = {
        "model_repository": args.repository, "http_port": args.http_port, "grpc_port": args.grpc_port,
        "host": args.host, "model_control_mode": args.control_mode,
    }  # fmt: skip
    settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    from app.server import run

    run(settings)
    return 0
