import numpy as np
import pytest

from app.training.data import movielens
from app.training.recipes.recommendation import leave_latest_out


def test_csv_with_and_without_header_and_items_file(tmp_path):
    (tmp_path / "with.csv").write_text("user,item,rating,timestamp\nu1,i1,4,100\nu1,i2,5.0,200\n")
    (tmp_path / "items.csv").write_text("item,title\ni1,First\ni2,\"Second, the\"\n")
    data = movielens.load(tmp_path / "with.csv")
    assert data.users == ["u1", "u1"] and data.items == ["i1", "i2"]
    assert data.ratings.tolist() == [4.0, 5.0] and data.timestamps.tolist() == [100, 200]
    assert data.item_info["i2"]["title"] == "Second, the"
    (tmp_path / "plain.csv").write_text("7,8,3,1\n\n")
    assert len(movielens.load(tmp_path / "plain.csv")) == 1


def test_csv_errors_name_the_line(tmp_path):
    (tmp_path / "bad.csv").write_text("u,i,r,t\nu1,i1,x,5\n")
    with pytest.raises(ValueError, match="bad.csv:2"):
        movielens.load(tmp_path / "bad.csv")


def test_recbole_atomic_files(tmp_path):
    (tmp_path / "ml-100k.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n196\t242\t3\t881250949\n186\t302\t3\t891717742\n"
    )
    (tmp_path / "ml-100k.item").write_text(
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n242\tKolya\t1996\tComedy\n"
    )
    data = movielens.load(tmp_path)
    assert data.users == ["196", "186"] and data.timestamps.tolist() == [881250949, 891717742]
    assert data.item_info["242"] == {"title": "Kolya", "year": "1996", "genres": ["Comedy"]}


def test_grouplens_original_files(tmp_path):
    (tmp_path / "u.data").write_text("196\t242\t3\t881250949\n")
    flags = "|".join(["0"] * 5 + ["1"] + ["0"] * 13)
    (tmp_path / "u.item").write_bytes(f"242|Kolya (1996)|24-Jan-1997||http://x|{flags}\n".encode("latin-1"))
    data = movielens.load(tmp_path)
    assert data.item_info["242"]["title"] == "Kolya (1996)" and data.item_info["242"]["genres"] == ["Comedy"]


def test_unknown_layout_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError):
        movielens.load(tmp_path)


def interactions(rows):
    users, items, timestamps = zip(*rows)
    return movielens.Interactions(list(users), list(items), np.ones(len(rows), np.float32), np.asarray(timestamps, np.int64))


def test_leave_latest_out_breaks_timestamp_ties_by_file_order():
    rows = [("1", "a", 5), ("1", "b", 9), ("1", "c", 9), ("1", "d", 1), ("2", "a", 3), ("2", "e", 4)]
    split = leave_latest_out(interactions(rows), negatives=1)
    item = {name: i for i, name in enumerate(split.item_ids)}
    assert split.user_ids == ["1", "2"]
    assert split.test_items.tolist() == [item["c"], item["e"]]  # "c" ties with "b" at 9 and comes later
    assert sorted(split.train_items[split.train_users == 0].tolist()) == sorted([item["a"], item["b"], item["d"]])
    for user, negatives in enumerate(split.test_negatives):
        assert not set(negatives.tolist()) & set(split.seen[user].tolist())


def test_validation_holdout_drops_the_latest_first():
    rows = [("1", "a", 1), ("1", "b", 2), ("1", "c", 3)]
    split = leave_latest_out(interactions(rows), holdouts=2, negatives=0)
    assert split.item_ids[split.test_items[0]] == "b"
    assert [split.item_ids[i] for i in split.train_items] == ["a"]


def test_too_few_unseen_items_for_the_sampled_negatives_is_an_error():
    with pytest.raises(ValueError, match="never-interacted"):
        leave_latest_out(interactions([("1", "a", 1), ("1", "b", 2)]))
