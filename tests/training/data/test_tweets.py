"""The tweets CSV reader (latin-1, garbled bytes), users' CSV and the near-duplicate key."""

import pytest

from app.training.data.tweets import near_duplicate_key, read_labelled_csv, read_tweets


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
