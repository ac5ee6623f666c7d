"""BPR-MF: matrix factorisation trained with Bayesian Personalised Ranking.

Rendle, Freudenthaler, Gantner, Schmidt-Thieme. "BPR: Bayesian Personalized Ranking from
Implicit Feedback." UAI 2009.

Each user u and item i get a d-dimensional vector; the preference score is their inner product
(eq. 5's x̂_ui = ⟨w_u, h_i⟩, optionally plus an item bias). The BPR criterion (eq. 8) lives in
:func:`memrec.losses.bpr`, the sampling of (u, i, j) triples in the trainer; the regularisation
λ‖Θ‖² is the optimizer's weight decay or ``l2`` applied by the trainer.

Deviations from the paper: the paper trains by SGD with bootstrap sampling of single triples;
we use mini-batches of triples and any optimizer (Adam by default), as RecBole, Cornac and
implicit do. The optional item bias is not in the paper's MF form (it is in its kNN/MF
discussion as a common extension); it is off by default.
"""

from __future__ import annotations

import torch
from torch import nn

from ..base import Query, Model


class BPRMF(Model):
    """Matrix factorisation scorer.

    Parameters
    ----------
    n_users, n_items : int
    dim : int
        Latent dimension d.
    item_bias : bool
        Add a learned per-item bias to every score.
    init_std : float
        Standard deviation of the normal initialisation (Rendle's reference code uses 0.1;
        RecBole uses Xavier; small values keep early BPR gradients balanced).

    Shapes
    ------
    score_all: query users [B] → [B, n_items]; score_items: items [B, C] → [B, C]

    Example
    -------
    >>> model = BPRMF(n_users=10, n_items=20, dim=8)
    >>> model.score_all(Query.for_users([0, 3])).shape
    torch.Size([2, 20])
    """

    def __init__(self, n_users: int, n_items: int, *, dim: int = 64, item_bias: bool = False,
                 init_std: float = 0.1):
        super().__init__(n_users, n_items)
        self.user_embedding = nn.Embedding(n_users, dim)
        self.item_embedding = nn.Embedding(n_items, dim)
        nn.init.normal_(self.user_embedding.weight, std=init_std)
        nn.init.normal_(self.item_embedding.weight, std=init_std)
        self.item_bias = nn.Parameter(torch.zeros(n_items)) if item_bias else None

    def score_all(self, query: Query) -> torch.Tensor:
        scores = self.user_embedding(query.users) @ self.item_embedding.weight.T  # eq. (5)
        return scores if self.item_bias is None else scores + self.item_bias

    def score_items(self, query: Query, items: torch.Tensor) -> torch.Tensor:
        users = self.user_embedding(query.users)[:, None, :]        # [B, 1, d]
        scores = (users * self.item_embedding(items)).sum(-1)       # [B, C]
        return scores if self.item_bias is None else scores + self.item_bias[items]
