"""SKNN: session-based k-nearest neighbours.

Paper
-----
D. Jannach, M. Ludewig. "When Recurrent Neural Networks meet the Neighborhood for Session-Based
Recommendation." RecSys 2017. Evaluated against neural models in M. Ludewig, D. Jannach,
"Evaluation of Session-based Recommendation Algorithms", UMUAI 2018; reference code
``rn5l/session-rec`` (``algorithms/knn/sknn.py``, ``ContextKNN``).

Idea
----
A session is a set of items. The training sessions most similar to the current one are its
neighbours; an item scores the summed similarity of the neighbours that contain it. For speed
only the most recent training sessions sharing an item with the current one are candidates.

Equation map (s: the current session's distinct items, n: a training session's)
------------------------------------------------------------------------------
    candidates   = the ``sample_size`` most recent n with |s ∩ n| > 0        (session-rec "recent")
    sim(s, n)    = |s ∩ n| / sqrt(|s| · |n|)   (cosine)  or  |s ∩ n| / |s ∪ n|   (jaccard)
    N(s)         = the ``neighbours`` candidates of highest sim
    score(i | s) = Σ_{n ∈ N(s)} sim(s, n) · 1[i ∈ n]

Deviations from the paper
-------------------------
- session-rec's ``cosine`` computes ``li / sqrt(la) * sqrt(lb)`` (operator precedence: it
  multiplies by sqrt(|n|)); we compute the cosine the paper names, li / sqrt(la · lb).
- Ties between equally similar neighbours go to the more recent session (session-rec sorts a
  Python set: unspecified order).
- Items of the current session stay recommendable (session-rec's default, ``remind=False`` only
  adds a boost we leave out); scores are not divided by their maximum (``normalize`` does not
  change a ranking).
"""

from __future__ import annotations

import numpy as np

from .session_knn import CurrentSessions, NeighbourItems, Pairs, SessionNeighbourhood

SIMILARITIES = ("cosine", "jaccard")


class SKNN(SessionNeighbourhood):
    """Session-based kNN over binary session vectors.

    Parameters
    ----------
    n_users, n_items : int
    neighbours : int, default 100
        k nearest training sessions (session-rec's example configurations).
    sample_size : int, default 500
        The most recent candidate sessions searched (0: all).
    similarity : "cosine" | "jaccard"

    Shapes
    ------
    state: ItemWindow of the session's clicks; score_all: history [B, L] → [B, n_items]

    Example
    -------
    >>> import torch
    >>> from memrec.data.interactions import Interactions
    >>> from memrec.models.base import Query
    >>> train = Interactions.from_raw(user=[0, 0, 1, 1], item=[0, 1, 1, 2])
    >>> model = SKNN(train.n_users, train.n_items)
    >>> model.fit_closed_form(train)
    >>> q = Query(torch.tensor([-1]), torch.tensor([[1]]), torch.tensor([[True]]))
    >>> model.score_all(q)        # both sessions hold item 1: cosine 1/sqrt(2) each
    tensor([[0.7071, 1.4142, 0.7071]])
    """

    def __init__(self, n_users: int, n_items: int, *, neighbours: int = 100, sample_size: int = 500,
                 similarity: str = "cosine"):
        super().__init__(n_users, n_items, neighbours=neighbours, sample_size=sample_size)
        if similarity not in SIMILARITIES:
            raise ValueError(f"similarity must be one of {', '.join(SIMILARITIES)}, not {similarity!r}")
        self.similarity_name = similarity

    def current_weights(self, current: CurrentSessions) -> np.ndarray:
        return np.ones(len(current.item))                          # a set: every item counts 1

    def pair_similarity(self, current: CurrentSessions, candidates: Pairs) -> np.ndarray:
        shared = candidates.value                                   # |s ∩ n|
        size_s = current.distinct[candidates.row]
        size_n = np.diff(self.matrices()[0].indptr)[candidates.session]
        if self.similarity_name == "cosine":
            return shared / np.sqrt(size_s * size_n)
        return shared / (size_s + size_n - shared)

    def item_weights(self, current: CurrentSessions, neighbours: Pairs,
                     items: NeighbourItems) -> np.ndarray:
        return neighbours.value[items.pair]                         # each neighbour adds its sim


__all__ = ["SKNN", "SIMILARITIES"]
