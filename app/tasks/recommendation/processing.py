"""Recommendation: the model scores every item for a user; this module turns scores into a top-k list.

A version folder carries, beside the ONNX graph (input ``user``: int64 user index, output ``scores``:
float32 (batch, items)), plain data files (never pickle):

- ``items.json``: ``[{"id": "242", "title": "Kolya", "year": "1996", "genres": [...], "interactions": 117}, ...]``,
  list position = item index of the model's output.
- ``users.json``: ``{"ids": ["196", ...], "seen": [[item indices], ...]}``, list position = user index.

Unknown users get the most popular items (cold start).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ITEMS_FILE = "items.json"
USERS_FILE = "users.json"


@dataclass(frozen=True)
class Recommendation:
    index: int
    item_id: str
    title: str
    score: float


def top_k_items(
    scores: np.ndarray,
    k: int,
    exclude: Iterable[int] = (),
    candidates: Sequence[int] | None = None,
) -> np.ndarray:
    """Item indices of the k best scores, best first.

    ``exclude``: indices never returned (items the user has seen). ``candidates``: rank only these
    (the NCF evaluation ranks a held-out item among 99 sampled ones this way). Ties go to the lower index.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1:
        raise ValueError(f"scores for one user must be 1-D, got shape {scores.shape}")
    allowed = np.zeros(scores.shape[0], dtype=bool)
    if candidates is None:
        allowed[:] = True
    else:
        allowed[np.asarray(candidates, dtype=np.int64)] = True
    excluded = np.fromiter(exclude, dtype=np.int64)
    allowed[excluded] = False
    indices = np.flatnonzero(allowed)
    order = np.argsort(-scores[indices], kind="stable")[:k]
    return indices[order]


@dataclass
class Catalogue:
    """The items and users a recommendation model was trained with."""

    item_ids: list[str]
    titles: list[str]
    popularity: np.ndarray  # interactions per item index
    user_ids: list[str]
    seen: list[np.ndarray]  # per user index: item indices interacted with
    _user_positions: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._user_positions = {u: i for i, u in enumerate(self.user_ids)}

    @classmethod
    def load(cls, version_dir: Path, items_file: str = ITEMS_FILE, users_file: str = USERS_FILE) -> "Catalogue":
        """Read the catalogue files (names from ``parameters.items_file`` / ``users_file`` of the config)."""
        items = json.loads((Path(version_dir) / items_file).read_text())
        users = json.loads((Path(version_dir) / users_file).read_text())
        if len(users["ids"]) != len(users["seen"]):
            raise ValueError(f"{Path(version_dir) / users_file}: 'ids' and 'seen' differ in length")
        return cls(
            item_ids=[str(item["id"]) for item in items],
            titles=[str(item.get("title", item["id"])) for item in items],
            popularity=np.asarray([int(item.get("interactions", 0)) for item in items], dtype=np.int64),
            user_ids=[str(u) for u in users["ids"]],
            seen=[np.asarray(s, dtype=np.int64) for s in users["seen"]],
        )

    def user_index(self, user_id: str) -> int | None:
        """The model's index for a user id, None for a user the model has never seen."""
        return self._user_positions.get(str(user_id))

    def popular(self, k: int, exclude: Iterable[int] = ()) -> np.ndarray:
        """Cold start: the k most-interacted items."""
        return top_k_items(self.popularity.astype(np.float64), k, exclude)

    def describe(self, indices: Iterable[int], scores: np.ndarray | None = None) -> list[Recommendation]:
        return [
            Recommendation(int(i), self.item_ids[i], self.titles[i], float(scores[i]) if scores is not None else 0.0)
            for i in indices
        ]


def recommend(
    catalogue: Catalogue, user_id: str, scores: np.ndarray | None, k: int = 10, exclude_seen: bool = True
) -> list[Recommendation]:
    """Top-k for one user from the model's scores; popular items when the user is unknown (scores None)."""
    index = catalogue.user_index(user_id)
    seen = catalogue.seen[index] if (index is not None and exclude_seen) else ()
    if index is None or scores is None:
        return catalogue.describe(catalogue.popular(k, seen))
    return catalogue.describe(top_k_items(scores, k, seen), np.asarray(scores))
