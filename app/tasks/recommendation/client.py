"""The recommendation task's client side: ``dendrite predict recommendation`` arguments and output, bench requests."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from app.tasks.base import Write
from app.tasks.recommendation.processing import USERS_FILE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("user_id", metavar="USER_ID")
    parser.add_argument("-k", type=int, help="how many items (default: the model's)")
    parser.add_argument("--include-seen", action="store_true", help="also recommend items the user already rated")


def request_fields(args: argparse.Namespace) -> dict[str, Any]:
    return {"user_id": args.user_id, "k": args.k, "exclude_seen": False if args.include_seen else None}


def format_answer(args: argparse.Namespace, body: dict[str, Any], write: Write) -> None:
    who = (f"user {body['user_id']} is not in the training data: most popular items" if body["cold_start"]
           else f"for user {body['user_id']}")  # fmt: skip
    write(f"{body['model']} v{body['version']}, {who}\n")
    for rank, item in enumerate(body["items"], 1):
        write(f"{rank:>3}. {item['title']}  (item {item['item_id']}, score {item['score']:.3f})\n")


def samples(version_dir: Path, n: int = 64) -> list[dict[str, Any]]:
    """Requests for the first ``n`` users the version was trained with (else MovieLens ids 1..n)."""
    users = version_dir / USERS_FILE
    ids = (json.loads(users.read_text()).get("ids") or []) if users.is_file() else []
    return [{"user_id": str(u), "k": 10} for u in (ids[:n] or range(1, n + 1))]
