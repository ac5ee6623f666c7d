"""Repeat-by-recency: the session's own items, most recent first, then the most popular items.

The trivial ranking that measures how far re-clicks go in session data: a next click is often an
item the session already holds (26.6 % of the Yoochoose 1/64 test cases, 20.5 % on Diginetica),
and the most recently clicked is the most likely. There is no paper; it is the "repeat" half of
RepeatNet's decision (Ren et al., AAAI 2019) with popularity as the "explore" half, and the
re-click boost session-rec's kNN models call ``remind``.

Equation map (p(i) the 1-based position of item i's last click in the session of l clicks;
c(i) its training interactions)
-------------------------------------------------------------------------------------------
    score(i | s) = 1 + p(i) / l                  i ∈ s       (in (1, 2]: above every other item)
    score(i | s) = c(i) / (max_j c(j) + 1)       i ∉ s       (in [0, 1): popularity order)

Deviations from the paper: none (there is no paper).
"""

from __future__ import annotations

import torch

from ...data.interactions import Interactions
from ..session_memory import SessionWindow


class SessionRecency(SessionWindow):
    """The session's items by recency of their last click, then the rest by popularity.

    Parameters
    ----------
    n_users, n_items : int
        ``n_users`` is unused: scores depend on the session's clicks (and popularity) only.

    Shapes
    ------
    state: ItemWindow of the session's clicks; score_all: history [B, L] → [B, n_items]

    Example
    -------
    >>> from memrec.data.interactions import Interactions
    >>> from memrec.models.base import Query
    >>> train = Interactions.from_raw(user=[0, 0, 1], item=[0, 1, 1])
    >>> model = SessionRecency(train.n_users, train.n_items)
    >>> model.fit_closed_form(train)
    >>> model.score_all(Query(torch.tensor([-1]), torch.tensor([[0]]), torch.tensor([[True]])))
    tensor([[2.0000, 0.6667]])
    """

    trainable = False

    seed_free = True                  # a closed form: no random draw

    def __init__(self, n_users: int, n_items: int):
        super().__init__(n_users, n_items)
        self.register_buffer("counts", torch.zeros(n_items))

    def fit_closed_form(self, train: Interactions) -> None:
        self.counts.copy_(torch.as_tensor(train.item_degree(), dtype=torch.float32))

    def prepare(self, train: Interactions) -> None:
        self.fit_closed_form(train)             # popularity is its only data-derived state

    def window_scores(self, items: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        fill = self.counts / (self.counts.max() + 1)                       # [0, 1): below repeats
        scores = fill.expand(len(items), -1).clone()
        length = mask.sum(1, keepdim=True).clamp_min(1)
        recency = 1 + mask.cumsum(1) / length                              # 1 + p / l, in (1, 2]
        recency = torch.where(mask, recency.to(scores.dtype), scores.new_zeros(()))
        # an item clicked twice keeps its last (largest) position; padding (0) never wins over
        # the popularity fill of item 0, which is below 1
        return scores.scatter_reduce(1, items, recency, reduce="amax", include_self=True)


__all__ = ["SessionRecency"]
