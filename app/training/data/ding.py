"""The translation corpus: the Ding German-English dictionary from Debian ``trans-de-en`` (see shared
REFERENCE), and users' own pairs in the documented plain format (TSV ``source<TAB>target``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

DING_PATH = Path("/usr/share/trans/de-en")

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
