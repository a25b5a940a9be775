import json

import numpy as np
import pytest

from app.tasks.image.postprocess import load_labels, softmax, top_k


def test_softmax_is_stable_for_huge_logits():
    p = softmax(np.array([[1000.0, 1000.0, -1000.0]]))
    assert np.allclose(p, [[0.5, 0.5, 0.0]])


def test_top_k_orders_by_probability_with_labels():
    logits = np.array([[0.0, 3.0, 1.0], [5.0, 0.0, 0.0]], dtype=np.float32)
    result = top_k(logits, ["a", "b", "c"], k=2)
    assert [[p.label for p in row] for row in result] == [["b", "c"], ["a", "b"]]
    assert result[0][0].probability == pytest.approx(np.exp(3) / (1 + np.exp(3) + np.exp(1)))


def test_top_k_caps_k_at_the_class_count_and_checks_labels():
    assert len(top_k(np.zeros((1, 2)), ["a", "b"], k=10)[0]) == 2
    with pytest.raises(ValueError):
        top_k(np.zeros((1, 3)), ["a", "b"], k=1)


def test_labels_file_must_be_a_list_of_strings(tmp_path):
    (tmp_path / "ok.json").write_text(json.dumps(["x", "y"]))
    (tmp_path / "bad.json").write_text(json.dumps({"0": "x"}))
    assert load_labels(tmp_path / "ok.json") == ["x", "y"]
    with pytest.raises(ValueError):
        load_labels(tmp_path / "bad.json")
