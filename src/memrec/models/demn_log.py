"""DEMN's event log: the training events indexed for the item-side buffers (spec B.1, B.4).

Why a module of its own: the log is not learned and knows nothing of DEMN's weights. It answers
three questions about the training events (who visited an item before a cutoff, who a user's
co-visitors are, and where each training event sits in the global order), and its rules are
the leakage rules of spec B.4, tested against brute force in ``tests/test_demn.py``. Keeping it
apart keeps ``models/demn.py`` (the model's entry point) the model's equations, under 600 lines.

Layout. Visits sorted by (item, global rank), keyed item·(E + 1) + rank, so "the last L visitors
of item j strictly before rank t" is one ``searchsorted`` of key j·(E + 1) + t (a FIFO buffer of
capacity L read at any cutoff, with no per-cutoff copy); and each user's training events' ranks
in sequence order, the training cutoffs. The tensors stay the model's registered buffers (their
checkpoint names unchanged); :class:`EventLog` is a view over them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from ..data.interactions import Interactions
from ..data.sorting import stable_argsort
from ..memory.state import ItemWindow

#: the buffer names, in :class:`EventLog`'s field order (the model's ``data_buffers``)
LOG_BUFFERS = ("visit_indptr", "visit_key", "visit_user", "seq_indptr", "seq_rank")


def event_ranks(train: Interactions) -> np.ndarray:
    """Each row's position in the global time order (the clock of ``streaming.py``: timestamps,
    else each event's relative position in its user's sequence), int64 [N]."""
    if train.timestamp is not None:
        order = stable_argsort(train.timestamp)
    else:
        by_user = stable_argsort(train.user)
        counts = np.bincount(train.user, minlength=train.n_users)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        pseudo = np.empty(len(train))
        pseudo[by_user] = (np.arange(len(train)) - starts[train.user[by_user]] + 1) / counts[train.user[by_user]]
        order = stable_argsort(pseudo)
    ranks = np.empty(len(train), np.int64)
    ranks[order] = np.arange(len(train))
    return ranks


@dataclass(frozen=True)
class EventLog:
    """The training events: visits by item (visit_indptr [n_items + 1], visit_key / visit_user
    [E]) and each user's event ranks in sequence order (seq_indptr [n_users + 1], seq_rank [E])."""

    visit_indptr: torch.Tensor
    visit_key: torch.Tensor
    visit_user: torch.Tensor
    seq_indptr: torch.Tensor
    seq_rank: torch.Tensor

    @staticmethod
    def arrays(train: Interactions, device) -> dict[str, torch.Tensor]:
        """The buffers of ``train``'s log, by name (:data:`LOG_BUFFERS`)."""
        ranks = event_ranks(train)
        key = train.item.astype(np.int64) * (len(train) + 1) + ranks
        order = np.argsort(key, kind="stable")
        as_long = lambda a: torch.as_tensor(np.asarray(a, np.int64), device=device)  # noqa: E731
        return {"visit_indptr": as_long(np.concatenate([[0], np.cumsum(train.item_degree())])),
                "visit_key": as_long(key[order]), "visit_user": as_long(train.user[order]),
                "seq_indptr": as_long(np.concatenate([[0], np.cumsum(train.user_degree())])),
                "seq_rank": as_long(ranks[train.time_order()])}

    @property
    def n_events(self) -> int:
        """E, the training events; rank E stands for "after all of them" (inference)."""
        return len(self.visit_user)

    def visitors(self, items: torch.Tensor, cutoff: torch.Tensor, capacity: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """V_j: the last ``capacity`` visitors of items long [...] with global rank < cutoff
        long [...], oldest first → (users long [..., L], valid bool [..., L])."""
        start = self.visit_indptr[items]
        end = torch.searchsorted(self.visit_key, items * (self.n_events + 1) + cutoff)
        position = end[..., None] - capacity + torch.arange(capacity, device=items.device)
        valid = position >= start[..., None]
        if not self.n_events:
            return torch.zeros_like(position), valid
        return self.visit_user[position.clamp(0, self.n_events - 1)], valid

    def neighbours(self, users: torch.Tensor, recent: torch.Tensor, recent_mask: torch.Tensor,
                   cutoff: torch.Tensor, capacity: int) -> tuple[torch.Tensor, torch.Tensor]:
        """N_u: the visitors of the user's recent items long [..., c] before cutoff [...], the
        user itself left out → (ids long [..., c·L], valid bool [..., c·L]); users broadcast
        against [...] (an anonymous user, -1, is nobody's visitor: nothing is left out).
        Repeated co-visitors count once per shared item (no de-duplication)."""
        ids, valid = self.visitors(recent, cutoff[..., None].expand_as(recent), capacity)   # [..., c, L]
        valid = valid & recent_mask[..., None] & (ids != users[..., None, None])
        return ids.flatten(-2), valid.flatten(-2)

    def cutoffs(self, users: torch.Tensor, mask: torch.Tensor, training: bool) -> torch.Tensor:
        """Global rank of each position's event [B, T]: in training the history is the user's
        training sequence (NextItemTask), so buffers keep only events before it; outside training
        (and past a user's training events) E, the buffers frozen after training."""
        if not training or self.n_events == 0:
            return torch.full(mask.shape, self.n_events, dtype=torch.long, device=mask.device)
        start, end = self.seq_indptr[users], self.seq_indptr[users + 1]
        index = start[:, None] + torch.arange(mask.shape[1], device=mask.device)
        inside = index < end[:, None]
        return torch.where(inside, self.seq_rank[index.clamp(max=self.n_events - 1)], self.n_events)


def recent_windows(items: torch.Tensor, mask: torch.Tensor, c: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The last c items up to each position of a padded history [B, T] → [B, T, c] each."""
    padded, padded_mask = F.pad(items, (c - 1, 0)), F.pad(mask, (c - 1, 0))
    return padded.unfold(1, c, 1), padded_mask.unfold(1, c, 1)


def last_items(window: ItemWindow, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The last k items of a left-aligned window, right-aligned (oldest first, padding on the
    left, as in a prefix of the sequence) → (items long [B, k], mask bool [B, k])."""
    length = window.mask.sum(1)
    position = length[:, None] - k + torch.arange(k, device=length.device)
    valid = position >= 0
    if window.items.shape[1] == 0:
        return torch.zeros_like(position), valid & False
    items = window.items.gather(1, position.clamp(0, window.items.shape[1] - 1))
    return items * valid, valid


def history_windows(embedded: torch.Tensor, history: torch.Tensor, mask: torch.Tensor, capacity: int
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """H_u of every prefix of a padded history [B, T] (embedded [B, T, d]): its last W =
    min(capacity, T) items (q [B, T, W, d], a view of ``embedded``, and the items long [B, T, W];
    valid [B, T, W], age in steps [B, T, W]), oldest first. Only those can be read (the store
    holds H), so a retrieval sorts W entries per candidate, not the whole sequence (O(T·H), not T²)."""
    W = min(capacity, history.shape[1])
    q = F.pad(embedded, (0, 0, W - 1, 0)).unfold(1, W, 1).transpose(-1, -2)
    items = F.pad(history, (W - 1, 0)).unfold(1, W, 1)
    visible = F.pad(mask, (W - 1, 0)).unfold(1, W, 1)
    age = torch.arange(W - 1, -1, -1, device=history.device, dtype=torch.float32).expand(visible.shape)
    return q, items, visible, age


def window_ages(window: ItemWindow) -> torch.Tensor:
    """Steps back from the newest entry of each store [B, W] (its entries come first)."""
    length = window.mask.sum(1)
    steps = torch.arange(window.items.shape[1], device=window.items.device)
    return (length[:, None] - 1 - steps).float().clamp_min(0)


# -- the clock (spec B.3: Δ = t − t_last(u)) -----------------------------------------------------------
def mean_gap(train: Interactions) -> float:
    """The mean time between a user's consecutive training events, DEMN's unit of Δ (0: the
    events carry no time, or no user's events are apart in time). In this unit a user's history
    spans as many units on average as it has steps, so the timescales τ_s mean the same under
    either clock; time only moves the decay from bursts of events to the gaps between them."""
    times = train.sequence_times()
    if times is None or len(times) < 2:
        return 0.0
    starts = np.concatenate([[0], np.cumsum(train.user_degree())])
    same_user = np.ones(len(times) - 1, dtype=bool)
    same_user[starts[1:-1][(starts[1:-1] > 0) & (starts[1:-1] < len(times))] - 1] = False
    gaps = np.diff(times)[same_user]
    return float(gaps.mean()) if len(gaps) and gaps.mean() > 0 else 0.0


def time_dtype(device: torch.device) -> torch.dtype:
    """t_last(u)'s dtype: float64 (epoch seconds need it), float32 on MPS, which has no float64
    (a DEMN there counts steps: ``check_event_times`` refuses its time clock)."""
    return torch.float32 if torch.device(device).type == "mps" else torch.float64


def elapsed_units(times: torch.Tensor, last_time: torch.Tensor, unit: float) -> torch.Tensor:
    """Δ of each event of times float64 [B, T] since the event before it (the first: since
    last_time [B]), in ``unit`` (``mean_gap``) → float32 [B, T]. Where either time is unknown
    (NaN: no timestamp, no earlier event) Δ is 1, one average gap, what the step clock counts;
    an event stamped before its predecessor has Δ = 0 (no decay, never growth)."""
    before = torch.cat([last_time[:, None], times[:, :-1]], 1)
    delta = (times - before) / unit
    return torch.where(torch.isnan(delta), 1.0, delta.clamp_min(0)).float()


def last_times(times: torch.Tensor, mask: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """The time of each row's last event of right-padded times [B, T] (mask [B, T]), ``old`` [B]
    for a row with none (t_last(u) after the events)."""
    length = mask.sum(1)
    newest = times.gather(1, (length - 1).clamp_min(0)[:, None])[:, 0] if times.shape[1] else old
    return torch.where(length > 0, newest, old)


__all__ = ["LOG_BUFFERS", "EventLog", "event_ranks", "recent_windows", "last_items", "history_windows",
           "window_ages", "mean_gap", "time_dtype", "elapsed_units", "last_times"]
