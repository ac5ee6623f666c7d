"""TF1-style RMSProp (optionally with lazy row-sparse updates), as the CMN authors trained with.

PyTorch's ``RMSprop`` differs from TensorFlow 1's ``RMSPropOptimizer`` in three ways that matter
for embedding-heavy models trained for many epochs:

1. TF starts the mean-square accumulator at **1**, PyTorch at 0 (so PyTorch's first steps are
   ~1/√(1−ρ) ≈ 3× larger);
2. TF puts ε **inside** the square root;
3. for an embedding lookup TF receives ``IndexedSlices`` and updates only the **rows that were
   looked up**: untouched rows keep their accumulators and momentum frozen. PyTorch's dense
   update decays every row's accumulator and keeps moving every row by its momentum.

This optimizer does what TF does. Dense gradients get the ordinary update; sparse gradients
(``nn.Embedding(sparse=True)``) update only their rows:

    ms  ← ρ·ms + (1 − ρ)·g²
    mom ← μ·mom + lr · g / √(ms + ε)
    θ   ← θ − mom
"""

from __future__ import annotations

import torch


class TFRMSprop(torch.optim.Optimizer):
    """RMSProp with TensorFlow 1 semantics (ones-initialised mean square, ε inside the root,
    lazy row updates for sparse gradients).

    Parameters
    ----------
    lr, decay (ρ), momentum (μ), eps (ε), weight_decay (L2 added to dense gradients; sparse
    gradients are embedding rows, which TF-style recipes do not regularise — a non-zero
    ``weight_decay`` on a sparse parameter is an error), initial_mean_square (TF: 1; 0 keeps
    only the lazy-row semantics, with PyTorch's start).
    """

    def __init__(self, params, lr: float = 1e-3, decay: float = 0.9, momentum: float = 0.0,
                 eps: float = 1e-10, weight_decay: float = 0.0, initial_mean_square: float = 1.0):
        super().__init__(params, dict(lr=lr, decay=decay, momentum=momentum, eps=eps,
                                      weight_decay=weight_decay))
        self.initial_mean_square = initial_mean_square

    def _state(self, p: torch.Tensor) -> dict:
        state = self.state[p]
        if not state:
            state["mean_square"] = torch.full_like(p, self.initial_mean_square)
            state["momentum"] = torch.zeros_like(p)
        return state

    @torch.no_grad()
    def step(self, closure=None):
        loss = None if closure is None else closure()
        for group in self.param_groups:
            lr, rho, mu, eps, wd = (group[k] for k in ("lr", "decay", "momentum", "eps", "weight_decay"))
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self._state(p)
                ms, mom = state["mean_square"], state["momentum"]
                grad = p.grad
                if grad.is_sparse:
                    if wd:
                        raise ValueError("weight_decay on a sparse (embedding) parameter is not supported")
                    grad = grad.coalesce()
                    rows, g = grad.indices()[0], grad.values()
                    ms_rows = ms[rows].mul_(rho).addcmul_(g, g, value=1 - rho)
                    mom_rows = mom[rows].mul_(mu).add_(lr * g / (ms_rows + eps).sqrt())
                    ms[rows] = ms_rows
                    mom[rows] = mom_rows
                    p[rows] -= mom_rows
                else:
                    self._dense_step(p, grad, ms, mom, lr, rho, mu, eps, wd)
        return loss

    @staticmethod
    def _dense_step(p, grad, ms, mom, lr, rho, mu, eps, wd) -> None:
        """mom ← μ·mom + (lr·g) / √(ms + ε), the same operations in the same order as written
        out (so the same bits: addcdiv computes (value·t1)/t2), with one temporary: with dense embedding
        gradients every row of every table takes this step each batch, so at small batches it
        is most of a step's time."""
        if wd:
            grad = grad.add(p, alpha=wd)
        ms.mul_(rho).addcmul_(grad, grad, value=1 - rho)
        denom = ms.add(eps).sqrt_()
        mom.mul_(mu).addcdiv_(grad, denom, value=lr)    # (lr·g)/denom, evaluated in that order
        p.sub_(mom)
