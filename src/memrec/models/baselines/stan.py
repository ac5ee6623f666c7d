"""STAN: sequence- and time-aware neighbourhood.

Paper
-----
D. Garg, P. Gupta, P. Malhotra, L. Vig, G. Shroff. "Sequence and Time Aware Neighborhood for
Session-based Recommendations: STAN." SIGIR 2019. Reference code: ``rn5l/session-rec``
(``algorithms/knn/stan.py``), whose defaults we take (λ1 = 1.02, λ2 = 5 days, λ3 = 2.05).

Idea
----
SKNN with three decays: recent clicks of the current session weigh more (λ1), recent training
sessions weigh more (λ2), and in a neighbour the items clicked close to the item it shares with
the current session weigh more (λ3).

Equation map (s: the current session, l its clicks, p(i, s) the 1-based position of item i's last
click in s; n a training session, t(n) its time)
-----------------------------------------------------------------------------------------------
    w1(i | s)    = exp((p(i, s) − l) / λ1)                                          factor 1
    sim1(s, n)   = Σ_{i ∈ s ∩ n} w1(i | s) / (sqrt(Σ_{i ∈ s} w1(i | s)²) · sqrt(|n|))
    w2(n | s)    = exp(−(t(s) − t(n)) / λ2),  sim2 = sim1 · w2                      factor 2
    N(s)         = the ``neighbours`` of highest sim2 among the ``sample_size`` most recent
                   sessions sharing an item with s
    p*(n)        = max_{i ∈ s ∩ n} p(i, n)     the last click of n on an item of s
    w3(i | s, n) = exp(−|p(i, n) − p*(n)| / λ3)                                      factor 3
    score(i | s) = Σ_{n ∈ N(s)} sim2(s, n) · w3(i | s, n) · 1[i ∈ n]

A λ of None switches its factor off (weight 1), as in session-rec.

Deviations from the paper
-------------------------
- t(s), the current session's time: requests carry no timestamps, so every current session is
  taken to happen at the end of the training data (the latest training session's time). λ2 is
  in days of timestamp *seconds* (× 86 400); on data whose timestamps are not seconds (the
  SR-GNN session files: a click counter) it acts on those units instead.
- p*(n) follows session-rec (the last click in n on any item of s). Ties between equally
  similar neighbours go to the more recent session.
"""

from __future__ import annotations

import numpy as np

from .session_knn import CurrentSessions, NeighbourItems, Pairs, SessionNeighbourhood

SECONDS_PER_DAY = 86_400.0


class STAN(SessionNeighbourhood):
    """Sequence- and time-aware session neighbourhood.

    Parameters
    ----------
    n_users, n_items : int
    neighbours : int, default 100
    sample_size : int, default 500
    lambda1 : float or None, default 1.02
        Position decay of the current session's clicks (session-rec ``lambda_spw``).
    lambda2 : float or None, default 5.0
        Age decay of neighbour sessions, in days (session-rec ``lambda_snh``).
    lambda3 : float or None, default 2.05
        Decay with the distance to the shared item inside a neighbour (``lambda_inh``).

    Shapes
    ------
    state: ItemWindow of the session's clicks; score_all: history [B, L] → [B, n_items]

    Example
    -------
    >>> import torch
    >>> from memrec.data.interactions import Interactions
    >>> from memrec.models.base import Query
    >>> train = Interactions.from_raw(user=[0, 0, 1, 1], item=[0, 1, 1, 2])
    >>> model = STAN(train.n_users, train.n_items, lambda2=None)
    >>> model.fit_closed_form(train)
    >>> q = Query(torch.tensor([-1]), torch.tensor([[1]]), torch.tensor([[True]]))
    >>> model.score_all(q).shape
    torch.Size([1, 3])
    """

    def __init__(self, n_users: int, n_items: int, *, neighbours: int = 100, sample_size: int = 500,
                 lambda1: float | None = 1.02, lambda2: float | None = 5.0,
                 lambda3: float | None = 2.05):
        super().__init__(n_users, n_items, neighbours=neighbours, sample_size=sample_size)
        for name, value in (("lambda1", lambda1), ("lambda2", lambda2), ("lambda3", lambda3)):
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive (or None: no decay), got {value}")
        self.lambda1, self.lambda2, self.lambda3 = lambda1, lambda2, lambda3

    def current_weights(self, current: CurrentSessions) -> np.ndarray:
        if self.lambda1 is None:
            return np.ones(len(current.item))
        return np.exp((current.position - current.length[current.row]) / self.lambda1)   # w1

    def pair_similarity(self, current: CurrentSessions, candidates: Pairs) -> np.ndarray:
        w1 = self.current_weights(current)
        norm_s = np.sqrt(np.bincount(current.row, weights=w1 ** 2, minlength=len(current.length)))
        size_n = np.diff(self.matrices()[0].indptr)[candidates.session]
        sim = candidates.value / (norm_s[candidates.row] * np.sqrt(size_n))               # sim1
        if self.lambda2 is None:
            return sim
        age = self.latest_time() - self.session_time.cpu().numpy()[candidates.session]
        return sim * np.exp(-age / (self.lambda2 * SECONDS_PER_DAY))                     # · w2

    def item_weights(self, current: CurrentSessions, neighbours: Pairs,
                     items: NeighbourItems) -> np.ndarray:
        sim = neighbours.value[items.pair]
        if self.lambda3 is None:
            return sim
        shared_position = np.where(items.in_current > 0, items.position, 0)
        anchor = items.pair_max(shared_position)[items.pair]                             # p*(n)
        return sim * np.exp(-np.abs(items.position - anchor) / self.lambda3)             # · w3


__all__ = ["STAN"]
