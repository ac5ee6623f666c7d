"""What the session-neighbourhood baselines (SKNN, V-SKNN, STAN) share: the training sessions as a
sparse session × item matrix, and one vectorised pass from a batch of current sessions to item
scores.

The pass, for B current sessions at once (no Python loop over sessions, neighbours or items):

1. the current sessions as a sparse [B, I] matrix of item weights (1, or a position decay);
2. one sparse product with the item → training-session matrix [I, S]: every training session
   sharing an item with a current one, with the weighted overlap Σ_{i ∈ s ∩ n} w(i);
3. of those, the ``sample_size`` most recent (sessions are stored oldest first, so these are
   the last entries of each sorted row: session-rec's ``sampling="recent"``);
4. a similarity per (current, candidate) pair, and the ``neighbours`` most similar per row
   (one lexsort: row, similarity descending, recency descending);
5. every neighbour's items laid out flat (the CSR rows of the chosen sessions), a weight per
   (pair, item), summed into the [B, I] scores with one ``bincount``.

The models differ only in the weights of steps 1, 4 and 5. Fitting stores the training sessions
(oldest first) as CSR buffers: each session's distinct items, the position (1-based, repeats
counted) of each item's *last* click in the session, and the session's time (its last event's
timestamp, or its file position where there are none), so a checkpoint holds them like weights.

The neighbourhood search runs on the CPU with NumPy/SciPy (sparse products and within-row
selections); the scores come back on the window's device.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from ...data.interactions import Interactions
from ...data.sorting import stable_argsort
from ..session_memory import SessionWindow


@dataclass(frozen=True)
class CurrentSessions:
    """A batch of current sessions as flat arrays over their *distinct* items.

    ``row``, ``item``, ``position`` [E]: which session, which item, the 1-based position of the
    item's last click (repeats counted, as session-rec numbers clicks); ``length`` [B]: clicks per
    session (repeats counted); ``distinct`` [B]: distinct items per session.
    """

    row: np.ndarray
    item: np.ndarray
    position: np.ndarray
    length: np.ndarray
    distinct: np.ndarray

    @classmethod
    def from_window(cls, items: np.ndarray, mask: np.ndarray) -> "CurrentSessions":
        """From a left-aligned, right-padded window items [B, W], mask [B, W]."""
        position = np.cumsum(mask, axis=1)                          # 1-based click number
        rows, cols = np.nonzero(mask)
        item, pos = items[rows, cols].astype(np.int64), position[rows, cols]
        # keep each (session, item)'s last click: sort by (row, item, position), last of a run
        order = np.lexsort((pos, item, rows))
        rows, item, pos = rows[order], item[order], pos[order]
        last = np.ones(len(rows), bool)
        last[:-1] = (rows[1:] != rows[:-1]) | (item[1:] != item[:-1])
        rows, item, pos = rows[last], item[last], pos[last]
        B = len(items)
        return cls(rows.astype(np.int64), item, pos.astype(np.int64), mask.sum(1).astype(np.int64),
                   np.bincount(rows, minlength=B).astype(np.int64))

    def lookup(self, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        """The position of (rows[e], items[e]) in the current sessions, 0 where the item is not in
        that session. Vectorised by a binary search over the sorted (row, item) keys."""
        n = int(max(self.item.max(initial=0), items.max(initial=0))) + 1
        keys = self.row * n + self.item                             # sorted: built row, item
        wanted = rows * n + items
        at = np.minimum(np.searchsorted(keys, wanted), max(len(keys) - 1, 0))
        found = keys[at] == wanted if len(keys) else np.zeros(len(wanted), bool)
        return np.where(found, self.position[at] if len(keys) else 0, 0)


@dataclass(frozen=True)
class Pairs:
    """(current session, training session) pairs: ``row`` [P], ``session`` [P], ``value`` [P]."""

    row: np.ndarray
    session: np.ndarray
    value: np.ndarray

    def take(self, keep: np.ndarray) -> "Pairs":
        return Pairs(self.row[keep], self.session[keep], self.value[keep])


@dataclass(frozen=True)
class NeighbourItems:
    """Every item of every chosen neighbour, flat: ``pair`` [E] (index into the pairs), ``item``
    [E], ``position`` [E] (of the item's last click in the neighbour), ``in_current`` [E] (the
    item's position in the current session, 0 when it is not there)."""

    pair: np.ndarray
    item: np.ndarray
    position: np.ndarray
    in_current: np.ndarray

    def pair_max(self, values: np.ndarray) -> np.ndarray:
        """max of ``values`` [E] over each pair's items → [P]. A pair's items are contiguous and
        every neighbour has at least one item, so one ``reduceat`` over the run starts."""
        if len(values) == 0:
            return values
        starts = np.flatnonzero(np.r_[True, self.pair[1:] != self.pair[:-1]])
        return np.maximum.reduceat(values, starts)


class SessionNeighbourhood(SessionWindow):
    """Base of the session-kNN baselines: training sessions as buffers, the vectorised pass of
    the module docstring, and three hooks (:meth:`current_weights`, :meth:`pair_similarity`,
    :meth:`item_weights`).

    Parameters
    ----------
    n_users, n_items : int
        ``n_users`` is unused: scores depend on the current session's clicks only.
    neighbours : int
        k, the most similar training sessions that score items (session-rec: 100).
    sample_size : int
        Candidates: the most recent ``sample_size`` training sessions sharing an item with the
        current one (session-rec: 500); 0 takes them all.
    """

    trainable = False

    seed_free = True                  # a closed form: no random draw
    data_buffers = ("session_indptr", "session_items", "session_positions", "session_time")

    def __init__(self, n_users: int, n_items: int, *, neighbours: int = 100, sample_size: int = 500):
        super().__init__(n_users, n_items)
        if neighbours < 1:
            raise ValueError(f"neighbours must be >= 1, got {neighbours}")
        if sample_size < 0:
            raise ValueError(f"sample_size must be >= 0 (0: every candidate), got {sample_size}")
        self.neighbours, self.sample_size = int(neighbours), int(sample_size)
        self.register_buffer("session_indptr", torch.zeros(1, dtype=torch.long))
        self.register_buffer("session_items", torch.zeros(0, dtype=torch.long))
        self.register_buffer("session_positions", torch.zeros(0, dtype=torch.long))
        self.register_buffer("session_time", torch.zeros(0, dtype=torch.float64))
        self._matrices = None

    # -- fitting ------------------------------------------------------------------------------
    def fit_closed_form(self, train: Interactions) -> None:
        """Store the training sessions (``train.session``, else each user's history), oldest first."""
        if train.n_items != self.n_items:
            raise ValueError(f"train has {train.n_items} items, model was built for {self.n_items}")
        indptr, items, positions, time = training_sessions(train)
        for name, value in (("session_indptr", indptr), ("session_items", items),
                            ("session_positions", positions), ("session_time", time)):
            setattr(self, name, torch.as_tensor(value).to(getattr(self, name)))
        self._matrices = None

    def prepare(self, train: Interactions) -> None:
        # the training sessions are this model's data-derived state, as neighbourhoods are CMN's
        self.fit_closed_form(train)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        self._matrices = None                   # the sparse matrices are rebuilt from the buffers
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def matrices(self) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """(sessions × items with last-click positions [S, I], items × sessions binary [I, S]),
        built once from the buffers."""
        if self._matrices is None:
            indptr = self.session_indptr.cpu().numpy()
            items = self.session_items.cpu().numpy()
            sessions = sp.csr_matrix((self.session_positions.cpu().numpy().astype(np.float64), items, indptr),
                                     shape=(len(indptr) - 1, self.n_items))
            by_item = sessions.T.tocsr()
            by_item.data[:] = 1.0
            self._matrices = (sessions, by_item)
        return self._matrices

    # -- the three hooks ----------------------------------------------------------------------
    @abstractmethod
    def current_weights(self, current: CurrentSessions) -> np.ndarray:
        """The weight of each current-session item [E] in the overlap Σ_{i ∈ s ∩ n} w(i)."""

    @abstractmethod
    def pair_similarity(self, current: CurrentSessions, candidates: Pairs) -> np.ndarray:
        """sim(s, n) of each candidate pair [P] from its weighted overlap ``candidates.value``."""

    @abstractmethod
    def item_weights(self, current: CurrentSessions, neighbours: Pairs,
                     items: NeighbourItems) -> np.ndarray:
        """The score each neighbour's item gets [E] (``neighbours.value`` is the similarity)."""

    # -- scoring ------------------------------------------------------------------------------
    @torch.no_grad()
    def window_scores(self, items: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        current = CurrentSessions.from_window(items.cpu().numpy(), mask.cpu().numpy())
        neighbours = self.neighbours_of(current, len(items))
        spread = self.neighbour_items(current, neighbours)
        weights = self.item_weights(current, neighbours, spread)
        scores = _scatter_sum(neighbours.row[spread.pair], spread.item, weights, len(items), self.n_items)
        return scores.to(items.device)

    def neighbours_of(self, current: CurrentSessions, batch_size: int) -> Pairs:
        """The chosen neighbours of every current session, with their similarity as ``value``."""
        candidates = self.recent_candidates(current, batch_size)
        similar = Pairs(candidates.row, candidates.session, self.pair_similarity(current, candidates))
        similar = similar.take(similar.value > 0)                   # session-rec keeps sim > 0
        # by row, then similarity descending, then the more recent session first (ties)
        order = np.lexsort((-similar.session, -similar.value, similar.row))
        ranked = similar.take(order)
        return ranked.take(_rank_in_row(ranked.row) < self.neighbours)

    def recent_candidates(self, current: CurrentSessions, batch_size: int) -> Pairs:
        """Training sessions sharing an item with each current session, the ``sample_size`` most
        recent, with the weighted overlap as ``value``."""
        _, by_item = self.matrices()
        weights = sp.csr_matrix((self.current_weights(current), (current.row, current.item)),
                                shape=(batch_size, self.n_items))
        overlap = (weights @ by_item).tocsr()                       # [B, S]: Σ_{i ∈ s ∩ n} w(i)
        overlap.sort_indices()                                      # sessions ascend = oldest first
        row = np.repeat(np.arange(batch_size), np.diff(overlap.indptr))
        from_end = overlap.indptr[row + 1] - 1 - np.arange(len(row))
        keep = from_end < self.sample_size if self.sample_size else np.ones(len(row), bool)
        return Pairs(row[keep], overlap.indices[keep].astype(np.int64), overlap.data[keep])

    def neighbour_items(self, current: CurrentSessions, neighbours: Pairs) -> NeighbourItems:
        """Every distinct item of each chosen neighbour, flat (the CSR rows laid end to end)."""
        sessions, _ = self.matrices()
        starts, ends = sessions.indptr[neighbours.session], sessions.indptr[neighbours.session + 1]
        sizes = ends - starts
        pair = np.repeat(np.arange(len(sizes)), sizes)
        flat = starts[pair] + np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        item = sessions.indices[flat].astype(np.int64)
        return NeighbourItems(pair, item, sessions.data[flat].astype(np.int64),
                              current.lookup(neighbours.row[pair], item))

    def latest_time(self) -> float:
        """The time the current sessions are taken to happen at: the end of the training data
        (requests carry no timestamps)."""
        return float(self.session_time.max()) if self.session_time.numel() else 0.0


def training_sessions(train: Interactions) -> tuple[np.ndarray, ...]:
    """The training sessions, oldest first (by their last event's time, ties by its file
    position), as CSR (indptr [S+1], distinct items [E] in order of last click, their last-click
    positions [E], 1-based, repeats counted) and each session's time [S]."""
    key = (train.session if train.session is not None else train.user).astype(np.int64)
    n = len(key)
    file_pos = np.arange(n)
    time = train.timestamp if train.timestamp is not None else file_pos.astype(np.float64)
    order = stable_argsort(time)
    order = order[stable_argsort(key[order])]                       # by session, then time
    key, item, rows = key[order], train.item[order].astype(np.int64), order
    start = np.r_[True, key[1:] != key[:-1]]
    session = np.cumsum(start) - 1                                  # dense session code per click
    first = np.flatnonzero(start)
    position = np.arange(n) - first[session] + 1                    # 1-based click number
    last = np.r_[first[1:], n] - 1                                  # each session's last click
    end_time, end_row = time[rows[last]], rows[last]
    by_end = np.lexsort((end_row, end_time))                        # oldest session first
    rank = np.empty_like(by_end)
    rank[by_end] = np.arange(len(by_end))
    # each (session, item)'s last click, the sessions renumbered oldest first
    sess = rank[session]
    order = np.lexsort((position, item, sess))
    sess, item, position = sess[order], item[order], position[order]
    keep = np.r_[(sess[1:] != sess[:-1]) | (item[1:] != item[:-1]), True]
    sess, item, position = sess[keep], item[keep], position[keep]
    order = np.lexsort((position, sess))                            # within a session: click order
    sess, item, position = sess[order], item[order], position[order]
    indptr = np.r_[0, np.cumsum(np.bincount(sess, minlength=len(by_end)))].astype(np.int64)
    return indptr, item, position.astype(np.int64), end_time[by_end].astype(np.float64)


def _rank_in_row(rows: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... within each run of equal (sorted) row ids."""
    if len(rows) == 0:
        return np.zeros(0, np.int64)
    return np.arange(len(rows)) - np.searchsorted(rows, rows, side="left")


def _scatter_sum(rows: np.ndarray, items: np.ndarray, weights: np.ndarray, batch_size: int,
                 n_items: int) -> torch.Tensor:
    """Dense [B, I] float32 scores: Σ of ``weights`` per (row, item). Summed in float64 by one
    ``bincount`` over the distinct keys (deterministic order), then scattered."""
    # the neighbourhood is computed with NumPy on the CPU; the caller moves the scores
    scores = torch.zeros(batch_size * n_items, dtype=torch.float32, device="cpu")
    if len(rows):
        keys, inverse = np.unique(rows * n_items + items, return_inverse=True)
        sums = np.bincount(inverse.ravel(), weights=weights, minlength=len(keys))
        scores[torch.from_numpy(keys)] = torch.from_numpy(sums.astype(np.float32))
    return scores.view(batch_size, n_items)


__all__ = ["CurrentSessions", "Pairs", "NeighbourItems", "SessionNeighbourhood", "training_sessions"]
