"""Session datasets from raw click logs: the SR-GNN / STAMP / NARM preprocessing, vectorised.

Raw formats
-----------
* ``yoochoose`` — RecSys Challenge 2015 ``yoochoose-clicks.dat``: no header, comma-separated
  ``session, ISO timestamp, item, category``.
* ``diginetica`` — CIKM Cup 2016 ``train-item-views.csv``: ``;``-separated with header
  ``session_id;user_id;item_id;timeframe;eventdate``. ``eventdate`` is a day; ``timeframe`` is the
  time within the session and orders its clicks.

Steps (SR-GNN's ``preprocess.py``, which the STAMP/NARM numbers are compared against)
---------------------------------------------------------------------------------------------
1. Clicks are ordered within each session by time — for Diginetica by ``timeframe``. STAMP's and
   NARM's scripts ordered them by ``eventdate`` only, which scrambles a session's order (the day
   is the same for all its clicks); the SR-GNN authors point this out, and their re-run of STAMP
   on the ordered data is the widely cited 45.64 / 14.32.
2. Sessions of length 1 are dropped; then items seen fewer than ``min_item_count`` (5) times are
   removed from the sessions (counted once, after step 2), and sessions left shorter than 2 dropped.
3. A session's date is that of its last row in the file (Yoochoose: the timestamp; Diginetica:
   the day; a few Diginetica sessions span two days). Sessions
   dated after ``max date − test_days`` are test (1 day for Yoochoose, 7 for Diginetica), those
   before it training; as in SR-GNN, sessions dated exactly at the boundary are in neither.
4. Item ids 1..n are given in order of first appearance in the date-ordered training sessions;
   test clicks on items never seen in training are removed, test sessions shorter than 2 dropped.
5. ``fraction`` (Yoochoose 1/64, 1/4): the most recent training prefixes, as SR-GNN takes them:
   the last ``⌊P / fraction⌋`` of the P augmented training prefixes, sessions from the one holding
   the first kept prefix. Item ids keep the full training set's numbering.

The result is written in the SR-GNN pickle layout (``all_train_seq.txt`` = training sessions,
``test.txt`` = (prefixes, targets)), which the ``session`` reader loads.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..fileio import atomic_write_bytes
from ..errors import DataError

RAW_FORMATS = ("yoochoose", "diginetica")
DAY = 86400.0


@dataclass(frozen=True)
class SessionData:
    """Preprocessed sessions: lists of 1-based item ids in click order."""

    train: list[list[int]]
    test_prefixes: list[list[int]]
    test_targets: list[int]
    n_items: int

    def write(self, folder: str | Path) -> None:
        """Write the SR-GNN layout (plain lists and ints only: readable by the restricted
        unpickler). Atomic per file."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(folder / "all_train_seq.txt", pickle.dumps(self.train, protocol=4))
        atomic_write_bytes(folder / "test.txt",
                           pickle.dumps((self.test_prefixes, self.test_targets), protocol=4))


