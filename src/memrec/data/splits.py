"""Train / valid / test splits and the fixed sampled-negative candidate sets stored with them.

The split functions (:func:`leave_one_out`, :func:`temporal`, :func:`random_ratio`,
:func:`session_split`), their dispatch (:func:`make_split`) and the validation carving live
here with the :class:`Split` they return. :func:`sample_negatives` fills a split's candidate
sets; the sampling machinery it calls (uniform draws among a user's unseen items) is
:mod:`memrec.data.negatives`.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, replace

import numpy as np

from .interactions import Interactions
from ..errors import DataError
from .negatives import draw_negatives, seen_keys
from .sorting import concat_ranges, stable_argsort


@dataclass(frozen=True, eq=False)
class Candidates:
    """Fixed sampled negatives for the sampled-ranking protocol.

    ``negatives[r]`` are the N negative item indices for user ``users[r]`` (never one of the
    user's own items in any part of the split).
    """

    users: np.ndarray      # int64 [U]
    negatives: np.ndarray  # int64 [U, N]


@dataclass(frozen=True, eq=False)
class NextItemCases:
    """Evaluation cases "given this history, predict the next item" (session protocol).

    Histories are CSR: ``items[indptr[c]:indptr[c+1]]`` is case ``c``'s history, oldest first.
    ``users[c]`` is the user index or -1 for anonymous sessions.
    """

    indptr: np.ndarray   # int64 [C+1]
    items: np.ndarray    # int64 [sum of history lengths]
    targets: np.ndarray  # int64 [C]
    users: np.ndarray    # int64 [C]
    times: np.ndarray | None = None   # float64, the histories' timestamps (None: the data have none)

    def __len__(self) -> int:
        return len(self.targets)


@dataclass(frozen=True, eq=False)
class Split:
    """A dataset split. All parts share the same id maps.

    ``kind`` is one of ``loo``, ``temporal``, ``random``, ``session``, ``given``.
    ``valid`` may be ``None`` (no validation part). ``*_negatives`` are the fixed candidate sets
    of the sampled protocol, ``*_cases`` the next-item cases of the session protocol.
    """

    kind: str
    train: Interactions
    test: Interactions
    valid: Interactions | None = None
    valid_negatives: Candidates | None = None
    test_negatives: Candidates | None = None
    valid_cases: NextItemCases | None = None
    test_cases: NextItemCases | None = None


# -- splitting ------------------------------------------------------------------------------------
# Every split labels each row 0 (train), 1 (valid) or 2 (test) with vectorised NumPy and then
# takes the three parts with boolean masks, so rows keep their file order inside each part and
# no row can land in two parts.

_TRAIN, _VALID, _TEST = 0, 1, 2


def leave_one_out(data: Interactions, *, valid: bool = True) -> Split:
    """Per user, the latest interaction -> test, the one before -> valid, the rest -> train.

    Time order is :meth:`Interactions.time_order`: by timestamp, ties (and data without a
    timestamp) in file order. Users with fewer than 3 rows (2 when ``valid=False``) keep all
    their rows in train and are therefore not evaluated. ``kind="loo"``; ``valid`` is ``None``
    when ``valid=False``.
    """
    _require_rows(data, "leave-one-out split")
    # Only each user's last two events matter, so no per-user sort: one stable sort by time,
    # then per-user maxima of the time rank (np.maximum.at).
    by_time = np.arange(len(data)) if data.timestamp is None else stable_argsort(data.timestamp)
    user = data.user[by_time]
    eligible = np.bincount(data.user, minlength=data.n_users) >= (3 if valid else 2)
    rank = np.arange(len(data))
    label = np.zeros(len(data), np.int8)
    for code in ((_TEST, _VALID) if valid else (_TEST,)):
        last = np.full(data.n_users, -1, np.int64)
        np.maximum.at(last, user, rank)
        last = last[eligible]
        label[by_time[last]] = code
        rank[last] = -1                                       # the next pass finds the one before
    return _split_from_labels("loo", data, label, valid)


def temporal(data: Interactions, *, test_frac: float = 0.1, valid_frac: float = 0.1,
             drop_cold: bool = True) -> Split:
    """One global time cut: the latest ``test_frac`` of the rows -> test, the ``valid_frac``
    before them -> valid, the rest -> train.

    Rows are ordered by timestamp, ties in file order, and the cut is by row count
    (``round(frac * N)``, at least 1), so rows sharing the boundary timestamp may fall on both
    sides. With ``drop_cold=True`` (default) valid and test rows whose user or item never
    appears in *train* are dropped (a model cannot score an id it never saw); the number dropped
    is recorded in that part's ``meta["cold_dropped"]``. ``kind="temporal"``; ``valid`` is
    ``None`` when ``valid_frac == 0``.
    """
    _require_rows(data, "temporal split")
    if data.timestamp is None:
        raise DataError("temporal split needs timestamps and this data has none; use the 'loo' "
                        "split (file order as time) or the 'random' split instead")
    _check_fracs(test_frac, valid_frac)
    n = len(data)
    n_test = _count(test_frac, n)
    n_valid = _count(valid_frac, n) if valid_frac > 0 else 0
    if n_test + n_valid >= n:
        raise DataError(f"temporal split of {n:,} interactions leaves no training rows "
                        f"(test {n_test:,}, valid {n_valid:,})")
    order = stable_argsort(data.timestamp)
    label = np.zeros(n, np.int8)
    label[order[n - n_test - n_valid:n - n_test]] = _VALID
    label[order[n - n_test:]] = _TEST
    split = _split_from_labels("temporal", data, label, valid_frac > 0)
    if not drop_cold:
        return split
    train = split.train
    seen_u = np.bincount(train.user, minlength=data.n_users) > 0
    seen_i = np.bincount(train.item, minlength=data.n_items) > 0

    def warm(part: Interactions | None, name: str) -> Interactions | None:
        if part is None:
            return None
        keep = seen_u[part.user] & seen_i[part.item]
        out = part.take(keep)
        if len(out) == 0:
            raise DataError(f"temporal {name} part is empty after dropping users/items unseen in "
                            f"train (had {len(part):,} rows); use a larger {name}_frac or "
                            f"drop_cold=False")
        return replace(out, meta={**part.meta, "cold_dropped": int(len(part) - len(out))})

    return replace(split, valid=warm(split.valid, "valid"), test=warm(split.test, "test"))


def random_ratio(data: Interactions, *, test_frac: float = 0.2, valid_frac: float = 0.1,
                 seed: int = 0) -> Split:
    """Per-user random holdout.

    Each user with at least 3 rows (2 when ``valid_frac == 0``) sends ``round(test_frac * n)``
    rows (at least 1) to test and ``round(valid_frac * n)`` (at least 1, when ``valid_frac > 0``)
    to valid, always keeping at least one row in train (the held-out counts are capped to make
    room). Smaller users stay wholly in train. Rounding is half up. Which rows are held out is
    decided by one seeded random permutation of the rows: deterministic for a given seed and row
    order. ``kind="random"``.
    """
    _require_rows(data, "random split")
    _check_fracs(test_frac, valid_frac)
    with_valid = valid_frac > 0
    counts = np.bincount(data.user, minlength=data.n_users)
    eligible = counts >= (3 if with_valid else 2)
    n_test = np.minimum(np.maximum(np.floor(test_frac * counts + 0.5), 1), counts - 1 - with_valid)
    n_valid = np.minimum(np.maximum(np.floor(valid_frac * counts + 0.5), 1), counts - 1 - n_test)
    n_test = np.where(eligible, n_test, 0).astype(np.int64)
    n_valid = np.where(eligible & with_valid, n_valid, 0).astype(np.int64)

    # A random permutation, then a stable sort by user: each user's rows in random order.
    # The first n_test of each user go to test, the next n_valid to valid.
    shuffled = np.random.default_rng(seed).permutation(len(data))
    order = shuffled[stable_argsort(data.user[shuffled])]
    starts = np.cumsum(counts) - counts
    label = np.zeros(len(data), np.int8)
    label[order[concat_ranges(starts, n_test)]] = _TEST
    label[order[concat_ranges(starts + n_test, n_valid)]] = _VALID
    return _split_from_labels("random", data, label, with_valid)


def session_split(data: Interactions, *, test_frac: float = 0.1, test_days: float | None = None,
                  valid_frac: float = 0.0, valid_days: float | None = None) -> Split:
    """Hold out the most recent *sessions* and turn them into next-item cases.

    Sessions are ordered by the time of their last event (ties, and data without timestamps,
    by the file position of that event). The last ``round(test_frac * S)`` sessions (at least 1)
    -> test, or, with ``test_days``, every session ending within ``test_days * 86400`` timestamp
    units of the latest event (timestamps in seconds). ``valid_frac`` / ``valid_days`` pick the
    sessions just before the test ones the same way (0 / ``None``: no valid part).

    Each held-out part is cleaned before it becomes cases: its items never seen in train are
    removed from the sessions, then sessions left with fewer than 2 events are dropped. Every
    prefix of length >= 1 of a remaining session predicts its next item (a session of length L
    gives L - 1 cases; ``users[c]`` is the session's user index). The ``valid`` / ``test``
    :class:`Interactions` hold exactly the cleaned rows the cases were built from. Train holds
    every row of the other sessions. ``kind="session"``.
    """
    _require_rows(data, "session split")
    if data.session is None:
        raise DataError("session split needs a session column and this data has none; use the "
                        "'loo', 'temporal' or 'random' split instead")
    if (test_days is not None or valid_days is not None) and data.timestamp is None:
        raise DataError("test_days/valid_days need timestamps and this data has none; use "
                        "test_frac/valid_frac instead")
    _check_fracs(test_frac if test_days is None else None,
                 valid_frac if valid_days is None else None)
    if (test_days is not None and test_days <= 0) or (valid_days is not None and valid_days <= 0):
        raise DataError(f"test_days / valid_days must be positive, got {test_days} / {valid_days}")
    # rows grouped by session, each session in time order (ties: file order)
    order = stable_argsort(data.session) if data.timestamp is None else _then_by(
        stable_argsort(data.timestamp), data.session)
    length = _run_lengths(data.session[order])
    n_sess = len(length)
    sess = np.empty(len(data), np.int64)                   # dense session code per row
    sess[order] = np.repeat(np.arange(n_sess), length)
    last_row = order[np.cumsum(length) - 1]                # file position of each last event
    end_time = last_row.astype(np.float64) if data.timestamp is None else data.timestamp[last_row]
    by_end = _then_by(stable_argsort(last_row), end_time)  # sessions, oldest ending first

    if test_days is None:
        n_test = _count(test_frac, n_sess)
        boundary = end_time[by_end[max(n_sess - n_test, 0)]]     # end of the first test session
    else:
        boundary = end_time.max() - test_days * 86400.0
        n_test = int((end_time > boundary).sum())
        if n_test == 0:
            raise DataError(f"no session ends within the last {test_days:g} days; use a larger "
                            f"test_days or test_frac")
    if valid_days is not None:
        n_valid = int((end_time > boundary - valid_days * 86400.0).sum()) - n_test
    else:
        n_valid = _count(valid_frac, n_sess) if valid_frac > 0 else 0
    if n_test + n_valid >= n_sess:
        raise DataError(f"session split of {n_sess:,} sessions leaves no training sessions "
                        f"(test {n_test:,}, valid {n_valid:,})")
    sess_label = np.zeros(n_sess, np.int8)
    sess_label[by_end[n_sess - n_test - n_valid:n_sess - n_test]] = _VALID
    sess_label[by_end[n_sess - n_test:]] = _TEST
    label = sess_label[sess]
    train = data.take(label == _TRAIN)
    in_train = np.bincount(train.item, minlength=data.n_items) > 0
    sess_rank = np.empty(n_sess, np.int64)
    sess_rank[by_end] = np.arange(n_sess)

    def held_out(code: int, name: str) -> tuple[Interactions, NextItemCases]:
        rows = np.flatnonzero((label == code) & in_train[data.item])
        if data.timestamp is not None:
            rows = rows[stable_argsort(data.timestamp[rows])]
        rows = rows[stable_argsort(sess_rank[sess[rows]])]
        length = _run_lengths(sess[rows])
        rows = rows[np.repeat(length >= 2, length)]
        if len(rows) == 0:
            raise DataError(f"session {name} part is empty: no held-out session keeps 2 or more "
                            f"items seen in train")
        part = data.take(np.sort(rows))
        return part, _next_item_cases(sess[rows], data.item[rows], data.user[rows],
                                      None if data.timestamp is None else data.timestamp[rows])

    test, test_cases = held_out(_TEST, "test")
    valid, valid_cases = held_out(_VALID, "valid") if n_valid else (None, None)
    return Split("session", train=train, test=test, valid=valid,
                 valid_cases=valid_cases, test_cases=test_cases)


def _next_item_cases(sess: np.ndarray, item: np.ndarray, user: np.ndarray,
                     time: np.ndarray | None = None) -> NextItemCases:
    """Cases from rows grouped by session (contiguous, each session's events in order), with
    the histories' times when the rows have them."""
    lengths = _run_lengths(sess)
    starts = np.cumsum(lengths) - lengths
    n_cases = lengths - 1
    case_start = np.repeat(starts, n_cases)                      # session start, per case
    hist_len = np.arange(int(n_cases.sum())) - np.repeat(np.cumsum(n_cases) - n_cases, n_cases) + 1
    target_row = case_start + hist_len
    indptr = np.concatenate([[0], np.cumsum(hist_len)]).astype(np.int64)
    offset = np.arange(indptr[-1]) - np.repeat(indptr[:-1], hist_len)
    hist_rows = np.repeat(case_start, hist_len) + offset
    return NextItemCases(indptr=indptr, items=item[hist_rows].astype(np.int64),
                         targets=item[target_row].astype(np.int64),
                         users=user[target_row].astype(np.int64),
                         times=None if time is None else time[hist_rows].astype(np.float64))


def _then_by(order: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Re-sort positions ``order`` stably by ``key[order]``: the result is sorted by ``key``,
    ties keeping their order in ``order`` (least-significant-key-first sorting)."""
    return order[stable_argsort(key[order])]


def _run_lengths(values: np.ndarray) -> np.ndarray:
    """Lengths of the runs of equal consecutive values."""
    if len(values) == 0:
        return np.zeros(0, np.int64)
    edges = np.concatenate([[0], np.flatnonzero(values[1:] != values[:-1]) + 1, [len(values)]])
    return np.diff(edges)


def _split_from_labels(kind: str, data: Interactions, label: np.ndarray, with_valid: bool) -> Split:
    return Split(kind, train=data.take(label == _TRAIN), test=data.take(label == _TEST),
                 valid=data.take(label == _VALID) if with_valid else None)


def _require_rows(data: Interactions, what: str) -> None:
    if len(data) == 0:
        raise DataError(f"cannot make a {what} of an empty dataset")


def _check_fracs(test_frac: float | None, valid_frac: float | None) -> None:
    """``test_frac`` in (0, 1), ``valid_frac`` in [0, 1), summing below 1 (None: not used)."""
    t, v = test_frac or 0.0, valid_frac or 0.0
    if (test_frac is not None and not 0 < t < 1) or not 0 <= v < 1 or t + v >= 1:
        raise DataError(f"split fractions need 0 < test_frac < 1, 0 <= valid_frac < 1 and "
                        f"test_frac + valid_frac < 1, got test_frac={test_frac}, "
                        f"valid_frac={valid_frac}")


def _count(frac: float, n: int) -> int:
    """``round(frac * n)`` half up, at least 1 when ``frac > 0``."""
    return max(int(np.floor(frac * n + 0.5)), 1) if frac > 0 else 0


# -- sampled negatives ----------------------------------------------------------------------------

def sample_negatives(split: Split, n: int = 100, *, seed: int = 0,
                     parts: tuple[str, ...] = ("valid", "test")) -> Split:
    """Fix ``n`` sampled negative items per evaluated user (the sampled-ranking protocol).

    For every user with rows in a part, ``n`` distinct item indices are drawn uniformly from the
    items the user never interacted with in *any* part (train, valid or test). Items range over
    the whole item map ``0..n_items-1``. Each part gets its own stream derived from ``seed``, so
    the test negatives do not depend on whether valid ones are drawn. Returns a new
    :class:`Split` with ``valid_negatives`` / ``test_negatives`` set; a part that is ``None`` is
    skipped. Raises :class:`DataError` if some user has fewer than ``n`` such items.

    The drawing itself (uniform sampling without replacement by vectorised rejection) is
    :func:`memrec.data.negatives.draw_negatives`.
    """
    known = {"valid": "valid_negatives", "test": "test_negatives"}
    bad = [p for p in parts if p not in known]
    if bad:
        raise DataError(f"unknown split part(s) {', '.join(map(repr, bad))}; "
                        f"choose from: valid, test")
    if n <= 0:
        raise DataError(f"number of negatives must be positive, got {n}")
    present = [split.train, split.valid, split.test]
    present = [p for p in present if p is not None]
    n_items = split.train.n_items
    seen = seen_keys(present, n_items)                       # (user, item) keys
    changes = {}
    for index, name in enumerate(("valid", "test")):
        part = getattr(split, name)
        if name not in parts or part is None:
            continue
        users = np.flatnonzero(np.bincount(part.user, minlength=part.n_users)).astype(np.int64)
        rng = np.random.default_rng([seed, index])
        changes[known[name]] = Candidates(users, draw_negatives(users, seen, n_items, n, rng,
                                                                split.train.users))
    return replace(split, **changes)


# -- dispatch -------------------------------------------------------------------------------------

SPLITS = {"loo": leave_one_out, "temporal": temporal, "random": random_ratio,
          "session": session_split}


def make_split(data: Interactions, kind: str, *, seed: int = 0, n_negatives: int = 100,
               **options) -> Split:
    """Split ``data`` by ``kind`` ("loo" | "temporal" | "random" | "session") with the split
    function's keyword ``options``, then fix ``n_negatives`` sampled negatives per evaluated user
    (:func:`sample_negatives`; skipped for "session" and when ``n_negatives == 0``).

    ``seed`` seeds the random split and the negatives. The "given" split (pre-split files) is
    produced by the readers, not here. Unknown kinds and options raise :class:`DataError`.
    """
    if kind not in SPLITS:
        hint = (" ('given' splits come from the readers of pre-split files)"
                if kind == "given" else "")
        raise DataError(f"unknown split {kind!r}{hint}; choose one of: {', '.join(SPLITS)}")
    func = SPLITS[kind]
    allowed = [p for p in inspect.signature(func).parameters if p not in ("data", "seed")]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise DataError(f"unknown option(s) for the {kind!r} split: {', '.join(unknown)}; "
                        f"allowed: {', '.join(allowed)}")
    if kind == "random":
        options["seed"] = seed
    split = func(data, **options)
    if fixes_negatives(kind, n_negatives):
        split = sample_negatives(split, n_negatives, seed=seed)
    return split


def fixes_negatives(kind: str, n_negatives: int) -> bool:
    """Whether :func:`make_split` fixes sampled negatives for a split of ``kind``: not for
    sessions (their protocol ranks every item for a session's next click), nor when 0 asked."""
    return kind != "session" and n_negatives > 0


def carve_validation(split: Split, *, seed: int = 0, n_negatives: int = 100) -> Split:
    """Give a split without a validation part one: per user with at least 2 training rows,
    one training row chosen uniformly at random (seeded) moves to ``valid``; then
    ``n_negatives`` validation negatives are fixed (none when 0).

    For pre-split files (CMN's npz, NCF) that ship only train and test: epochs and
    hyper-parameters are then chosen on validation, never on test (the reproducibility
    studies' protocol). The test part and its negatives are unchanged.
    """
    if split.valid is not None and len(split.valid):
        return split
    train = split.train
    rng = np.random.default_rng(seed)
    key = rng.random(len(train))
    order = np.lexsort((key, train.user))             # per user, random order
    user_sorted = train.user[order]
    last_of_user = np.flatnonzero(np.r_[user_sorted[1:] != user_sorted[:-1], True])
    eligible = np.bincount(train.user, minlength=train.n_users)[user_sorted[last_of_user]] >= 2
    chosen = np.zeros(len(train), bool)
    chosen[order[last_of_user[eligible]]] = True
    carved = replace(split, train=train.take(~chosen), valid=train.take(chosen))
    if n_negatives > 0:
        carved = sample_negatives(carved, n_negatives, seed=seed, parts=("valid",))
    return carved


def carve_session_validation(split: Split, *, valid_frac: float = 0.1) -> Split:
    """Give a session split without validation cases some: the most recent ``valid_frac`` of
    the training sessions become validation cases (cleaned and expanded into prefixes as in
    :func:`session_split`), the rest stay training; ``valid`` holds all rows of the held-out
    sessions, so train + valid is the original training data. Test cases are unchanged.

    For pre-split session files (SR-GNN/STAMP pickles), whose authors chose epochs on the test
    set: here epochs are chosen on these validation sessions instead. When every test case is
    anonymous (users -1, the pickles' unseen sessions), so are the validation cases: a model
    that reads a user vector is then validated as it is tested, not on the untrained vectors of
    sessions it never trained on.
    """
    if split.valid_cases is not None:
        return split
    inner = session_split(split.train, test_frac=valid_frac)
    valid_cases = inner.test_cases
    if split.test_cases is not None and len(split.test_cases) and (split.test_cases.users < 0).all():
        valid_cases = replace(valid_cases, users=np.full_like(valid_cases.users, -1))
    # valid keeps every row of the held-out sessions (the cases use the cleaned ones), so that
    # train + valid is the original training data again (train.refit retrains on exactly that)
    held_out = ~np.isin(split.train.session, inner.train.session)
    return replace(split, train=inner.train, valid=split.train.take(held_out), valid_cases=valid_cases)

