"""RP3β: a three-step random walk on the user-item graph, re-weighted against popularity.

Paper
-----
B. Paudel, F. Christoffel, C. Newell, A. Bernstein. "Updatable, accurate, diverse, and scalable
recommendations for interactive applications." ACM TiiS 7(1), 2017 (P3α from C. Cooper, S. H. Lee,
T. Radzik, Y. Siantos, "Random walks in recommender systems: exact computation and simulations",
WWW 2014). Implemented as tuned by M. F. Dacrema, P. Cremonesi, D. Jannach, "Are we really making
much progress?", RecSys 2019 (``RP3betaRecommender``).

Idea
----
A walker starts at a user, steps to one of the user's items, to one of that item's users, then to
one of that user's items; the probability of ending on item ``j`` ranks ``j``. The item→user→item
part does not depend on the starting user, so it is precomputed as an item-item matrix ``W`` and
truncated to each item's top-k. Raising the transition probabilities to ``alpha`` sharpens or
flattens the walk; dividing by ``popularity(j)^beta`` counters the walk's pull toward popular
items, trading a little accuracy for much more diverse (long-tail) recommendations.

Equation map (X: binary user-item matrix [U, I]; deg(u) = Σ_j X_uj, pop(i) = Σ_u X_ui)
-----------------------------------------------------------------------------------------
    P_ui = X / deg(u)                   user → item transition, rows sum to 1
    P_iu = Xᵀ / pop(i)                  item → user transition
    W    = (P_iu ∘^α) (P_ui ∘^α)        item → user → item, elementwise power α   # P3α
    W_ij ← W_ij / pop(j)^β,  W_ii ← 0   popularity re-weighting                   # RP3β
    S    = top-k of each row of W       (then rows scaled to sum 1 if normalize_similarity)
    score(j) = Σ_{i ∈ history} S_ij = h S

With ``alpha = 1, beta = 0`` and no truncation, ``score(j) / deg(u)`` is the probability that the
three-step walk from ``u`` ends at ``j`` without going back through the item it started from
(the zeroed diagonal), i.e. ``(P_ui (P_iu P_ui − diag))_uj``; the factor ``deg(u)`` is per user and
does not change the ranking.

Reading of alpha
----------------
``alpha`` is applied elementwise to each one-step transition probability *after* row
normalisation and is not renormalised (``P_ui.power(alpha)``, ``P_iu.power(alpha)`` in Dacrema et
al.'s code; Cooper et al.'s P3α). For ``alpha ≠ 1`` the rows of ``P^α`` no longer sum to one. It is
*not* the elementwise power of the two-step product ``(P_iu P_ui)^α``.

Deviations from the paper
-------------------------
- Binary (implicit) data: ``X`` is the 0/1 matrix of :meth:`Interactions.user_items`.
- The popularity division is applied to ``W`` before top-k truncation (as Dacrema et al. do), not
  to final scores; without truncation the two give the same ranking.
- The first step ``u → i`` uses the history as an unnormalised indicator ``h`` (Dacrema et al.),
  which is what lets the model score anonymous sessions; ranking is unchanged (see above).
- Ties at the k-th place are broken by ``numpy.argpartition``; repeated history items count once.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from ...data.interactions import Interactions
from ..base import Query
from ..capabilities import AnonymousScorer, HistoryScorer
from ...nn.item_item import neighbour_scores, row_blocks, topk_rows


def _row_normalised(m: sp.csr_matrix) -> sp.csr_matrix:
    """Rows scaled to sum 1 (empty rows stay empty)."""
    sums = np.asarray(m.sum(axis=1)).ravel()
    inv = np.divide(1.0, sums, out=np.zeros_like(sums), where=sums > 0)
    return sp.csr_matrix(sp.diags(inv) @ m)


class RP3Beta(HistoryScorer, AnonymousScorer):
    """Popularity-penalised three-step random walk (RP3β), as an item-item top-k model.

    Parameters
    ----------
    n_users, n_items : int
        Data-derived sizes (``n_users`` is unused at scoring time: the model is item-based).
    alpha : float, default 1.0
        Elementwise power of the one-step transition probabilities (see the module docstring).
    beta : float, default 0.5
        Popularity exponent: column ``j`` of ``W`` is divided by ``popularity(j) ** beta``.
    neighbours : int, default 100
        ``k``: entries kept per row of ``W`` (capped at ``n_items``).
    normalize_similarity : bool, default False
        Rescale each truncated row of ``W`` to sum 1.

    Attributes (buffers, filled by :meth:`fit_closed_form`)
    -------------------------------------------------------
    neighbour_ids : long [n_items, k]
    neighbour_weights : float32 [n_items, k]
        Row ``i`` of the truncated ``W``: the k targets of item ``i`` and their weights, largest
        first (0 in unused slots).

    Shapes
    ------
    score_all : Query with history [B, L], mask [B, L] → float32 [B, n_items]

    Example
    -------
    >>> import torch
    >>> from memrec.data.interactions import Interactions
    >>> from memrec.models.base import Query
    >>> train = Interactions.from_raw(user=[0, 0, 1, 1, 2], item=[0, 1, 1, 2, 2])
    >>> model = RP3Beta(train.n_users, train.n_items, alpha=1.0, beta=0.5)
    >>> model.fit_closed_form(train)
    >>> session = Query(torch.tensor([-1]), torch.tensor([[1, 0]]), torch.tensor([[True, False]]))
    >>> model.score_all(session).shape   # an anonymous session that viewed item 1
    torch.Size([1, 3])
    """

    trainable = False

    seed_free = True                  # a closed form: no random draw

    def __init__(self, n_users: int, n_items: int, *, alpha: float = 1.0, beta: float = 0.5,
                 neighbours: int = 100, normalize_similarity: bool = False):
        super().__init__(n_users, n_items)
        if neighbours < 1:
            raise ValueError(f"neighbours must be >= 1, got {neighbours}")
        if alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.neighbours = int(neighbours)
        self.normalize_similarity = bool(normalize_similarity)
        k = min(self.neighbours, n_items)
        self.register_buffer("neighbour_ids", torch.zeros(n_items, k, dtype=torch.long))
        self.register_buffer("neighbour_weights", torch.zeros(n_items, k, dtype=torch.float32))

    def fit_closed_form(self, train: Interactions) -> None:
        x = train.user_items().astype(np.float64)                     # X [U, I], binary
        if x.shape[1] != self.n_items:
            raise ValueError(f"train has {x.shape[1]} items, model was built for {self.n_items}")
        p_ui = _row_normalised(x)                                     # P_ui [U, I]
        p_iu = _row_normalised(sp.csr_matrix(x.T))                    # P_iu [I, U]
        if self.alpha != 1.0:                                         # P3α: p ↦ p^α
            p_ui = p_ui.power(self.alpha)
            p_iu = p_iu.power(self.alpha)
        pop = np.asarray(x.sum(axis=0)).ravel()
        col_scale = np.zeros_like(pop)                                # pop(j)^-β, 0 if unseen
        np.power(pop, -self.beta, out=col_scale, where=pop > 0)
        k = self.neighbour_ids.shape[1]
        ids = np.zeros((self.n_items, k), dtype=np.int64)
        vals = np.zeros((self.n_items, k), dtype=np.float64)
        for start, stop in row_blocks(self.n_items, self.n_items):
            w = (p_iu[start:stop] @ p_ui).toarray()                   # W rows [R, I]
            w *= col_scale[None, :]                                   # RP3β: / pop(j)^β
            w[np.arange(stop - start), np.arange(start, stop)] = 0.0  # W_ii = 0
            ids[start:stop], vals[start:stop] = topk_rows(w, k)
        if self.normalize_similarity:
            sums = vals.sum(axis=1, keepdims=True)
            vals = np.divide(vals, sums, out=np.zeros_like(vals), where=sums > 0)
        self.neighbour_ids.copy_(torch.from_numpy(ids))
        self.neighbour_weights.copy_(torch.from_numpy(vals.astype(np.float32)))

    def score_all(self, query: Query) -> torch.Tensor:
        return neighbour_scores(query, self.neighbour_ids, self.neighbour_weights)  # h S
