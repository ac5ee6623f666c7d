"""Native MovieLens files (``movielens`` format).

100K ``u.data`` (tab, no header), 1M/10M ``ratings.dat`` (``::``), 20M/25M ``ratings.csv``
(header ``userId,movieId,rating,timestamp``). Movie and user side files next to the ratings go
into ``extras["item"]`` / ``extras["user"]`` with the id column named ``item`` / ``user``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from ...errors import DataError
from .base import Dataset, dataset_name
from .delimited import read_delimited

RATING_FILES = ("u.data", "ratings.dat", "ratings.csv")
_RATING_COLUMNS = ["user", "item", "rating", "timestamp"]
_U_ITEM_FIELDS = ["item", "title", "release_date", "video_release_date", "imdb_url"]


def find_ratings_file(folder: Path) -> Path | None:
    """The MovieLens ratings file in ``folder`` or one level below (``ml-100k/raw/u.data``)."""
    for where in [folder, *sorted(p for p in folder.iterdir() if p.is_dir())]:
        for name in RATING_FILES:
            if (where / name).is_file():
                return where / name
    return None


def _read_text_table(path: Path, sep: str, names: list[str] | None) -> pd.DataFrame:
    """A small side file as strings; UTF-8 first, then latin-1 (ML-100K/1M are latin-1)."""
    options = dict(sep=sep, header=None if names else 0, names=names, dtype=str,
                   keep_default_na=False, quoting=csv.QUOTE_NONE,
                   engine="python" if len(sep) > 1 else "c")
    for encoding in ("utf-8", "latin-1"):
        try:
            return pd.read_csv(path, encoding=encoding, **options)
        except UnicodeDecodeError:
            continue
        except (pd.errors.ParserError, ValueError) as err:
            raise DataError(f"{path.name}: cannot parse ({str(err).splitlines()[0]})") from None
    raise AssertionError("latin-1 decodes any byte")


def _genre_names(folder: Path) -> list[str] | None:
    """Genre flag names from ``u.genre`` (``name|index`` lines), in index order."""
    path = folder / "u.genre"
    if not path.is_file():
        return None
    frame = _read_text_table(path, "|", ["genre", "index"])
    frame = frame[frame["genre"] != ""]
    return frame.sort_values("index", key=lambda s: s.astype(int))["genre"].tolist()


def read_u_item(path: Path) -> pd.DataFrame:
    """ML-100K ``u.item``: ``|``-separated, latin-1, 19 genre 0/1 flags after five fields."""
    frame = _read_text_table(path, "|", _u_item_names(path))
    for name in frame.columns[len(_U_ITEM_FIELDS):]:
        frame[name] = pd.to_numeric(frame[name], errors="coerce").fillna(0).astype("int8")
    frame["item"] = frame["item"].astype("int64")
    return frame


def _u_item_names(path: Path) -> list[str]:
    genres = _genre_names(path.parent)
    with open(path, encoding="latin-1") as fh:
        n_fields = len(fh.readline().rstrip("\r\n").split("|"))
    n_flags = n_fields - len(_U_ITEM_FIELDS)
    if genres is None or len(genres) != n_flags:
        genres = [f"genre_{k}" for k in range(n_flags)]
    return _U_ITEM_FIELDS + genres


def read_item_file(folder: Path) -> pd.DataFrame | None:
    """Movies beside the ratings: ``u.item``, ``movies.dat`` or ``movies.csv``; else ``None``."""
    if (folder / "u.item").is_file():
        return read_u_item(folder / "u.item")
    if (folder / "movies.dat").is_file():
        frame = _read_text_table(folder / "movies.dat", "::", ["item", "title", "genres"])
    elif (folder / "movies.csv").is_file():
        frame = pd.read_csv(folder / "movies.csv", dtype=str, keep_default_na=False)
        frame = frame.rename(columns={"movieId": "item"})
    else:
        return None
    frame["item"] = frame["item"].astype("int64")
    return frame


def read_user_file(folder: Path) -> pd.DataFrame | None:
    """Users beside the ratings: ``u.user`` (100K) or ``users.dat`` (1M); else ``None``."""
    if (folder / "u.user").is_file():
        frame = _read_text_table(folder / "u.user", "|",
                                 ["user", "age", "gender", "occupation", "zip"])
    elif (folder / "users.dat").is_file():
        frame = _read_text_table(folder / "users.dat", "::",
                                 ["user", "gender", "age", "occupation", "zip"])
    else:
        return None
    frame["user"] = frame["user"].astype("int64")
    return frame


def read_movielens(path: Path) -> Dataset:
    """``movielens`` format: a MovieLens folder or ratings file, with its side files."""
    ratings = find_ratings_file(path) if path.is_dir() else path
    if ratings is None or ratings.name not in RATING_FILES:
        raise DataError(f"{path}: no MovieLens ratings file ({', '.join(RATING_FILES)})")
    if ratings.name == "ratings.csv":  # header userId,movieId,rating,timestamp
        interactions = read_delimited(ratings, sep=",", fmt="movielens")
    else:
        interactions = read_delimited(ratings, columns=_RATING_COLUMNS, header=False,
                                      sep="\t" if ratings.name == "u.data" else "::",
                                      fmt="movielens")
    extras = {name: frame for name, frame in (("item", read_item_file(ratings.parent)),
                                               ("user", read_user_file(ratings.parent)))
              if frame is not None}
    return Dataset(dataset_name(ratings.parent), interactions, None, extras)
