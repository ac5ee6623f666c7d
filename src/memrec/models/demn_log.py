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


__all__ = ["LOG_BUFFERS", "EventLog", "event_ranks", "recent_windows", "last_items"]
