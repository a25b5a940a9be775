"""The recommendation-neumf recipe end to end on a small CSV the test writes."""

import json

import numpy as np

from app.tasks.recommendation.processing import Catalogue, recommend
from app.training.export import ort_session
from app.training.recipes.recommendation import hit_and_ndcg
from app.training.runner import run_recipe


def write_interactions(path, users=30, items=150, per_user=20, seed=0):
    rng = np.random.default_rng(seed)
    rows = ["user,item,rating,timestamp"]
    for u in range(users):
        for t, item in enumerate(rng.choice(items, per_user, replace=False)):
            rows.append(f"u{u},m{item},{rng.integers(1, 6)},{1000 + t}")
    path.write_text("\n".join(rows) + "\n")
    (path.parent / "items.csv").write_text("item,title\n" + "\n".join(f"m{i},Movie {i}" for i in range(items)) + "\n")


def test_smoke_profile_end_to_end_on_csv(tmp_path):
    write_interactions(tmp_path / "ratings.csv")
    version = run_recipe("recommendation", profile="smoke", data_path=tmp_path / "ratings.csv", repository=tmp_path / "models")

    card = json.loads((version / "card.json").read_text())
    assert card["data"]["splits"]["test_users"] == 30 and card["data"]["splits"]["train_interactions"] == 30 * 19
    assert set(card["metrics"]) == {"hr@10", "ndcg@10"} and "item_popularity" in card["baselines"]
    assert card["parity"][0]["top_k_mismatched_rows"] == 0
    assert card["model_selection"]["selected_on"] == "validation" and card["model_selection"]["test_reads"] == 1
    catalogue = Catalogue.load(version)
    assert len(catalogue.item_ids) == 150 and catalogue.titles[0] == "Movie 0"
    (scores,) = ort_session(version / "model.onnx").run(None, {"user": np.array([0, 1, 2], np.int64)})
    assert scores.shape == (3, 150)
    top = recommend(catalogue, "u0", scores[0], k=10)
    assert len(top) == 10 and not {r.index for r in top} & set(catalogue.seen[0].tolist())


def test_hit_and_ndcg():
    assert hit_and_ndcg(np.array([5, 3, 9]), 5) == (1.0, 1.0)
    assert hit_and_ndcg(np.array([5, 3, 9]), 9) == (1.0, 0.5)
    assert hit_and_ndcg(np.array([5, 3, 9]), 7) == (0.0, 0.0)
