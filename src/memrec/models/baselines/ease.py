"""EASE^R: an embarrassingly shallow linear autoencoder with a closed-form solution.

Paper
-----
H. Steck. "Embarrassingly Shallow Autoencoders for Sparse Data." WWW 2019.

Idea
----
Learn one item-item weight matrix ``B`` that reconstructs each user's interaction row from the
*other* items of that row: ``X ≈ X B``. Forbidding self-reconstruction (``diag(B) = 0``) is what
keeps ``B`` from collapsing to the identity; an L2 penalty does the rest. The constrained ridge
problem has a closed form in terms of ``P = (XᵀX + λI)⁻¹``, so fitting is one matrix inversion of
size ``n_items²`` and the learned ``B`` is dense (weights may be negative).

Equation map (X: binary user-item matrix [U, I])
------------------------------------------------
    min_B ‖X − X B‖²_F + λ ‖B‖²_F   s.t. diag(B) = 0      the training objective
    G    = XᵀX + λ I                                         Algorithm 1
    P    = G⁻¹                                               Algorithm 1
    B_ij = − P_ij / P_jj  (i ≠ j),  B_jj = 0                 Algorithm 1 (the closed form)
    score(j) = (h B)_j,   h: binary history [I]              the model: S_u· = X_u· B

(Algorithm 1 of the paper is a few lines of NumPy; ``fit_closed_form`` follows it line by line.)

Deviations from the paper
-------------------------
- Solved in float64 (Cholesky inverse, in place), stored as float32.
- The history ``h`` can be any item set (an anonymous session) rather than a training row of
  ``X``; repeated items count once.
- Refuses ``n_items > max_items`` (default 30 000): ``G``, ``P`` and ``B`` are dense
  ``n_items²`` matrices (30 000 items ≈ 7.2 GB per float64 copy).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from scipy.linalg import lapack

from ...data.interactions import Interactions
from ..base import Query
from ..capabilities import AnonymousScorer, HistoryScorer
from ...nn.item_item import row_blocks, sparse_history


class EASE(HistoryScorer, AnonymousScorer):
    """EASE^R: dense item-item weights with zero diagonal, fitted in closed form.

    Parameters
    ----------
    n_users, n_items : int
        Data-derived sizes (``n_users`` is unused at scoring time: the model is item-based).
    l2 : float, default 500.0
        ``λ``, the L2 penalty on ``B`` (Steck tunes it per dataset, typically 100 – 1000s).

    Attributes (buffers, filled by :meth:`fit_closed_form`)
    -------------------------------------------------------
    weights : float32 [n_items, n_items]
        ``B``; ``weights[i, j]`` is how much having item ``i`` raises the score of item ``j``.

    Shapes
    ------
    score_all : Query with history [B, L], mask [B, L] → float32 [B, n_items]

    Example
    -------
    >>> import torch
    >>> from memrec.data.interactions import Interactions
    >>> from memrec.models.base import Query
    >>> train = Interactions.from_raw(user=[0, 0, 1, 1, 2], item=[0, 1, 1, 2, 2])
    >>> model = EASE(train.n_users, train.n_items, l2=500.0)
    >>> model.fit_closed_form(train)
    >>> session = Query(torch.tensor([-1]), torch.tensor([[1, 0]]), torch.tensor([[True, False]]))
    >>> model.score_all(session).shape   # an anonymous session that viewed item 1
    torch.Size([1, 3])
    """

    trainable = False

    seed_free = True                  # a closed form: no random draw
    #: largest item count accepted (the dense n_items² buffers)
    max_items: ClassVar[int] = 30_000

    def __init__(self, n_users: int, n_items: int, *, l2: float = 500.0):
        super().__init__(n_users, n_items)
        if n_items > self.max_items:
            gib = n_items**2 * 8 / 2**30
            raise ValueError(
                f"EASE needs dense n_items x n_items matrices; {n_items} items would take "
                f"{gib:.1f} GiB per float64 copy (limit {self.max_items} items). "
                "Filter rare items first or use ItemKNN / RP3beta.")
        if l2 < 0:
            raise ValueError(f"l2 must be >= 0, got {l2}")
        self.l2 = float(l2)
        self.register_buffer("weights", torch.zeros(n_items, n_items, dtype=torch.float32))

    def fit_closed_form(self, train: Interactions) -> None:
        x = train.user_items().astype(np.float64)                       # X [U, I], binary
        if x.shape[1] != self.n_items:
            raise ValueError(f"train has {x.shape[1]} items, model was built for {self.n_items}")
        xt = x.T.tocsr()
        g = np.empty((self.n_items, self.n_items))                      # XᵀX [I, I], by bands
        for start, stop in row_blocks(self.n_items, self.n_items):      # (no sparse n² copy)
            g[start:stop] = (xt[start:stop] @ x).toarray()
        g[np.diag_indices_from(g)] += self.l2                           # G = XᵀX + λI
        p = _spd_inverse_inplace(g)                                     # P = G⁻¹
        p /= -np.diag(p)[None, :]                                       # B = −P_ij / P_jj
        np.fill_diagonal(p, 0.0)                                        # diag(B) = 0
        self.weights.copy_(torch.from_numpy(p))                         # float64 → float32

    def score_all(self, query: Query) -> torch.Tensor:
        return torch.sparse.mm(sparse_history(query, self.n_items), self.weights)  # h B


def _spd_inverse_inplace(g: np.ndarray) -> np.ndarray:
    """Inverse of a symmetric positive definite C-ordered float64 matrix, overwriting it.

    Cholesky (LAPACK potrf + potri) is about twice as fast as a general inverse and, run on the
    Fortran-ordered view ``g.T`` (= g), works in place: one n_items² float64 matrix in memory.
    """
    chol, info = lapack.dpotrf(g.T, lower=False, overwrite_a=True, clean=False)
    if info != 0:
        raise ValueError(f"XᵀX + l2·I is not positive definite (LAPACK info {info}); use l2 > 0")
    inv, info = lapack.dpotri(chol, lower=False, overwrite_c=True)
    if info != 0:
        raise ValueError(f"inverting XᵀX + l2·I failed (LAPACK info {info})")
    p = inv.T                              # C-ordered view; its lower triangle holds the inverse
    n = p.shape[0]
    for start, stop in row_blocks(n, n):   # mirror the lower triangle into the upper, by bands
        diag = p[start:stop, start:stop]
        diag[...] = np.tril(diag) + np.tril(diag, -1).T
        p[start:stop, stop:] = p[stop:, start:stop].T
    return p
