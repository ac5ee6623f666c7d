"""``Query``: a batch of recommendation requests, what every model scores.

It lives below ``models`` (in ``data``) so that the ``nn`` helpers can take it too; models import
it from :mod:`memrec.models.base` as before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Query:
    """A batch of recommendation requests.

    Shapes
    ------
    users : long [B]
        User indices; -1 for an anonymous request (a live session).
    history : long [B, L]
        Each request's past items, oldest first, right-padded with 0.
    mask : bool [B, L]
        True where ``history`` holds a real item.

    times : float64 [B, L] or None
        When each history event happened (the data's unit; NaN: unknown), only for models that
        read the clock (``reads_times``: DEMN on timestamped data); None otherwise.

    Models that do not read histories (not a ``HistoryScorer``) get ``L == 0``.
    """

    users: torch.Tensor
    history: torch.Tensor
    mask: torch.Tensor
    times: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.users)

    def to(self, device) -> "Query":
        """The same requests on ``device``."""
        return Query(self.users.to(device), self.history.to(device), self.mask.to(device),
                     None if self.times is None else self.times.to(device))

    @classmethod
    def for_users(cls, users, device=None) -> "Query":
        """Requests of users that bring no history (the model reads its own record of them);
        a tensor of users keeps its device, other users go to ``device`` (None: the default)."""
        users = (users.long() if isinstance(users, torch.Tensor)
                 else torch.as_tensor(np.asarray(users), dtype=torch.long, device=device))
        empty = torch.zeros(len(users), 0, dtype=torch.long, device=users.device)
        return cls(users, empty, empty.bool())

    @classmethod
    def from_csr(cls, users, rows, indptr: np.ndarray, items: np.ndarray,
                 max_len: int | None = None, device=None, times: np.ndarray | None = None) -> "Query":
        """Histories ``items[indptr[r]:indptr[r+1]]`` for each ``r`` in ``rows``, keeping the most
        recent ``max_len`` items, on ``device`` (None: the default one), with their ``times``
        (float [N] aligned with ``items``; padding NaN) when given. Vectorised: no Python loop
        over requests."""
        rows = np.asarray(rows, dtype=np.int64)
        starts, ends = indptr[rows], indptr[rows + 1]
        lengths = ends - starts
        if max_len is not None:
            lengths = np.minimum(lengths, max_len)
            starts = ends - lengths
        width = int(lengths.max()) if len(rows) else 0
        offsets = np.arange(width)
        mask = offsets[None, :] < lengths[:, None]
        positions = np.where(mask, starts[:, None] + offsets[None, :], 0)
        history = np.where(mask, items[positions] if len(items) else 0, 0)
        when = None if times is None else torch.as_tensor(
            np.where(mask, times[positions] if len(times) else np.nan, np.nan), dtype=torch.float64, device=device)
        return cls(torch.as_tensor(np.asarray(users), dtype=torch.long, device=device),
                   torch.as_tensor(history, dtype=torch.long, device=device),
                   torch.as_tensor(mask, device=device), when)


__all__ = ["Query"]
