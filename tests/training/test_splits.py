"""The group-aware stratified split: groups never straddle sides, label shares hold, seeds repeat."""

from collections import Counter

from app.training.splits import group_split


def _corpus():
    groups, labels = [], []
    for g in range(600):
        label = ["negative", "neutral", "positive"][g % 3 if g % 5 else 0]
        for _ in range(1 + g % 4):  # groups of 1-4 rows
            groups.append(f"text {g}")
            labels.append(label)
    return groups, labels


def test_groups_stay_on_one_side_and_labels_are_stratified():
    groups, labels = _corpus()
    split = group_split(groups, labels, validation_fraction=0.1, test_fraction=0.2, seed=3)
    sides = [set(groups[i] for i in part) for part in (split.train, split.validation, split.test)]
    assert not (sides[0] & sides[1]) and not (sides[0] & sides[2]) and not (sides[1] & sides[2])
    assert sorted(split.train + split.validation + split.test) == list(range(len(groups)))
    overall = Counter(labels)
    test = Counter(labels[i] for i in split.test)
    for label, count in overall.items():
        assert abs(test[label] / len(split.test) - count / len(labels)) < 0.05
    assert abs(len(split.test) / len(groups) - 0.2) < 0.03


def test_same_seed_same_split_other_seed_other_split():
    groups, labels = _corpus()
    assert group_split(groups, labels, seed=1) == group_split(groups, labels, seed=1)
    assert group_split(groups, labels, seed=1).test != group_split(groups, labels, seed=2).test
