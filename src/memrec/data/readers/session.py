"""SR-GNN / STAMP session pickles (``session`` format).

A folder holds ``all_train_seq.txt`` (a pickled list of sessions, each a list of item ids in
click order) and ``test.txt`` (a pickled tuple ``(prefixes, targets)``), both pickles despite
the suffix, read with the restricted unpickler. Each training session becomes a pseudo-user
(session id = its position); ``timestamp`` is a global click counter, so order survives any
re-sorting. The test pairs become ``NextItemCases`` of the given split.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from ..interactions import IdMap, Interactions
from ...errors import DataError
from ..safe_pickle import safe_load
from ..splits import NextItemCases, Split
from .base import Dataset, dataset_name, find_nested

TRAIN_FILE = "all_train_seq.txt"
TEST_FILE = "test.txt"


def _load_pickle(path: Path):
    with open(path, "rb") as fh:
        return safe_load(fh, source=path.name)


def flatten_sequences(sequences, source: str) -> tuple[np.ndarray, np.ndarray]:
    """A list of int lists -> CSR ``(indptr [S+1], values [total])`` without a Python row loop."""
    if not isinstance(sequences, (list, tuple)):
        raise DataError(f"{source}: expected a list of sessions, found {type(sequences).__name__}")
    try:
        lengths = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))
        values = np.fromiter(itertools.chain.from_iterable(sequences), dtype=np.int64,
                             count=int(lengths.sum()))
    except (TypeError, ValueError, OverflowError):
        raise DataError(f"{source}: every session should be a list of integer item ids") from None
    return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64), values


def read_test_pairs(test, source: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(prefixes, targets)`` -> (indptr, prefix items, targets) as raw ids."""
    if not (isinstance(test, (tuple, list)) and len(test) == 2):
        raise DataError(f"{source}: expected a (prefixes, targets) pair")
    indptr, items = flatten_sequences(test[0], source)
    try:
        targets = np.asarray(test[1], dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise DataError(f"{source}: targets should be integer item ids") from None
    if targets.ndim != 1 or len(targets) != len(indptr) - 1:
        raise DataError(f"{source}: {len(indptr) - 1} prefixes but {targets.size} targets")
    return indptr, items, targets


def read_session(path: Path) -> Dataset:
    """``session`` format: the folder (or either file) of an SR-GNN-style dataset."""
    folder = path if path.is_dir() else path.parent
    nested = find_nested(folder, TRAIN_FILE)
    folder = nested[0].parent if nested else folder
    train_path, test_path = folder / TRAIN_FILE, folder / TEST_FILE
    for needed in (train_path, test_path):
        if not needed.is_file():
            raise DataError(f"{folder}: missing {needed.name}")
    indptr, clicks = flatten_sequences(_load_pickle(train_path), TRAIN_FILE)
    if len(clicks) == 0:
        raise DataError(f"{TRAIN_FILE}: no interactions")
    case_indptr, case_items, targets = read_test_pairs(_load_pickle(test_path), TEST_FILE)

    items = IdMap(np.unique(np.concatenate([clicks, case_items, targets])))
    index = lambda raw: np.searchsorted(items.raw, raw)  # noqa: E731  (raw ids are sorted)
    n_sessions = len(indptr) - 1
    session = np.repeat(np.arange(n_sessions, dtype=np.int64), np.diff(indptr))
    train = Interactions(session.astype(np.int32), index(clicks).astype(np.int32),
                         IdMap.range(n_sessions), items,
                         timestamp=np.arange(len(clicks), dtype=np.float64), session=session,
                         meta={"source": str(folder), "format": "session"})
    cases = NextItemCases(case_indptr, index(case_items).astype(np.int64),
                          index(targets).astype(np.int64),
                          np.full(len(targets), -1, dtype=np.int64))
    split = Split("session", train, train.take(np.zeros(0, dtype=np.int64)), test_cases=cases)
    return Dataset(dataset_name(folder), train, split)
