"""FPMC: factorising personalised Markov chains for next-basket/next-item recommendation.

Rendle, Freudenthaler, Schmidt-Thieme. "Factorizing Personalized Markov Chains for Next-Basket
Recommendation." WWW 2010.

The score of item i for user u whose previous basket is B_{t-1} adds a matrix-factorisation term
and a factorised first-order transition term (the paper's eq. 5, pairwise interactions only):

    x̂(u, t, i) = ⟨v_u^{U,I}, v_i^{I,U}⟩ + 1/|B_{t-1}| Σ_{l ∈ B_{t-1}} ⟨v_i^{I,L}, v_l^{L,I}⟩

trained with S-BPR (BPR over the (u, t) baskets: :func:`memrec.losses.bpr` with sampled
negatives). With one item per event, as in every sequential benchmark (and RecBole's FPMC), the
previous basket is the previous item. The state is that item; a user with no history gets the MF
term only (an empty basket contributes nothing).

Deviations from the paper: mini-batches and Adam instead of per-triple SGD (as RecBole); the
paper's U–L term is dropped as in the paper itself (it cancels in pairwise ranking).
"""

from __future__ import annotations

import torch
from torch import nn

from dataclasses import dataclass

from ...memory.state import TensorState
from ..capabilities import HistoryScorer, NextItemPairwise, StatefulScorer


@dataclass(frozen=True)
class LastItem(TensorState):
    """FPMC's state: the previous item. last long [B], has_last bool [B] (False: no event yet)."""

    last: torch.Tensor
    has_last: torch.Tensor
    memory_field = "last"

    def entries(self) -> torch.Tensor:
        return self.last[:1][self.has_last[:1]]


class FPMC(StatefulScorer, HistoryScorer, NextItemPairwise):
    """FPMC with baskets of one item.

    Parameters
    ----------
    n_users, n_items : int
    dim : int
        Factor size of all four tables.
    init_std : float
        Normal init std.

    Shapes
    ------
    state: :class:`LastItem` (last item long [B], has_last bool [B])
    prefix_scores: history [B, L], candidates [B, L, C] → [B, L, C]
    """

    state_type = LastItem

    def __init__(self, n_users: int, n_items: int, *, dim: int = 64, init_std: float = 0.1):
        super().__init__(n_users, n_items)
        self.user_item = nn.Embedding(n_users, dim)    # v^{U,I}_u
        self.item_user = nn.Embedding(n_items, dim)    # v^{I,U}_i
        self.item_last = nn.Embedding(n_items, dim)    # v^{I,L}_i
        self.last_item = nn.Embedding(n_items, dim)    # v^{L,I}_l
        for table in (self.user_item, self.item_user, self.item_last, self.last_item):
            nn.init.normal_(table.weight, std=init_std)

    def init_state(self, users):
        return LastItem(torch.zeros_like(users), torch.zeros_like(users, dtype=torch.bool))

    def update(self, state, items):
        return LastItem(items, torch.ones_like(items, dtype=torch.bool))

    def encode(self, users, history, mask):
        length = mask.sum(1)
        last = history.gather(1, (length - 1).clamp_min(0)[:, None])[:, 0] if history.shape[1] \
            else torch.zeros_like(users)
        return LastItem(last, length > 0)

    def _transition(self, last: torch.Tensor, has_last: torch.Tensor) -> torch.Tensor:
        """v_l^{L,I}, zero without a previous item. → [B, d]"""
        return self.last_item(last) * has_last[:, None]

    def score_state(self, state, users, items=None):
        u, l = self.user_item(users), self._transition(state.last, state.has_last)
        if items is None:
            return u @ self.item_user.weight.T + l @ self.item_last.weight.T
        return (u[:, None] * self.item_user(items)).sum(-1) + (l[:, None] * self.item_last(items)).sum(-1)

    def prefix_scores(self, users, history, mask, candidates):
        u = self.user_item(users)[:, None, None, :]                        # [B, 1, 1, d]
        l = (self.last_item(history) * mask[..., None])[:, :, None, :]     # position t's item is "last"
        return (u * self.item_user(candidates)).sum(-1) + (l * self.item_last(candidates)).sum(-1)
