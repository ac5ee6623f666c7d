"""V-SKNN: vector multiplication session-based kNN.

Paper
-----
M. Ludewig, D. Jannach. "Evaluation of Session-based Recommendation Algorithms." User Modeling and
User-Adapted Interaction 28, 2018 (V-SKNN, section 3.2); reference code ``rn5l/session-rec``
(``algorithms/knn/vsknn.py``, ``VMContextKNN``, default options).

Idea
----
SKNN with order: the current session is a real-valued vector whose later clicks weigh more, so
neighbours that share the *recent* clicks are nearer; and a neighbour's items count less when
the most recent click it shares with the current session lies further back.

Equation map (s: the current session, l its clicks counting repeats, p(i) the 1-based position
of item i's last click in s)
----------------------------------------------------------------------------------------------
    w(i)         = p(i) / l                        linear decay of the positions   (``div``)
    sim(s, n)    = Σ_{i ∈ s ∩ n} w(i) / |s|         |s| distinct items              (``vec``)
    N(s)         = the ``neighbours`` most similar of the ``sample_size`` most recent
                   sessions sharing an item with s
    step(s, n)   = l − max_{i ∈ s ∩ n} p(i) + 1     clicks back to the last shared one
    score(i | s) = Σ_{n ∈ N(s)} sim(s, n) / step(s, n) · 1[i ∈ n]              (``div_score``)

Deviations from the paper
-------------------------
- Ties between equally similar neighbours go to the more recent session (session-rec: a
  Python set's order). Scores are not divided by their maximum (``normalize``: the same ranking).
- Only session-rec's default decay functions (``weighting="div"``, ``weighting_score="div"``);
  no dwelling time, IDF weighting or reminders (all off by default there).
"""

from __future__ import annotations

import numpy as np

from .session_knn import CurrentSessions, NeighbourItems, Pairs, SessionNeighbourhood


class VSKNN(SessionNeighbourhood):
    """Session kNN with linearly decaying position weights and a recency decay of the scores.

    Parameters
    ----------
    n_users, n_items : int
    neighbours : int, default 100
    sample_size : int, default 500

    Shapes
    ------
    state: ItemWindow of the session's clicks; score_all: history [B, L] → [B, n_items]

    Example
    -------
    >>> import torch
    >>> from memrec.data.interactions import Interactions
    >>> from memrec.models.base import Query
    >>> train = Interactions.from_raw(user=[0, 0, 1, 1], item=[0, 1, 1, 2])
    >>> model = VSKNN(train.n_users, train.n_items)
    >>> model.fit_closed_form(train)
    >>> q = Query(torch.tensor([-1]), torch.tensor([[0, 1]]), torch.tensor([[True, True]]))
    >>> model.score_all(q)[0, 2]      # session 1 shares item 1 (w = 2/2) over |s| = 2 → 0.5
    tensor(0.5000)
    """

    def current_weights(self, current: CurrentSessions) -> np.ndarray:
        return current.position / current.length[current.row]       # p(i) / l

    def pair_similarity(self, current: CurrentSessions, candidates: Pairs) -> np.ndarray:
        return candidates.value / current.distinct[candidates.row]  # Σ w(i) / |s|

    def item_weights(self, current: CurrentSessions, neighbours: Pairs,
                     items: NeighbourItems) -> np.ndarray:
        latest_shared = items.pair_max(items.in_current)            # max p(i) over s ∩ n, per pair
        step = current.length[neighbours.row] - latest_shared + 1
        return (neighbours.value / step)[items.pair]


__all__ = ["VSKNN"]
