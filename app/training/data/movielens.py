"""MovieLens-100k (GroupLens; use allowed, redistribution not): 100,000 ratings by 943 users of 1,682 movies.

Readers for three layouts, all giving ``Interactions`` in file order (the order breaks timestamp ties):

- RecBole atomic files (the copy shipped in PyPI ``recbole`` 1.2.1): ``ml-100k.inter``
  (``user_id:token<TAB>item_id:token<TAB>rating:float<TAB>timestamp:float``) and ``ml-100k.item``
  (``item_id, movie_title, release_year, class`` with space-separated genres).
- GroupLens' original ``u.data`` (tab separated) and ``u.item`` (``|`` separated, latin-1).
- The documented user format: a CSV ``user,item,rating,timestamp`` (header optional) with an optional
  ``items.csv`` beside it (``item,title``).
"""

from __future__ import annotations

import csv
import logging
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.training.data import data_root
from app.training.data.download import download, pip_download

log = logging.getLogger(__name__)

RECBOLE_REQUIREMENT = "recbole==1.2.1"
RECBOLE_MEMBERS = ("recbole/dataset_example/ml-100k/ml-100k.inter", "recbole/dataset_example/ml-100k/ml-100k.item")
GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
GROUPLENS_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
                    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
                    "Thriller", "War", "Western")  # fmt: skip


@dataclass
class Interactions:
    """Ratings in file order; ids are kept as the strings the source uses."""

    users: list[str]
    items: list[str]
    ratings: np.ndarray  # float32
    timestamps: np.ndarray  # int64
    item_info: dict[str, dict[str, object]] = field(default_factory=dict)  # item id -> title, year, genres

    def __post_init__(self) -> None:
        n = len(self.users)
        if not (len(self.items) == len(self.ratings) == len(self.timestamps) == n):
            raise ValueError("users, items, ratings and timestamps differ in length")

    def __len__(self) -> int:
        return len(self.users)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def load_csv(path: Path) -> Interactions:
    """``user,item,rating,timestamp`` rows (a header row is recognised by a non-numeric timestamp)."""
    path = Path(path)
    users, items, ratings, timestamps = [], [], [], []
    with open(path, newline="", encoding="utf-8") as f:
        for line_number, row in enumerate(csv.reader(f), start=1):
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) < 4:
                raise ValueError(f"{path}:{line_number}: expected user,item,rating,timestamp, got {row!r}")
            if line_number == 1 and not _is_number(row[3]):
                continue  # header
            try:
                ratings.append(float(row[2]))
                timestamps.append(int(float(row[3])))
            except ValueError as exc:
                raise ValueError(f"{path}:{line_number}: rating and timestamp must be numbers: {row!r}") from exc
            users.append(row[0].strip())
            items.append(row[1].strip())
    info: dict[str, dict[str, object]] = {}
    items_file = path.with_name("items.csv")
    if items_file.exists():
        with open(items_file, newline="", encoding="utf-8") as f:
            for row in csv.reader(f):
                if len(row) >= 2 and row[0].strip() and row[0].strip().lower() != "item":
                    info[row[0].strip()] = {"title": row[1].strip()}
    return Interactions(users, items, np.asarray(ratings, np.float32), np.asarray(timestamps, np.int64), info)


def load_recbole(folder: Path) -> Interactions:
    folder = Path(folder)
    users, items, ratings, timestamps = [], [], [], []
    with open(folder / "ml-100k.inter", encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        if [h.split(":")[0] for h in header[:4]] != ["user_id", "item_id", "rating", "timestamp"]:
            raise ValueError(f"{folder}/ml-100k.inter: unexpected header {header}")
        for line in f:
            user, item, rating, timestamp = line.rstrip("\n").split("\t")[:4]
            users.append(user)
            items.append(item)
            ratings.append(float(rating))
            timestamps.append(int(float(timestamp)))
    info: dict[str, dict[str, object]] = {}
    item_file = folder / "ml-100k.item"
    if item_file.exists():
        with open(item_file, encoding="utf-8") as f:
            f.readline()
            for line in f:
                item, title, year, genres = (line.rstrip("\n").split("\t") + ["", "", ""])[:4]
                info[item] = {"title": title, "year": year, "genres": genres.split()}
    return Interactions(users, items, np.asarray(ratings, np.float32), np.asarray(timestamps, np.int64), info)


def load_grouplens(folder: Path) -> Interactions:
    folder = Path(folder)
    users, items, ratings, timestamps = [], [], [], []
    with open(folder / "u.data", encoding="latin-1") as f:
        for line in f:
            user, item, rating, timestamp = line.split("\t")
            users.append(user)
            items.append(item)
            ratings.append(float(rating))
            timestamps.append(int(timestamp))
    info: dict[str, dict[str, object]] = {}
    if (folder / "u.item").exists():
        with open(folder / "u.item", encoding="latin-1") as f:
            for line in f:
                fields = line.rstrip("\n").split("|")
                flags = fields[5:5 + len(GROUPLENS_GENRES)]
                genres = [g for g, flag in zip(GROUPLENS_GENRES, flags) if flag == "1"]
                info[fields[0]] = {"title": fields[1], "year": fields[2][-4:], "genres": genres}
    return Interactions(users, items, np.asarray(ratings, np.float32), np.asarray(timestamps, np.int64), info)


def load(path: Path) -> Interactions:
    """Any supported layout: a CSV file, a RecBole ml-100k folder or a GroupLens ml-100k folder."""
    path = Path(path)
    if path.is_file():
        return load_csv(path)
    if (path / "ml-100k.inter").exists():
        return load_recbole(path)
    if (path / "u.data").exists():
        return load_grouplens(path)
    raise FileNotFoundError(f"{path}: neither a CSV file nor a folder with ml-100k.inter or u.data")


def default_folder() -> Path:
    return data_root() / "ml-100k"


def locate() -> Path | None:
    folder = default_folder()
    return folder if (folder / "ml-100k.inter").exists() or (folder / "u.data").exists() else None


def obtain(allow_download: bool = True) -> Path:
    """The RecBole copy from PyPI (two files taken out of the wheel; the package itself is not installed:
    importing recbole needs its heavy dependencies), else GroupLens' zip."""
    if (found := locate()) is not None:
        return found
    if not allow_download:
        raise FileNotFoundError(f"MovieLens-100k not found in {default_folder()}; run `make data`")
    folder = default_folder()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        wheel = pip_download(RECBOLE_REQUIREMENT, data_root() / "downloads")
        with zipfile.ZipFile(wheel) as archive:
            for member in RECBOLE_MEMBERS:
                (folder / Path(member).name).write_bytes(archive.read(member))
        return folder
    except Exception as exc:  # pip or PyPI unavailable: try the original source
        log.warning("could not take ml-100k from %s (%s); trying %s", RECBOLE_REQUIREMENT, exc, GROUPLENS_URL)
    archive_path = download(GROUPLENS_URL, data_root() / "downloads" / "ml-100k.zip")
    with zipfile.ZipFile(archive_path) as archive:
        for name in ("u.data", "u.item"):
            (folder / name).write_bytes(archive.read(f"ml-100k/{name}"))
    return folder
