"""Non-neural baselines reported beside the trained models on the same held-out split."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.pipeline import FeatureUnion, make_pipeline


def classification_metrics(gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> dict[str, float]:
    return {
        "accuracy": round(float(accuracy_score(gold, predicted)), 4),
        "macro_f1": round(float(f1_score(gold, predicted, labels=list(labels), average="macro")), 4),
    }


def tfidf_logistic_regression(train_texts: Sequence[str], train_labels: Sequence[str],
                              test_texts: Sequence[str], seed: int = 0) -> list[str]:
    """Word 1-2-grams plus character 2-5-grams, class-balanced logistic regression."""
    features = FeatureUnion([
        ("words", TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)),
        ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=3, sublinear_tf=True)),
    ])
    model = make_pipeline(features, LogisticRegression(C=4.0, max_iter=2000, class_weight="balanced", random_state=seed))
    model.fit(list(train_texts), list(train_labels))
    return list(model.predict(list(test_texts)))


def vader_compound(texts: Sequence[str]) -> np.ndarray:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    return np.array([analyzer.polarity_scores(t)["compound"] for t in texts])


def vader_thresholded(compound: np.ndarray, low: float, high: float) -> list[str]:
    return ["negative" if c <= low else "positive" if c >= high else "neutral" for c in compound]


def tune_vader_thresholds(compound: np.ndarray, gold: Sequence[str], labels: Sequence[str]) -> tuple[float, float]:
    """The (low, high) compound cut-offs with the best macro-F1 on tuning data (VADER's own
    defaults are -0.05 / 0.05)."""
    grid = np.round(np.arange(-0.9, 0.91, 0.05), 2)
    best, best_score = (-0.05, 0.05), -1.0
    for low in grid:
        for high in grid[grid > low]:
            score = f1_score(gold, vader_thresholded(compound, low, high), labels=list(labels), average="macro")
            if score > best_score:
                best, best_score = (float(low), float(high)), score
    return best
