"""GMF: the generalised matrix factorisation used to pretrain CMN's memories.

He et al. "Neural Collaborative Filtering." WWW 2017 (GMF); in the pairwise form of the CMN
authors' ``pretrain.py``: score = ReLU(wᵀ(p_u ⊙ q_i)), trained with BPR.

Deviations from the paper: NCF's GMF has a sigmoid output trained with log loss; the CMN
authors' pretraining (which this reproduces) uses a ReLU on the scalar and a pairwise BPR loss.
L2 applies to w only, as in their code (``parameter_groups``).
"""

from __future__ import annotations

import torch
from torch import nn

from .base import Model, Query


class GMF(Model):
    """Pairwise GMF scorer.

    Parameters
    ----------
    n_users, n_items : int
    dim : int
        Latent size (50 for CMN's pretraining).
    init_std : float

    Shapes
    ------
    score_items: users [B], items [B, C] → [B, C]

    Example
    -------
    >>> GMF(3, 4, dim=2).score_all(Query.for_users([0, 2])).shape
    torch.Size([2, 4])
    """

    def __init__(self, n_users: int, n_items: int, *, dim: int = 50, init_std: float = 0.01):
        super().__init__(n_users, n_items)
        self.user_embedding = nn.Embedding(n_users, dim)
        self.item_embedding = nn.Embedding(n_items, dim)
        nn.init.trunc_normal_(self.user_embedding.weight, std=init_std, a=-2 * init_std, b=2 * init_std)
        nn.init.trunc_normal_(self.item_embedding.weight, std=init_std, a=-2 * init_std, b=2 * init_std)
        self.w = nn.Linear(dim, 1, bias=False)

    def parameter_groups(self, weight_decay: float) -> list[dict]:
        """L2 on w only (the CMN authors' pretraining)."""
        return [{"params": [self.w.weight], "weight_decay": weight_decay},
                {"params": [self.user_embedding.weight, self.item_embedding.weight], "weight_decay": 0.0}]

    def score_items(self, query: Query, items: torch.Tensor) -> torch.Tensor:
        product = self.user_embedding(query.users)[:, None, :] * self.item_embedding(items)
        return torch.relu(self.w(product).squeeze(-1))

    def score_all(self, query: Query) -> torch.Tensor:
        weighted = self.user_embedding(query.users) * self.w.weight       # [B, d]
        return torch.relu(weighted @ self.item_embedding.weight.T)
