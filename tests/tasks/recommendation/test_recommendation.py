import json

import numpy as np
import pytest

from app.tasks.recommendation.processing import ITEMS_FILE, USERS_FILE, Catalogue, recommend, top_k_items


def test_top_k_excludes_seen_items_and_breaks_ties_by_index():
    scores = np.array([0.5, 0.9, 0.9, 0.1, 0.7])
    assert top_k_items(scores, 3).tolist() == [1, 2, 4]
    assert top_k_items(scores, 3, exclude=[1]).tolist() == [2, 4, 0]


def test_top_k_restricted_to_candidates():
    scores = np.arange(10, dtype=float)
    assert top_k_items(scores, 2, candidates=[0, 3, 7]).tolist() == [7, 3]
    assert top_k_items(scores, 5, exclude=[7], candidates=[0, 3, 7]).tolist() == [3, 0]


def test_top_k_rejects_a_batch():
    with pytest.raises(ValueError):
        top_k_items(np.zeros((2, 3)), 1)


@pytest.fixture()
def catalogue(tmp_path):
    items = [{"id": "10", "title": "A", "interactions": 5}, {"id": "20", "title": "B", "interactions": 50},
             {"id": "30", "title": "C", "interactions": 1}]  # fmt: skip
    (tmp_path / ITEMS_FILE).write_text(json.dumps(items))
    (tmp_path / USERS_FILE).write_text(json.dumps({"ids": ["u1", "u2"], "seen": [[1], []]}))
    return Catalogue.load(tmp_path)


def test_known_user_gets_scored_items_without_seen_ones(catalogue):
    result = recommend(catalogue, "u1", np.array([0.1, 0.9, 0.5]), k=2)
    assert [r.item_id for r in result] == ["30", "10"]
    assert [r.title for r in result] == ["C", "A"]


def test_unknown_user_gets_popular_items(catalogue):
    assert [r.item_id for r in recommend(catalogue, "stranger", None, k=2)] == ["20", "10"]


def test_catalogue_rejects_mismatched_users_file(tmp_path):
    (tmp_path / ITEMS_FILE).write_text(json.dumps([{"id": "1"}]))
    (tmp_path / USERS_FILE).write_text(json.dumps({"ids": ["a", "b"], "seen": [[0]]}))
    with pytest.raises(ValueError):
        Catalogue.load(tmp_path)
