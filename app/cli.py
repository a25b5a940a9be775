"""Command line: ``python -m app serve`` (and ``dendrite serve``); the client commands
``predict`` and ``models`` live in ``app.client_cli``."""

from __future__ import annotations

import argparse
import json
import sys

from app import client_cli
from app.config import Settings, settings_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dendrite", description="Dendrite inference server")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the model repository over REST and gRPC")
    serve.add_argument("--repository", help="model repository folder (DENDRITE_MODEL_REPOSITORY)")
    serve.add_argument("--http-port", type=int, help="REST port (DENDRITE_HTTP_PORT)")
    serve.add_argument("--grpc-port", type=int, help="gRPC port (DENDRITE_GRPC_PORT)")
    serve.add_argument("--host", help="bind address (DENDRITE_HOST)")
    serve.add_argument("--control-mode", choices=["none", "poll", "explicit"], help="DENDRITE_MODEL_CONTROL_MODE")
    serve.add_argument(
        "--train-missing", action="store_true",
        help="train the default models that have no version yet in a background process (needs the `train` "
        "extra) and poll the repository so each goes live when it finishes",
    )  # fmt: skip
    show = sub.add_parser("settings", help="print the effective settings (defaults + DENDRITE_* environment)")
    show.add_argument("--json", action="store_true", help="JSON instead of a table")
    client_cli.add_commands(sub)  # predict <task> ..., models
    args = parser.parse_args(argv)
    if args.command in ("predict", "models"):
        return client_cli.run(args)

    if args.command == "settings":
        if args.json:
            json.dump(Settings().model_dump(mode="json"), sys.stdout, indent=2)
            print()
        else:
            print(settings_table(), end="")
        return 0
    overrides = {
        "model_repository": args.repository, "http_port": args.http_port, "grpc_port": args.grpc_port,
        "host": args.host, "model_control_mode": args.control_mode,
    }  # fmt: skip
    if args.train_missing and args.control_mode in (None, "none"):
        overrides["model_control_mode"] = "poll"
    settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    trainer = start_trainer(settings) if args.train_missing else None
    try:
        if settings.worker_count() > 1:
            from app.workers.supervisor import supervise

            return supervise(settings)
        from app.server import run

        return run(settings)
    finally:
        if trainer is not None and trainer.poll() is None:
            trainer.terminate()
            trainer.wait(30)


def start_trainer(settings: Settings):
    """``python -m app.training all`` as a child process: serving never imports torch itself."""
    import subprocess

    cmd = [sys.executable, "-m", "app.training", "all", "--repository", str(settings.model_repository)]
    print(f"training missing models in the background: {' '.join(cmd)}", flush=True)
    return subprocess.Popen(cmd)
