"""Length-bucketed mini-batches for variable-length text: shuffle, then sort within pools of
batches by length, so each batch pads to a similar length (much less wasted compute on CPU)."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence


def length_bucketed_batches(lengths: Sequence[int], batch_size: int, rng: random.Random,
                            pool_batches: int = 50) -> Iterator[list[int]]:
    order = list(range(len(lengths)))
    rng.shuffle(order)
    pool = batch_size * pool_batches
    batches: list[list[int]] = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool], key=lambda i: lengths[i])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    yield from batches
