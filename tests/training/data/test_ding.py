"""The Ding dictionary reader and users' TSV pairs, on small files the tests write."""

import pytest

from app.training.data.ding import Pair, clean_ding_text, read_ding, read_pairs_tsv

DING_LINES = """# Version :: 1.9
Abendessen {n}; Abendbrot {n} | Abendessen {pl} | Das Abendessen hat mir geschmeckt. :: supper; evening meal | suppers | I enjoyed my supper.
Hund {m} [zool.] | Hunde {pl} :: dog | dogs
Wie spät ist es? :: What time is it?; What’s the time?
unpaarig | Das passt nicht. :: odd
Noch ist nicht aller Tage Abend.; Man soll den Tag nicht vor dem Abend loben. :: It’s not over until it’s over.
"""


def test_ding_sentences_and_phrases(tmp_path):
    path = tmp_path / "de-en"
    path.write_text(DING_LINES, encoding="utf-8")
    sentences, phrases = read_ding(path)
    assert sentences == [
        Pair("Das Abendessen hat mir geschmeckt.", "I enjoyed my supper."),
        Pair("Wie spät ist es?", "What time is it?"),
        Pair("Noch ist nicht aller Tage Abend.", "It's not over until it's over."),
    ]
    # every German synonym paired with the first English sense; annotations stripped
    assert Pair("Abendbrot", "supper") in phrases and Pair("Hunde", "dogs") in phrases
    # a line whose sense counts differ (2 German, 1 English) is skipped entirely
    assert not any(p.source == "unpaarig" for p in phrases)


def test_clean_ding_text_strips_annotations():
    assert clean_ding_text("eel ladder (water engineering) [Br.] <variant>") == "eel ladder"
    assert clean_ding_text("I’ve made it .") == "I've made it."


def test_pairs_tsv(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("Guten Morgen.\tGood morning.\n\nDanke.\tThanks.\n", encoding="utf-8")
    assert read_pairs_tsv(path) == [Pair("Guten Morgen.", "Good morning."), Pair("Danke.", "Thanks.")]
    path.write_text("only one column\n")
    with pytest.raises(ValueError, match=":1:"):
        read_pairs_tsv(path)
