"""Sampled negatives: ``n`` distinct items per user, drawn uniformly among the items that user
never interacted with, fast enough for tens of millions of interactions.

This module knows nothing of splits: it works on user indices and sorted (user, item) keys.
The split-level entry point, which draws the fixed candidate sets of the sampled-ranking
protocol and stores them in a :class:`~memrec.data.splits.Split`, is
:func:`memrec.data.splits.sample_negatives`; the negatives drawn afresh during training are
:class:`memrec.sampling.NegativeSampler`'s.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from .interactions import Interactions
from ..errors import DataError
from .sorting import concat_ranges

__all__ = ["seen_keys", "draw_negatives"]


def seen_keys(parts: Iterable[Interactions], n_items: int) -> np.ndarray:
    """Sorted unique keys ``user * n_items + item`` of every row of ``parts``: the
    (user, item) pairs a negative must avoid, in the form :func:`draw_negatives` takes."""
    return _sorted_unique(np.concatenate(
        [p.user.astype(np.int64) * n_items + p.item for p in parts]))


_CHUNK = 1 << 20   # candidate draws per vectorised block: bounds memory, keeps lookups in cache


def draw_negatives(users: np.ndarray, seen: np.ndarray, n_items: int, n: int,
                   rng: np.random.Generator, user_map) -> np.ndarray:
    """``n`` distinct items per user, uniformly among the items the user never touched.

    Rejection sampling on a [U, m] random matrix (m a little over ``n``): draws that hit the
    user's items (a searchsorted membership test on the sorted keys) or repeat an earlier draw
    are discarded and the first ``n`` survivors kept, which is uniform sampling without
    replacement. The few rows left short are redrawn exactly (:func:`_exact_draw`), in small
    chunks.

    Parameters
    ----------
    users : int64 [U]
        Sorted user indices.
    seen : int64 [K]
        Sorted unique keys ``user * n_items + item`` of every interaction to avoid
        (:func:`seen_keys`).
    n_items, n : int
        Item range ``0..n_items-1``; negatives per user.
    rng : numpy.random.Generator
    user_map : IdMap
        Names a user in the error message.

    Returns
    -------
    int64 [U, n]

    Raises
    ------
    DataError
        Some user has fewer than ``n`` items they never interacted with.
    """
    lo = np.searchsorted(seen, users * n_items)           # users' slices of ``seen``
    hi = np.searchsorted(seen, (users + 1) * n_items)
    free = n_items - (hi - lo)
    out = np.empty((len(users), n), np.int64)
    if len(users) == 0:
        return out
    if free.min() < n:
        worst = int(np.argmin(free))
        raise DataError(f"cannot sample {n} negatives for user "
                        f"{user_map.raw[users[worst]].item()!r}: only {int(free[worst]):,} of "
                        f"{n_items:,} items are ones they never interacted with; lower the "
                        f"number of negatives")
    # Draws per user: enough that most rows reach n survivors (misses at the 90th-percentile
    # density, plus expected repeats, plus a margin); short rows are completed exactly below.
    p = float(np.quantile(1.0 - free / n_items, 0.9))
    m0 = n / max(1.0 - p, 1e-3)
    m = int(min(1.15 * (m0 + m0 * m0 / (2.0 * n_items)) + 16, 4 * n + 64 + n_items))
    step = max(1, _CHUNK // m)
    short = []
    for a in range(0, len(users), step):
        b = min(a + step, len(users))
        cand = rng.integers(0, n_items, size=(b - a, m), dtype=np.int64)
        ok = _fresh(cand, users[a:b], seen[lo[a]:hi[b - 1]], n_items)
        got = np.cumsum(ok, axis=1, dtype=np.int32)
        full = got[:, -1] >= n
        out[a:b][full] = cand[ok & (got <= n) & full[:, None]].reshape(-1, n)
        short.append(a + np.flatnonzero(~full))
    short = np.concatenate(short)
    for a in range(0, len(short), max(1, _CHUNK // n_items)):
        rows = short[a:a + max(1, _CHUNK // n_items)]
        out[rows] = _exact_draw(users[rows], lo[rows], hi[rows], seen, n_items, n, rng)
    return out


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """``np.unique`` by sort and compare (np.unique is far slower on tens of millions)."""
    values = np.sort(values)
    keep = np.empty(len(values), bool)
    keep[:1] = True
    np.not_equal(values[1:], values[:-1], out=keep[1:])
    return values[keep]


def _fresh(cand: np.ndarray, users: np.ndarray, seen: np.ndarray, n_items: int) -> np.ndarray:
    """Mask [U, m]: draw is not one of the user's items and not a repeat of an earlier draw."""
    col_bits = int(cand.shape[1] - 1).bit_length()
    srt = cand << col_bits                                # each row sorted by (item, column)
    srt |= np.arange(cand.shape[1], dtype=np.int64)
    srt.sort(axis=1)
    col = srt & ((1 << col_bits) - 1)
    srt >>= col_bits
    bad = np.zeros(srt.shape, bool)
    np.equal(srt[:, 1:], srt[:, :-1], out=bad[:, 1:])     # repeats; the earliest draw survives
    srt += (users * n_items)[:, None]                     # (user, item) keys, globally sorted
    if len(seen):
        at = np.searchsorted(seen, srt.ravel()).reshape(srt.shape)
        np.minimum(at, len(seen) - 1, out=at)
        bad |= seen[at] == srt
    ok = np.empty_like(bad)
    np.put_along_axis(ok, col, ~bad, axis=1)
    return ok


def _exact_draw(users, lo, hi, seen, n_items, n, rng) -> np.ndarray:
    """Uniform n-subsets of each user's unseen items: random keys, seen items masked out."""
    key = rng.random((len(users), n_items))
    counts = hi - lo
    row = np.repeat(np.arange(len(users)), counts)
    at = concat_ranges(lo, counts)                              # positions of their items in seen
    key[row, seen[at] - users[row] * n_items] = np.inf
    pick = np.argpartition(key, n - 1, axis=1)[:, :n]
    order = np.argsort(np.take_along_axis(key, pick, axis=1), axis=1)
    return np.take_along_axis(pick, order, axis=1).astype(np.int64)
