"""Popularity: rank items by their number of training interactions.

The baseline every paper reports. Not personalised; ties (items with equal counts) are left as
ties, and the metrics resolve them as an exact expectation over random tie-breaking.

Deviations from the paper: none (there is no paper; count-based popularity as in RecBole and
Cornac).
"""

from __future__ import annotations

import numpy as np
import torch

from ...data.interactions import Interactions
from ..base import Query
from ..capabilities import AnonymousScorer


class Popularity(AnonymousScorer):
    """Score of item j = number of training interactions with j (duplicates counted once per
    user when ``distinct_users``).

    Parameters
    ----------
    n_users, n_items : int
    distinct_users : bool
        Count users who interacted with the item rather than interaction rows.

    Shapes
    ------
    score_all: query [B] → [B, n_items] (the same row for every request)

    Example
    -------
    >>> model = Popularity(n_users=3, n_items=4)
    >>> model.fit_closed_form(train)          # doctest: +SKIP
    """

    trainable = False

    seed_free = True                  # a closed form: no random draw

    def __init__(self, n_users: int, n_items: int, *, distinct_users: bool = False):
        super().__init__(n_users, n_items)
        self.distinct_users = distinct_users
        self.register_buffer("counts", torch.zeros(n_items))

    def fit_closed_form(self, train: Interactions) -> None:
        if self.distinct_users:
            counts = np.asarray(train.user_items().sum(0)).ravel()
        else:
            counts = train.item_degree()
        self.counts.copy_(torch.as_tensor(counts, dtype=torch.float32))

    def score_all(self, query: Query) -> torch.Tensor:
        return self.counts.expand(len(query), -1)

    def score_items(self, query: Query, items: torch.Tensor) -> torch.Tensor:
        return self.counts[items]
