"""Negative samplers for training: uniform or popularity^α, never one of the user's positives.

Vectorised rejection sampling: draw for the whole batch, test membership of every (user, item)
draw against the sorted keys ``user · n_items + item`` of the training positives with one
``searchsorted``, redraw only the rejected entries. Randomness comes from a ``torch.Generator``
so a resumed run draws exactly what an uninterrupted one would.
"""

from __future__ import annotations

import numpy as np
import torch

from .data.interactions import Interactions


class NegativeSampler:
    """Sample items a user has not interacted with.

    Parameters
    ----------
    train : Interactions
        Positives to exclude.
    distribution : "uniform" | "popularity"
        Popularity samples item j ∝ count(j)^alpha.
    alpha : float
        Popularity exponent (0.75 as in word2vec is a common choice; 1 = raw popularity).
    only_seen_items : bool
        Never sample items without a training interaction (the CMN authors' sampler does this).
    max_rounds : int
        Rejection rounds before giving up on a user whose positives cover almost every item.
    """

    def __init__(self, train: Interactions, *, distribution: str = "uniform", alpha: float = 1.0,
                 only_seen_items: bool = False, max_rounds: int = 100):
        if distribution not in ("uniform", "popularity"):
            raise ValueError(f"unknown negative distribution {distribution!r} "
                             "(choose uniform or popularity)")
        self.n_items = train.n_items
        keys = train.user.astype(np.int64) * self.n_items + train.item
        self._positive_keys = torch.as_tensor(np.unique(keys))
        counts = torch.as_tensor(train.item_degree(), dtype=torch.float64)
        if distribution == "popularity":
            weights = counts.pow(alpha)
        else:
            weights = torch.ones(self.n_items, dtype=torch.float64)
        if only_seen_items:
            weights = weights * (counts > 0)
        if weights.sum() <= 0:
            raise ValueError("no item can be sampled as a negative")
        self.probabilities = weights / weights.sum()
        self._uniform = distribution == "uniform" and not only_seen_items
        self.max_rounds = max_rounds

    def _draw(self, n: int, generator: torch.Generator) -> torch.Tensor:
        if self._uniform:
            return torch.randint(self.n_items, (n,), generator=generator)
        return torch.multinomial(self.probabilities, n, replacement=True, generator=generator)

    def is_positive(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """bool, same shape: whether (user, item) is a training positive."""
        keys = users.long() * self.n_items + items.long()
        pos = torch.searchsorted(self._positive_keys, keys.reshape(-1)).clamp(
            max=max(len(self._positive_keys) - 1, 0))
        found = self._positive_keys[pos] == keys.reshape(-1) if len(self._positive_keys) else \
            torch.zeros(keys.numel(), dtype=torch.bool)
        return found.reshape(keys.shape)

    def sample(self, users: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
        """long [B, n] negatives for users long [B]."""
        users = users[:, None].expand(-1, n)
        items = self._draw(users.numel(), generator).reshape(users.shape)
        for _ in range(self.max_rounds):
            bad = self.is_positive(users, items)
            if not bad.any():
                return items
            items[bad] = self._draw(int(bad.sum()), generator)
        raise ValueError("could not sample negatives: some users interacted with almost every item")
