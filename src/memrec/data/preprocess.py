"""Cleaning steps applied before splitting: binarize ratings, resolve duplicates, k-core filter.

Every step takes an :class:`Interactions` and returns a new one; nothing is modified in place.
:func:`preprocess` chains them in the conventional order (threshold -> dedup -> k-core) and
re-indexes to the surviving ids, because models size their embeddings by ``n_users`` /
``n_items``. All steps are vectorised: cost is a few passes over the rows, never a loop over
users or items (k-core loops over *rounds* of filtering, each one vectorised).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .interactions import IdMap, Interactions
from ..errors import DataError
from .sorting import stable_argsort

DUPLICATE_POLICIES = ("keep", "first", "last", "error")


def binarize(data: Interactions, threshold: float) -> Interactions:
    """Keep the rows with ``rating >= threshold`` (explicit ratings -> implicit feedback).

    The rating column is kept; id maps are unchanged (see :func:`compact`).
    Raises :class:`DataError` if the data has no rating column or nothing survives.
    """
    if data.rating is None:
        raise DataError(f"cannot binarize at rating >= {threshold:g}: "
                        f"the data has no rating column")
    out = data.take(data.rating >= threshold)
    if len(out) == 0 and len(data) > 0:
        raise DataError(f"dataset is empty after keeping ratings >= {threshold:g} "
                        f"(had {len(data):,} interactions, ratings in "
                        f"[{float(data.rating.min()):g}, {float(data.rating.max()):g}])")
    return out


def deduplicate(data: Interactions, policy: str) -> Interactions:
    """Resolve repeated (user, item) pairs.

    Parameters
    ----------
    policy : {"keep", "first", "last", "error"}
        ``keep`` returns the data unchanged (repeat consumption is kept); ``first`` / ``last``
        keep one row per pair, the earliest / latest by time (ties and data without timestamps
        follow file order, i.e. the order of :meth:`Interactions.time_order`); ``error`` raises
        :class:`DataError` with the number of duplicate rows and one example pair.

    Surviving rows keep their file order; id maps are unchanged.
    """
    if policy not in DUPLICATE_POLICIES:
        raise DataError(f"unknown duplicates policy {policy!r}; choose one of: "
                        f"{', '.join(DUPLICATE_POLICIES)}")
    if policy == "keep" or len(data) == 0:
        return data
    # by time (ties: file order), then stably by pair: each pair's rows together, in time order
    order = np.arange(len(data)) if data.timestamp is None else stable_argsort(data.timestamp)
    keys = _pair_keys(data)[order]
    by_pair = stable_argsort(keys)
    keys = keys[by_pair]
    edge = np.empty(len(keys) + 1, bool)
    edge[0] = edge[-1] = True
    np.not_equal(keys[1:], keys[:-1], out=edge[1:-1])
    n_dup = len(data) - int(edge[:-1].sum())
    if n_dup == 0:
        return data
    if policy == "error":
        row = order[by_pair[np.flatnonzero(~edge[:-1])[0]]]
        raise DataError(f"found {n_dup:,} duplicate (user, item) rows, e.g. user "
                        f"{data.users.raw[data.user[row]].item()!r} and item "
                        f"{data.items.raw[data.item[row]].item()!r}; use duplicates='keep', "
                        f"'first' or 'last'")
    pick = edge[:-1] if policy == "first" else edge[1:]
    return data.take(np.sort(order[by_pair[pick]]))


def k_core(data: Interactions, user_k: int, item_k: int, *, compact: bool = True) -> Interactions:
    """Iteratively drop users with < ``user_k`` rows and items with < ``item_k`` rows.

    Removing a user lowers its items' counts (and vice versa), so filtering repeats until every
    remaining user has at least ``user_k`` and every remaining item at least ``item_k``
    interactions. Counts are *rows*: a repeated (user, item) pair counts once per row (run
    :func:`deduplicate` first to count distinct pairs).

    With ``compact=True`` (default) the result is re-indexed to the surviving ids
    (:func:`compact`); with ``compact=False`` the id maps and indices are kept as they were.
    Raises :class:`DataError` if nothing survives.
    """
    if user_k < 0 or item_k < 0:
        raise DataError(f"k-core thresholds must be >= 0, got user_k={user_k}, item_k={item_k}")
    rows = np.arange(len(data))
    user, item = data.user, data.item
    while len(rows):
        keep = np.ones(len(rows), bool)
        if user_k > 1:
            keep &= np.bincount(user, minlength=data.n_users)[user] >= user_k
        if item_k > 1:
            keep &= np.bincount(item, minlength=data.n_items)[item] >= item_k
        if keep.all():
            break
        rows, user, item = rows[keep], user[keep], item[keep]
    if len(rows) == 0:
        what = f"{user_k}-core" if user_k == item_k else f"(user {user_k}, item {item_k})-core"
        raise DataError(f"dataset is empty after {what} filtering (had {len(data):,} interactions)")
    out = data if len(rows) == len(data) else data.take(rows)
    return _compact(out) if compact else out


def compact(data: Interactions) -> Interactions:
    """Drop user and item ids that have no rows and re-index ``0..n-1``.

    The surviving ids keep their relative order, and their raw ids travel with them, so
    ``out.users.raw[out.user] == data.users.raw[data.user]`` row for row.
    """
    return _compact(data)


def _compact(data: Interactions) -> Interactions:
    user, users = _reindex(data.user, data.users)
    item, items = _reindex(data.item, data.items)
    return replace(data, user=user, item=item, users=users, items=items)


def _reindex(codes: np.ndarray, id_map: IdMap) -> tuple[np.ndarray, IdMap]:
    used = np.bincount(codes, minlength=len(id_map)) > 0
    if used.all():
        return codes, id_map
    new_index = (np.cumsum(used) - 1).astype(np.int32)
    return new_index[codes], IdMap(id_map.raw[used])


def preprocess(data: Interactions, *, threshold: float | None = None, user_k: int = 0,
               item_k: int = 0, duplicates: str = "keep", compact: bool = True) -> Interactions:
    """Apply :func:`binarize` (if ``threshold`` is given) -> :func:`deduplicate` ->
    :func:`k_core`, then (``compact=True``) re-index to the surviving ids.

    The steps taken are recorded in ``meta["preprocess"]``. Raises :class:`DataError` when the
    input or the result is empty (the message names the step that emptied it).
    """
    if len(data) == 0:
        raise DataError("dataset is empty (no interactions to preprocess)")
    out = data
    if threshold is not None:
        out = binarize(out, threshold)
    out = deduplicate(out, duplicates)
    if user_k > 1 or item_k > 1:
        out = k_core(out, user_k, item_k, compact=False)
    if compact:
        out = _compact(out)
    steps = {"threshold": threshold, "duplicates": duplicates, "user_k": user_k,
             "item_k": item_k, "rows_in": len(data), "rows_out": len(out)}
    return replace(out, meta={**data.meta, "preprocess": steps})


# -- fast stable sorting -------------------------------------------------------------------------
# np.argsort gathers through an index on every comparison and is ~10x slower than np.sort on
# large arrays; np.lexsort is slower still. These helpers sort values that carry the row position
# in their low bits (or in the imaginary part), so a stable argsort costs one np.sort.

def _pair_keys(data: Interactions) -> np.ndarray:
    """One int64 key per row identifying its (user, item) pair."""
    return data.user.astype(np.int64) * data.n_items + data.item
