"""Item metadata for people reading recommendations: titles and genres from a dataset's side files.

:func:`item_metadata` looks in the dataset's folder (a file's own folder), then one level below it
(``ml-100k/raw``, ``ml-100k/recbole``), for the first side file a reader in :data:`READERS` knows:

============== ============================================ ===========================================
file           source                                       columns
============== ============================================ ===========================================
``u.item``     MovieLens 100K (``|``, latin-1, genre flags) title, genres (the flags' names, ``|``-joined)
``movies.dat`` MovieLens 1M / 10M (``::``)                  title, genres
``movies.csv`` MovieLens 20M / 25M                          title, genres
``*.item``     RecBole atomic file                          title (``movie_title``), genres (``class``)
============== ============================================ ===========================================

Every reader returns a frame with an ``item`` column (raw ids, as the interactions spell them)
and whichever of :data:`COLUMNS` its file has; other fields (URLs, dates) are left out so a table
of recommendations stays readable. To read another source, add a function ``folder -> frame or
None`` to :data:`READERS` (and, for other field names, an entry to :data:`ALIASES`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .readers.movielens import read_item_file, read_u_item
from .readers.recbole import read_atomic

COLUMNS = ("title", "genres")
"""The descriptive columns kept, in this order."""

ALIASES = {"movie_title": "title", "class": "genres"}
"""Field names of known side files -> :data:`COLUMNS` names."""


def _movielens(folder: Path) -> pd.DataFrame | None:
    if (folder / "u.item").is_file():
        return _flags_to_genres(read_u_item(folder / "u.item"))
    return read_item_file(folder)              # movies.dat / movies.csv carry a genres field


def _flags_to_genres(frame: pd.DataFrame) -> pd.DataFrame:
    """ML-100K's 0/1 genre columns (every int8 column) as one ``|``-joined ``genres`` column."""
    flags = frame.select_dtypes("int8")
    names = flags.columns.astype(str) + "|"
    genres = flags.astype(object).dot(names).str.rstrip("|")    # 1 * "Action|" = "Action|"
    return frame.drop(columns=flags.columns).assign(genres=genres)


def _recbole(folder: Path) -> pd.DataFrame | None:
    found = sorted(p for p in folder.glob("*.item") if p.is_file())
    return read_atomic(found[0]) if len(found) == 1 else None


READERS = (_movielens, _recbole)
"""Tried in order in each folder; the first frame found wins."""


def item_metadata(data_path: str | Path) -> pd.DataFrame | None:
    """``item`` plus the :data:`COLUMNS` found for the dataset at ``data_path`` (a file or a
    folder), or None when no known side file is there."""
    path = Path(data_path)
    folder = path if path.is_dir() else path.parent
    if not folder.is_dir():
        return None
    for where in [folder, *sorted(p for p in folder.iterdir() if p.is_dir())]:
        for reader in READERS:
            frame = reader(where)
            if frame is not None:
                return _display_columns(frame)
    return None


def _display_columns(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.rename(columns=ALIASES)
    kept = [c for c in COLUMNS if c in frame.columns]
    return frame[["item", *kept]].drop_duplicates("item")


__all__ = ["item_metadata", "READERS", "COLUMNS", "ALIASES"]