def read_raw_clicks(path: str | Path, fmt: str) -> pd.DataFrame:
    """Columns ``session`` (int), ``time`` (float seconds: session date), ``order`` (sorts the
    clicks within a session), ``item`` (raw id)."""
    path = Path(path)
    if fmt not in RAW_FORMATS:
        raise DataError(f"unknown raw session format {fmt!r}; choose from {', '.join(RAW_FORMATS)}")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        if fmt == "yoochoose":
            raw = pd.read_csv(path, header=None, usecols=[0, 1, 2], names=["session", "ts", "item"],
                              dtype={"session": np.int64, "ts": str, "item": np.int64})
            time = pd.to_datetime(raw["ts"], utc=True, format="ISO8601")
            seconds = (time - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()
            frame = pd.DataFrame({"session": raw["session"], "time": seconds, "order": seconds,
                                  "item": raw["item"]})
        else:
            raw = pd.read_csv(path, sep=";", usecols=["session_id", "item_id", "timeframe", "eventdate"],
                              dtype={"session_id": np.int64, "item_id": np.int64, "timeframe": np.int64,
                                     "eventdate": str})
            day = pd.to_datetime(raw["eventdate"], format="%Y-%m-%d", utc=True)
            frame = pd.DataFrame({"session": raw["session_id"],
                                  "time": (day - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(),
                                  "order": raw["timeframe"].astype(np.float64), "item": raw["item_id"]})
    except (ValueError, KeyError, pd.errors.ParserError) as e:
        raise DataError(f"{path}: not a {fmt} click file ({e})") from None
    if frame.empty:
        raise DataError(f"{path}: no clicks")
    return frame


def _drop_short(frame: pd.DataFrame, min_length: int = 2) -> pd.DataFrame:
    length = frame.groupby("session")["item"].transform("size")
    return frame[length >= min_length]


def preprocess_sessions(frame: pd.DataFrame, *, test_days: float, min_item_count: int = 5,
                        fraction: int | None = None) -> SessionData:
    """Steps 1–5 of the module docstring on :func:`read_raw_clicks` output."""
    if fraction is not None and fraction < 1:
        raise DataError(f"fraction must be a positive integer (64 for 1/64), got {fraction}")
    # 1. clicks in order within sessions (stable: equal times keep file order); sessions in
    #    order of first appearance, which later breaks ties between equal session dates
    frame = frame.reset_index(drop=True)
    date = frame.groupby("session", sort=False)["time"].last()   # the session's last row in the file
    appearance = pd.factorize(frame["session"])[0]
    frame = frame.iloc[np.lexsort((np.arange(len(frame)), frame["order"].to_numpy(), appearance))]
    # 2. length-1 sessions, rare items, then sessions that became too short
    frame = _drop_short(frame)
    counts = frame["item"].map(frame["item"].value_counts())
    frame = _drop_short(frame[counts >= min_item_count])
    if frame.empty:
        raise DataError("no session keeps 2 or more clicks after removing length-1 sessions and "
                        f"items seen fewer than {min_item_count} times")
    # 3. the last test_days are test
    split_date = date.loc[frame["session"].unique()].max() - test_days * DAY
    session_date = frame["session"].map(date)
    # strict on both sides, as SR-GNN: a session dated exactly at the boundary is in neither
    train, test = frame[session_date < split_date], frame[session_date > split_date]
    if train.empty:
        raise DataError(f"every session falls in the last {test_days:g} days; nothing to train on")
    # 4. items numbered by first appearance in date-ordered training sessions
    train = _by_session_date(train, date)
    item_ids = pd.unique(train["item"].to_numpy())
    index = pd.Series(np.arange(1, len(item_ids) + 1), index=item_ids)
    test = _drop_short(test[test["item"].isin(index.index)])
    test = _by_session_date(test, date)
    train_seqs = _sequences(train, index)
    test_seqs = _sequences(test, index)
    if fraction is not None and fraction > 1:
        train_seqs = _most_recent_fraction(train_seqs, fraction)
    prefixes, targets = _prefixes(test_seqs)
    return SessionData(train_seqs, prefixes, targets, len(item_ids))


def _by_session_date(frame: pd.DataFrame, date: pd.Series) -> pd.DataFrame:
    """Rows grouped by session, sessions in date order (stable), clicks keeping their order."""
    session_date = frame["session"].map(date).to_numpy()
    return frame.iloc[np.argsort(session_date, kind="stable")]


def _sequences(frame: pd.DataFrame, index: pd.Series) -> list[list[int]]:
    items = index.loc[frame["item"].to_numpy()].to_numpy()
    session = frame["session"].to_numpy()
    bounds = np.flatnonzero(np.r_[True, session[1:] != session[:-1]])
    return [chunk.tolist() for chunk in np.split(items, bounds[1:])]


def _prefixes(sessions: list[list[int]]) -> tuple[list[list[int]], list[int]]:
    """SR-GNN's augmentation: for each session s and i = 1..len(s)-1, (s[:-i], s[-i])."""
    prefixes, targets = [], []
    for s in sessions:
        for i in range(1, len(s)):
            prefixes.append(s[:-i])
            targets.append(s[-i])
    return prefixes, targets


def _most_recent_fraction(sessions: list[list[int]], fraction: int) -> list[list[int]]:
    """The sessions holding the last ⌊P / fraction⌋ of the P training prefixes."""
    n_prefixes = np.array([len(s) - 1 for s in sessions])
    keep = int(n_prefixes.sum()) // fraction
    if keep == 0:
        raise DataError(f"1/{fraction} of {int(n_prefixes.sum())} training prefixes is nothing")
    first_kept = int(n_prefixes.sum()) - keep               # index of the first kept prefix
    owner = int(np.searchsorted(np.cumsum(n_prefixes), first_kept, side="right"))
    return sessions[owner:]


__all__ = ["RAW_FORMATS", "SessionData", "read_raw_clicks", "preprocess_sessions"]
