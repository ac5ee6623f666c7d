"""ItemKNN: item-based top-k nearest neighbours with shrunk cosine similarity.

Paper
-----
B. Sarwar, G. Karypis, J. Konstan, J. Riedl. "Item-based collaborative filtering recommendation
algorithms." WWW 2001. The top-N scoring rule (sum the neighbour lists of the basket items) is
M. Deshpande, G. Karypis, "Item-based top-N recommendation algorithms", ACM TOIS 2004; the shrunk
cosine and the defaults follow the tuned baseline of M. F. Dacrema, P. Cremonesi, D. Jannach,
"Are we really making much progress? A worrying analysis of recent neural recommendation
approaches", RecSys 2019.

Idea
----
Two items are similar when the same users interacted with both. Each item keeps only its ``k``
most similar items; a user (or an anonymous session) scores a candidate by summing the candidate's
similarity to every item in the history. Nothing is learned by gradient descent: fitting is one
sparse product ``XᵀX`` computed in blocks of rows.

Equation map (X: binary user-item matrix [U, I], x_i its column i)
------------------------------------------------------------------
    c_ij     = x_i · x_j                                  co-occurrence count   (Xᵀ X)
    sim(i,j) = c_ij / (‖x_i‖ ‖x_j‖ + shrink),  sim(i,i)=0 shrunk cosine          # Sarwar §3.1.1
    S[i, j]  = sim(i,j) if j ∈ topk_j sim(i, ·) else 0   neighbour lists         # D&K model
    score(j) = Σ_{i ∈ history} S[i, j]  =  h S          h: binary history [I]   # D&K top-N

Deviations from the paper
-------------------------
- Binary (implicit) data only: ``x_i`` is the 0/1 column of :meth:`Interactions.user_items`,
  so ``‖x_i‖ = sqrt(popularity(i))``. Sarwar et al. also study adjusted cosine on ratings.
- Shrinkage ``+ shrink`` in the denominator is not in Sarwar et al.; it is the usual
  regularisation of Dacrema et al.'s implementation (which also adds 1e-6; we guard 0/0 instead).
- Top-k is kept per *source* item ``i`` (row of ``S``), as in Deshpande & Karypis. Dacrema et al.'s
  ``Compute_Similarity`` keeps the top-k per *target* column; the two coincide without truncation.
- Ties at the k-th place are broken by ``numpy.argpartition`` (unspecified but deterministic).
- Repeated items in a history count once (the history is a set, as in the paper's basket).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from ...data.interactions import Interactions
from ...nn.item_item import neighbour_scores, row_blocks, topk_rows
from ..base import Query
from ..capabilities import AnonymousScorer, HistoryScorer


class ItemKNN(HistoryScorer, AnonymousScorer):
    """Item-based k-nearest-neighbours with shrunk cosine similarity.

    Parameters
    ----------
    n_users, n_items : int
        Data-derived sizes (``n_users`` is unused at scoring time: the model is item-based).
    neighbours : int, default 100
        ``k``: neighbours kept per item (capped at ``n_items``).
    shrink : float, default 10.0
        Added to the cosine denominator; damps similarities supported by few users.

    Attributes (buffers, filled by :meth:`fit_closed_form`)
    -------------------------------------------------------
    neighbour_ids : long [n_items, k]
        ``neighbour_ids[i]``: the k items most similar to ``i``, most similar first.
    neighbour_weights : float32 [n_items, k]
        Their similarities (0 in slots past the item's real neighbours).

    Shapes
    ------
    score_all : Query with history [B, L], mask [B, L] → float32 [B, n_items]

    Example
    -------
    >>> import torch
    >>> from memrec.data.interactions import Interactions
    >>> from memrec.models.base import Query
    >>> train = Interactions.from_raw(user=[0, 0, 1, 1, 2], item=[0, 1, 1, 2, 2])
    >>> model = ItemKNN(train.n_users, train.n_items, neighbours=50, shrink=10.0)
    >>> model.fit_closed_form(train)
    >>> session = Query(torch.tensor([-1]), torch.tensor([[1, 0]]), torch.tensor([[True, False]]))
    >>> model.score_all(session).shape   # an anonymous session that viewed item 1
    torch.Size([1, 3])
    """

    trainable = False

    seed_free = True                  # a closed form: no random draw

    def __init__(self, n_users: int, n_items: int, *, neighbours: int = 100, shrink: float = 10.0):
        super().__init__(n_users, n_items)
        if neighbours < 1:
            raise ValueError(f"neighbours must be >= 1, got {neighbours}")
        if shrink < 0:
            raise ValueError(f"shrink must be >= 0, got {shrink}")
        self.neighbours = int(neighbours)
        self.shrink = float(shrink)
        k = min(self.neighbours, n_items)
        self.register_buffer("neighbour_ids", torch.zeros(n_items, k, dtype=torch.long))
        self.register_buffer("neighbour_weights", torch.zeros(n_items, k, dtype=torch.float32))

    def fit_closed_form(self, train: Interactions) -> None:
        x = train.user_items().astype(np.float64)                     # X [U, I], binary
        if x.shape[1] != self.n_items:
            raise ValueError(f"train has {x.shape[1]} items, model was built for {self.n_items}")
        xt = sp.csr_matrix(x.T)                                       # Xᵀ [I, U]
        norms = np.sqrt(np.asarray(x.sum(axis=0)).ravel())            # ‖x_i‖ [I]
        k = self.neighbour_ids.shape[1]
        ids = np.zeros((self.n_items, k), dtype=np.int64)
        vals = np.zeros((self.n_items, k), dtype=np.float32)
        for start, stop in row_blocks(self.n_items, self.n_items):
            co = (xt[start:stop] @ x).toarray()                       # c_ij [R, I]
            denom = norms[start:stop, None] * norms[None, :] + self.shrink
            sim = np.divide(co, denom, out=np.zeros_like(co), where=denom > 0)  # shrunk cosine
            sim[np.arange(stop - start), np.arange(start, stop)] = 0.0          # sim(i, i) = 0
            ids[start:stop], block_vals = topk_rows(sim, k)
            vals[start:stop] = block_vals
        self.neighbour_ids.copy_(torch.from_numpy(ids))
        self.neighbour_weights.copy_(torch.from_numpy(vals))

    def score_all(self, query: Query) -> torch.Tensor:
        return neighbour_scores(query, self.neighbour_ids, self.neighbour_weights)  # h S
