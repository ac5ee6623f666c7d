"""DEMN's drift slice (spec B.6): the users whose interests shift most between the halves of their
history, where the L3 ablations (the slot write) should differ. Item profiles from genres where
a dataset has them, popularity buckets where not; pure NumPy, one pass over the events."""

from __future__ import annotations

import numpy as np


def genre_profiles(flags: np.ndarray) -> np.ndarray:
    """Item → genre distribution from 0/1 genre flags [n_items, G]: each item's flags sum to 1
    (a three-genre film counts a third to each), an item with none is all zero. → float [n_items, G]."""
    flags = np.asarray(flags, dtype=np.float64)
    total = flags.sum(1, keepdims=True)
    return np.divide(flags, total, out=np.zeros_like(flags), where=total > 0)


def popularity_profiles(item_counts: np.ndarray, buckets: int = 10) -> np.ndarray:
    """The generic profile where items carry no categories: a one-hot of each item's training
    popularity bucket (equal-count buckets of the items sorted by count) → [n_items, buckets].
    It sees only a shift between mainstream and niche items, a coarser drift than genres."""
    counts = np.asarray(item_counts)
    rank = np.empty(len(counts), np.int64)
    rank[np.argsort(counts, kind="stable")] = np.arange(len(counts))
    bucket = rank * buckets // max(len(counts), 1)
    return np.eye(buckets)[bucket]


def drift_scores(indptr: np.ndarray, items: np.ndarray, profiles: np.ndarray,
                 min_events: int = 10) -> np.ndarray:
    """How much each user's interests shift between the first and the second half of its
    (chronological) history: 1 − cos(P₁, P₂), P_h the sum of the item profiles of half h.

    indptr [U + 1], items [N]: CSR sequences, oldest first (``Interactions.sequences()``);
    profiles [n_items, K] non-negative (``genre_profiles`` or ``popularity_profiles``) →
    float [U] in [0, 1], NaN for users with fewer than ``min_events`` events (too few to split).
    Why 1 − cosine: it compares the *shape* of the two distributions whatever their sizes (the
    halves differ by one event at most, but a user's profile mass varies with multi-genre items),
    and equals 0 for unchanged tastes and 1 for disjoint ones. One pass over the events, no loop
    over users.
    """
    lengths = np.diff(indptr)
    users = np.repeat(np.arange(len(lengths)), lengths)
    second = (np.arange(len(items)) - indptr[users]) >= lengths[users] // 2      # in the later half
    sums = np.zeros((2 * len(lengths), profiles.shape[1]))
    np.add.at(sums, 2 * users + second, profiles[items])
    first, later = sums[0::2], sums[1::2]
    norms = np.linalg.norm(first, axis=1) * np.linalg.norm(later, axis=1)
    cosine = np.divide((first * later).sum(1), norms, out=np.zeros(len(lengths)), where=norms > 0)
    return np.where(lengths >= min_events, 1 - cosine, np.nan)


def drift_slice(indptr: np.ndarray, items: np.ndarray, profiles: np.ndarray,
                fraction: float = 0.2, min_events: int = 10) -> np.ndarray:
    """The users whose interests shift most: the top ``fraction`` of the users with at least
    ``min_events`` events by :func:`drift_scores` (ties by user id) → user indices, ascending."""
    scores = drift_scores(indptr, items, profiles, min_events)
    eligible = np.flatnonzero(~np.isnan(scores))
    keep = int(round(fraction * len(eligible)))
    order = eligible[np.lexsort((eligible, -scores[eligible]))]
    return np.sort(order[:keep])


__all__ = ["genre_profiles", "popularity_profiles", "drift_scores", "drift_slice"]
