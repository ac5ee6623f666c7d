"""The ``Interactions`` table: who interacted with what, when, as flat NumPy columns.

Every reader produces one, every split consumes one, every model is fitted on one. Memory is
proportional to the number of interactions: columns are NumPy arrays, raw ids live once per
distinct id in an :class:`IdMap`, and the CSR / sequence views are built on demand.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import DataError


@dataclass(frozen=True, eq=False)
class IdMap:
    """Bijection between raw ids (as found in files) and dense indices ``0..n-1``.

    ``raw[i]`` is the raw id of index ``i``. Raw ids are kept as an int64 array when every id is
    an integer, else as a string array.
    """

    raw: np.ndarray

    def __len__(self) -> int:
        return len(self.raw)

    @cached_property
    def _index(self) -> pd.Index:
        return pd.Index(self.raw)

    @classmethod
    def factorize(cls, values: np.ndarray | pd.Series) -> tuple[np.ndarray, "IdMap"]:
        """Return ``(codes, id_map)`` with codes in order of first appearance."""
        codes, uniques = pd.factorize(pd.Series(values), sort=False)
        if (codes < 0).any():
            raise DataError("missing (empty) id values in the data")
        return codes.astype(np.int32), cls(_as_id_array(np.asarray(uniques)))

    @classmethod
    def range(cls, n: int) -> "IdMap":
        """Identity map for data whose ids are already dense indices."""
        return cls(np.arange(n, dtype=np.int64))

    def to_index(self, raw_ids, *, what: str = "id") -> np.ndarray:
        """Map raw ids to indices; an unknown id raises :class:`DataError` naming it."""
        raw_ids = np.atleast_1d(np.asarray(raw_ids))
        if self.raw.dtype.kind in "iu" and raw_ids.dtype.kind in "OUS":
            try:
                raw_ids = raw_ids.astype(np.int64)
            except ValueError:
                pass
        elif self.raw.dtype.kind == "U" and raw_ids.dtype.kind != "U":
            raw_ids = raw_ids.astype(str)
        idx = self._index.get_indexer(raw_ids)
        if (idx < 0).any():
            unknown = raw_ids[idx < 0][:5].tolist()
            raise DataError(f"unknown {what}: {', '.join(map(str, unknown))}")
        return idx.astype(np.int64)

    def to_raw(self, indices) -> np.ndarray:
        return self.raw[np.asarray(indices)]

    def to_json(self) -> list:
        return self.raw.tolist()

    @classmethod
    def from_json(cls, values: list) -> "IdMap":
        return cls(_as_id_array(np.asarray(values)))


def _as_id_array(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind in "iu":
        return values.astype(np.int64)
    if values.dtype.kind == "f" and np.all(np.mod(values, 1) == 0):
        return values.astype(np.int64)
    return values.astype(str)


@dataclass(frozen=True, eq=False)
class Interactions:
    """A table of (user, item[, timestamp, rating, session]) events over fixed id maps.

    Parameters
    ----------
    user, item : int32 arrays [N]
        Dense indices into ``users`` / ``items``.
    users, items : IdMap
        Raw-id maps; their sizes define ``n_users`` / ``n_items`` (a subset keeps the full maps,
        so indices stay comparable between train, valid and test).
    timestamp : float64 [N], optional
        Event time (any monotone unit). Without it, file order is the time order.
    rating : float32 [N], optional
    session : int64 [N], optional
        Session id per event, for session data.
    """

    user: np.ndarray
    item: np.ndarray
    users: IdMap
    items: IdMap
    timestamp: np.ndarray | None = None
    rating: np.ndarray | None = None
    session: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        n = len(self.user)
        if len(self.item) != n:
            raise ValueError("user and item columns differ in length")
        for name in ("timestamp", "rating", "session"):
            col = getattr(self, name)
            if col is not None and len(col) != n:
                raise ValueError(f"{name} column differs in length")

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_raw(cls, user, item, *, timestamp=None, rating=None, session=None,
                 meta: dict | None = None) -> "Interactions":
        """Build from raw id columns; ids are indexed in order of first appearance."""
        u, users = IdMap.factorize(user)
        i, items = IdMap.factorize(item)
        return cls(u, i, users, items,
                   timestamp=None if timestamp is None else np.asarray(timestamp, np.float64),
                   rating=None if rating is None else np.asarray(rating, np.float32),
                   session=None if session is None else np.asarray(session, np.int64),
                   meta=dict(meta or {}))

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, meta: dict | None = None) -> "Interactions":
        """Build from a frame with columns ``user``, ``item`` and optional
        ``timestamp`` / ``rating`` / ``session``."""
        get = lambda c: frame[c].to_numpy() if c in frame.columns else None  # noqa: E731
        return cls.from_raw(frame["user"].to_numpy(), frame["item"].to_numpy(),
                            timestamp=get("timestamp"), rating=get("rating"),
                            session=get("session"), meta=meta)

    # -- sizes --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.user)

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    # -- views --------------------------------------------------------------------------------
    def take(self, index: np.ndarray) -> "Interactions":
        """Rows ``index`` (a boolean mask or integer positions), same id maps."""
        pick = lambda c: None if c is None else c[index]  # noqa: E731
        return replace(self, user=self.user[index], item=self.item[index],
                       timestamp=pick(self.timestamp), rating=pick(self.rating),
                       session=pick(self.session))

    def time_order(self) -> np.ndarray:
        """Row positions sorted by (user, time), stable: ties keep file order."""
        from .sorting import stable_argsort  # (sorting is a leaf module; imported lazily)
        if self.timestamp is None:
            return stable_argsort(self.user)
        by_time = stable_argsort(self.timestamp)
        return by_time[stable_argsort(self.user[by_time])]

    def user_items(self) -> sp.csr_matrix:
        """Binary CSR [n_users, n_items]; duplicates collapse to 1."""
        m = sp.csr_matrix((np.ones(len(self), np.float32), (self.user, self.item)),
                          shape=(self.n_users, self.n_items))
        m.sum_duplicates()
        m.data[:] = 1.0
        return m

    def item_users(self) -> sp.csr_matrix:
        """Binary CSR [n_items, n_users]."""
        return self.user_items().T.tocsr()

    def sequences(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-user chronological item sequences as CSR arrays ``(indptr [U+1], items [N])``.

        ``items[indptr[u]:indptr[u+1]]`` is user ``u``'s history, oldest first, duplicates kept.
        """
        order = self.time_order()
        counts = np.bincount(self.user, minlength=self.n_users)
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return indptr, self.item[order].astype(np.int64)

    def sequence_times(self) -> np.ndarray | None:
        """The timestamps of :meth:`sequences`'s items, in the same order (float64 [N]); None
        when the events carry no time."""
        return None if self.timestamp is None else self.timestamp[self.time_order()]

    def user_degree(self) -> np.ndarray:
        return np.bincount(self.user, minlength=self.n_users)

    def item_degree(self) -> np.ndarray:
        return np.bincount(self.item, minlength=self.n_items)

    def describe(self) -> dict:
        """Summary statistics (what ``memrec data info`` prints)."""
        n = len(self)
        ud = self.user_degree()
        idg = self.item_degree()
        active_u, active_i = int((ud > 0).sum()), int((idg > 0).sum())
        q = [0.0, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0]
        pairs = len(np.unique(self.user.astype(np.int64) * max(self.n_items, 1) + self.item)) if n else 0
        info = {
            "users": active_u, "items": active_i, "interactions": n,
            "repeated_pairs": n - pairs,         # interactions that repeat a (user, item) pair
            "density": pairs / max(active_u * active_i, 1),     # of distinct pairs: at most 1
            "user_degree_quantiles": dict(zip(map(str, q), np.quantile(ud[ud > 0], q).tolist())) if n else {},
            "item_degree_quantiles": dict(zip(map(str, q), np.quantile(idg[idg > 0], q).tolist())) if n else {},
        }
        if self.timestamp is not None and n:
            info["time_span"] = [float(self.timestamp.min()), float(self.timestamp.max())]
        if self.rating is not None and n:
            info["rating_range"] = [float(self.rating.min()), float(self.rating.max())]
        if self.session is not None:
            info["sessions"] = int(len(np.unique(self.session)))
        return info

    def require_nonempty(self, what: str = "dataset") -> "Interactions":
        if len(self) == 0:
            raise DataError(f"{what} is empty")
        return self
