"""Training losses as pure functions of scores.

Every loss takes the scores of positive items ``pos`` [B] and of sampled or all other items and
returns a scalar mean over the batch. Models never compute losses; the trainer picks one by
name from :data:`LOSSES`.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F


def bpr(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Bayesian Personalised Ranking (Rendle et al. 2009): −log σ(s⁺ − s⁻), mean over all
    (positive, negative) pairs. pos [B], neg [B, N]."""
    return -F.logsigmoid(pos[:, None] - neg).mean()


def bce(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy with sampled negatives (NCF): positives labelled 1, negatives 0,
    each positive weighted like its N negatives together. pos [B], neg [B, N]."""
    return -(F.logsigmoid(pos) + F.logsigmoid(-neg).sum(1)).mean()


def hinge(pos: torch.Tensor, neg: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """Pairwise hinge: max(0, margin − s⁺ + s⁻), mean over pairs. pos [B], neg [B, N]."""
    return F.relu(margin - pos[:, None] + neg).mean()


def sampled_softmax(pos: torch.Tensor, neg: torch.Tensor,
                    log_q_pos: torch.Tensor | None = None,
                    log_q_neg: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax cross-entropy over the positive and N sampled negatives (Jean et al. 2015).

    With the sampler's log-probabilities ``log_q`` the logits are corrected by −log q so the
    estimate is unbiased for the full softmax (Bengio & Senécal); without them the negatives are
    taken as uniform and the correction is a constant that cancels.
    """
    logits = torch.cat([pos[:, None], neg], dim=1)
    if log_q_pos is not None and log_q_neg is not None:
        logits = logits - torch.cat([log_q_pos[:, None], log_q_neg], dim=1)
    return -F.log_softmax(logits, dim=1)[:, 0].mean()


def bpr_max(pos: torch.Tensor, neg: torch.Tensor, regularization: float = 1.0) -> torch.Tensor:
    """BPR-max (Hidasi & Karatzoglou, CIKM 2018, eq. 8): the BPR terms weighted by the softmax
    of the negatives' scores, plus a score regulariser on the same weights,

        −log Σ_j s_j σ(r⁺ − r_j) + λ Σ_j s_j r_j²,   s = softmax(r_neg)

    so the hardest negatives dominate the gradient. pos [B], neg [B, N]."""
    weights = torch.softmax(neg, dim=1)
    ranking = (weights * torch.sigmoid(pos[:, None] - neg)).sum(1)
    return (-torch.log(ranking + 1e-24) + regularization * (weights * neg.pow(2)).sum(1)).mean()


def softmax_cross_entropy(all_scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Full softmax cross-entropy over every item. all_scores [B, n_items], target long [B]."""
    return F.cross_entropy(all_scores, target)


def negative_log_likelihood(log_probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean −log p(target) of scores that are log-probabilities already (a model's mixture, such
    as the copy read's): no softmax over them. log_probs [B, n_items], target long [B]."""
    return F.nll_loss(log_probs, target)


PAIRWISE_LOSSES = {"bpr": bpr, "bce": bce, "hinge": hinge, "sampled_softmax": sampled_softmax,
                   "bpr_max": bpr_max}
"""Losses on (positive, sampled negatives) score pairs, by config name."""



def pairwise_loss(name: str, *, margin: float = 1.0, bpr_max_reg: float = 1.0):
    """The pairwise loss ``name`` with its option bound: (pos [B], neg [B, N]) → scalar."""
    loss = PAIRWISE_LOSSES[name]
    if name == "hinge":
        return partial(loss, margin=margin)
    if name == "bpr_max":
        return partial(loss, regularization=bpr_max_reg)
    return loss
