"""Neural Collaborative Filtering files (``ncf`` format, He et al. 2017).

``<name>.train.rating`` and ``<name>.test.rating`` hold ``user<TAB>item<TAB>rating<TAB>time``
lines; ``<name>.test.negative`` holds ``(user,item)<TAB>neg<TAB>neg...`` with the sampled
negatives of each test user. The files *are* a split, so the reader returns it as
``given_split``; ids are already 0-based integers and are kept as indices when dense.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..interactions import Interactions
from ...errors import DataError
from ..splits import Candidates, Split
from .base import Dataset, concat_parts, dense_or_factorized, find_nested
from .delimited import read_delimited

SUFFIXES = (".train.rating", ".test.rating", ".test.negative")
_COLUMNS = ["user", "item", "rating", "timestamp"]
_PAIR = re.compile(r"^\((-?\d+),(-?\d+)\)$")


def ncf_stem(path: Path) -> Path:
    """``folder/<name>`` for a folder holding ``<name>.train.rating`` or any of the three files."""
    if path.is_dir():
        found = find_nested(path, "*.train.rating")
        if len(found) != 1:
            what = "no *.train.rating" if not found else "several *.train.rating files"
            raise DataError(f"{path}: {what}; pass one of the files")
        path = found[0]
    for suffix in SUFFIXES:
        if path.name.endswith(suffix):
            return path.parent / path.name[: -len(suffix)]
    raise DataError(f"{path.name}: not an NCF file ({', '.join('*' + s for s in SUFFIXES)})")


def _raw_columns(path: Path) -> dict[str, np.ndarray]:
    """user, item, rating, timestamp of a ``.rating`` file with raw (file) ids."""
    part = read_delimited(path, columns=_COLUMNS, sep="\t", header=False, fmt="ncf")
    return {"user": part.users.raw[part.user], "item": part.items.raw[part.item],
            "rating": part.rating, "timestamp": part.timestamp}


def _bad_negative_line(path: Path, n_negatives: int) -> str:
    """Describe the first malformed line of a ``.test.negative`` file (error path only)."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, start=1):
            fields = line.rstrip("\r\n").split("\t")
            if not line.strip():
                continue
            if not _PAIR.match(fields[0].strip()):
                return f"{path.name} line {number}: expected '(user,item)', found {fields[0]!r}"
            if len(fields) - 1 != n_negatives:
                return (f"{path.name} line {number}: expected {n_negatives} negatives, "
                        f"found {len(fields) - 1}")
            bad = [f for f in fields[1:] if not f.strip().lstrip("-").isdigit()]
            if bad:
                return f"{path.name} line {number}: negative item {bad[0]!r} is not an integer"
    return f"{path.name}: cannot parse"


def read_negatives(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(users, positives, negatives [U, N])`` raw ids from a ``.test.negative`` file."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        first = fh.readline().rstrip("\r\n")
    if not first.strip():
        raise DataError(f"{path.name}: no test users")
    n_negatives = len(first.split("\t")) - 1
    try:
        frame = pd.read_csv(path, sep="\t", header=None, dtype=str, keep_default_na=False,
                            names=range(n_negatives + 1), engine="c")
        pairs = frame[0].str.strip().str.extract(_PAIR)
        negatives = frame.iloc[:, 1:].apply(pd.to_numeric, errors="coerce")
        if pairs.isna().any().any() or negatives.isna().any().any():
            raise ValueError("malformed")
    except (ValueError, pd.errors.ParserError):
        raise DataError(_bad_negative_line(path, n_negatives)) from None
    return (pairs[0].astype(np.int64).to_numpy(), pairs[1].astype(np.int64).to_numpy(),
            negatives.to_numpy(np.int64))


def read_ncf(path: Path) -> Dataset:
    """``ncf`` format: the three files of one dataset, as interactions plus the given split."""
    stem = ncf_stem(path)
    files = [stem.parent / (stem.name + s) for s in SUFFIXES]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise DataError(f"{stem.parent}: missing {', '.join(missing)}")
    train, test = _raw_columns(files[0]), _raw_columns(files[1])
    neg_users, neg_pos, negatives = read_negatives(files[2])
    (u_train, u_test, u_neg), users = dense_or_factorized(train["user"], test["user"], neg_users)
    (i_train, i_test, _, i_neg), items = dense_or_factorized(train["item"], test["item"],
                                                             neg_pos, negatives)
    parts = [Interactions(u.astype(np.int32), i.astype(np.int32), users, items,
                          timestamp=part["timestamp"], rating=part["rating"],
                          meta={"source": str(stem), "format": "ncf"})
             for u, i, part in ((u_train, i_train, train), (u_test, i_test, test))]
    interactions = concat_parts(parts)
    n_train = len(parts[0])
    split = Split("given", interactions.take(np.arange(n_train)),
                  interactions.take(np.arange(n_train, len(interactions))),
                  test_negatives=Candidates(u_neg, i_neg))
    return Dataset(stem.name, interactions, split)
