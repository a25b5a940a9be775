"""Deterministic group-aware, stratified held-out splits: every member of a group (a near-duplicate
tweet family, all translations of one source sentence) lands on the same side."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Split:
    train: list[int]
    validation: list[int]
    test: list[int]


def group_split(groups: Sequence[Hashable], strata: Sequence[Hashable] | None = None,
                validation_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0) -> Split:
    """Row indices for train / validation / test.

    Groups are stratified by their most frequent stratum (label), shuffled with ``seed`` and
    dealt to test, then validation, until each holds its fraction of the stratum's rows."""
    if strata is None:
        strata = [0] * len(groups)
    if len(strata) != len(groups):
        raise ValueError("groups and strata differ in length")
    members: dict[Hashable, list[int]] = defaultdict(list)
    for index, group in enumerate(groups):
        members[group].append(index)
    by_stratum: dict[Hashable, list[Hashable]] = defaultdict(list)
    for group, indices in members.items():
        majority = Counter(strata[i] for i in indices).most_common(1)[0][0]
        by_stratum[majority].append(group)

    rng = random.Random(seed)
    train: list[int] = []
    validation: list[int] = []
    test: list[int] = []
    for stratum in sorted(by_stratum, key=repr):  # fixed order: same seed, same split
        stratum_groups = by_stratum[stratum]
        rng.shuffle(stratum_groups)
        total = sum(len(members[g]) for g in stratum_groups)
        test_quota, validation_quota = test_fraction * total, validation_fraction * total
        taken_test = taken_validation = 0
        for group in stratum_groups:
            size = len(members[group])
            if taken_test < test_quota:
                test.extend(members[group])
                taken_test += size
            elif taken_validation < validation_quota:
                validation.extend(members[group])
                taken_validation += size
            else:
                train.extend(members[group])
    return Split(sorted(train), sorted(validation), sorted(test))
