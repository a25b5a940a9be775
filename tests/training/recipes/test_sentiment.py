"""The sentiment recipe: the user CSV format and split on a file the test writes; end to end (smoke
profile: train, export, parity, evaluation through the serving codec) in the shared smoke repository,
giving a version that ONNX Runtime runs at any batch size and length."""

import csv
import json
import random

import numpy as np
import pytest

from app.protocol.model_config import load_config
from app.tasks.sentiment.processing import SentimentTokenizer
from app.training.export import ort_session
from app.training.recipes.sentiment import PROFILES, load_data
from app.training.data.tweets import near_duplicate_key

WORDS = {"positive": ["love", "great", "wonderful"], "negative": ["hate", "awful", "terrible"],
         "neutral": ["saw", "read about", "heard of"]}


def write_tweets(path, rows=240, seed=0):
    rng = random.Random(seed)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for i in range(rows):
            label = rng.choice(sorted(WORDS))
            text = f"I {rng.choice(WORDS[label])} self-driving car number {i} @user http://t.co/{i}"
            writer.writerow([text, label])
            if i % 10 == 0:  # a retweet: a near-duplicate that must stay on the same side
                writer.writerow([f"RT @other: {text.upper()}", label])


@pytest.fixture(scope="module")
def version_dir(smoke_repository):
    return smoke_repository / "sentiment-minilm" / "1"


def test_near_duplicates_stay_on_one_side(tmp_path):
    write_tweets(tmp_path / "tweets.csv")
    data = load_data(PROFILES["smoke"], tmp_path / "tweets.csv")
    sides = [{near_duplicate_key(data.rows[i].text) for i in getattr(data.split, part)}
             for part in ("train", "validation", "test")]
    assert not (sides[0] & sides[2]) and not (sides[0] & sides[1]) and not (sides[1] & sides[2])
    assert data.labels == ("negative", "neutral", "positive")


def test_smoke_run_publishes_a_servable_version(version_dir):
    assert sorted(p.name for p in version_dir.iterdir()) == ["card.json", "model.onnx", "tokenizer.json"]
    config = load_config(version_dir.parent / "config.yaml", "sentiment-minilm")
    assert config.task == "sentiment" and config.graphs == {"model": "model.onnx"}
    card = json.loads((version_dir / "card.json").read_text())
    assert set(card["metrics"]) >= {"accuracy", "macro_f1"} and card["data"]["splits"]["test"] > 0
    assert card["parity"][0]["max_abs_diff"] <= 1e-4 and card["parity"][0]["top_k_mismatched_rows"] == 0
    assert card["graphs"]["model"]["opset"] >= 18
    assert card["model_selection"]["selected_on"] == "validation" and card["model_selection"]["test_reads"] == 1

    codec = SentimentTokenizer.from_files(version_dir / "tokenizer.json", config.parameters["labels"],
                                      config.parameters["buckets"])
    session = ort_session(version_dir / "model.onnx")
    for texts in (["I love it"], ["I hate it"] * 5 + ["a much longer text about cars " * 30]):
        batch = codec.encode(texts)
        logits = session.run(["logits"], batch.feeds())[0]
        assert logits.shape == (len(texts), 3) and np.isfinite(logits).all()
    assert batch.truncated[-1] and batch.input_ids.shape[1] == 128
