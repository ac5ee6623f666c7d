"""Beyond-accuracy metrics of top-K lists: catalogue coverage, Gini, novelty, popularity.

The accuracy metrics (:mod:`memrec.metrics`) ask whether each request's held-out items rank
high; these ask what the top-K lists expose as a whole, the numbers RecBole and Cornac users
compare beside them. With C catalogue items, ``e_i`` the number of top-K lists holding item i,
``n_i`` the number of training users who have item i and N the number of training users:

* **Coverage@K** = |{i : e_i > 0}| / C — the share of the catalogue some list recommends;
* **Gini@K** = Σ_j (2j − C − 1) · e_(j) / (C · Σ_i e_i), with e sorted ascending (j = 1..C) —
  0 when every item is recommended equally often, (C − 1)/C when one item takes every slot;
* **Novelty@K** = Σ_i e_i · (−log2 p_i) / Σ_i e_i, p_i = n_i / N — the mean self-information of
  a recommended item, in bits (an item no training user has counts as n_i = 1, so its novelty is
  the largest possible, log2 N, not infinite);
* **AvgPop@K** = Σ_i e_i · n_i / Σ_i e_i — the mean training popularity of a recommended item.

Ties at the cut are scored as in :mod:`memrec.metrics`, as the exact expectation over a uniformly
random tie-breaking: when s slots of a list are left for a group of g candidates tied at the K-th
score, each of them is in the list with probability s / g. ``e`` is then the expected exposure, so
novelty and AvgPop (linear in e) are exact expectations; coverage is the exact expected coverage
(1 − P(no list holds i), from the per-list probabilities, independent across lists); Gini is the
Gini of the expected exposure. A model without ties at the cut gets the plain values.

A candidate scored −inf is not ranked (the full-ranking protocol so marks the user's known
items), so a request with fewer than K ranked candidates contributes a shorter list.

Lists are never stored: :class:`ExposureAccumulator` adds each batch's expected exposure to one
vector per K (plus, for coverage, which items some list holds for certain and the log of the
probability that no other list holds them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

CATALOGUE_METRICS = ("Coverage", "Gini", "Novelty", "AvgPop")
"""Reported at every cutoff K, for the protocols that rank the whole catalogue."""


@dataclass(frozen=True, eq=False)
class Exposure:
    """What a set of top-K lists exposes, per catalogue item (all float64/bool [C], on CPU).

    ``counts`` — expected number of lists holding the item; ``certain`` — some list holds it
    whatever the tie-breaking; ``log_miss`` — Σ over the other lists of log P(list lacks it).
    """

    counts: torch.Tensor
    certain: torch.Tensor
    log_miss: torch.Tensor

    @classmethod
    def zeros(cls, n_items: int) -> "Exposure":
        return cls(torch.zeros(n_items, dtype=torch.float64), torch.zeros(n_items, dtype=torch.bool),
                   torch.zeros(n_items, dtype=torch.float64))

    def add_(self, other: "Exposure") -> "Exposure":
        self.counts.add_(other.counts)
        self.certain.logical_or_(other.certain)
        self.log_miss.add_(other.log_miss)
        return self


def top_k_exposure(scores: torch.Tensor, ks: tuple[int, ...]) -> dict[int, Exposure]:
    """The exposure of each request's top-K list, summed over the batch, for every K in ``ks``.

    Parameters
    ----------
    scores : float [B, C]
        Scores over the whole catalogue; −inf marks a candidate that is not ranked.
    ks : cutoffs.

    One ``topk`` per batch finds every cut; only the lists with a tie at the cut (the K-th and
    (K+1)-th scores equal) take the dense pass over their row that shares the tied slots.
    """
    n_items = scores.shape[1]
    top = scores.topk(min(max(ks) + 1, n_items), dim=1)
    return {k: _exposure_at(scores, top.values, top.indices, min(k, n_items)) for k in ks}


def _exposure_at(scores: torch.Tensor, values: torch.Tensor, indices: torch.Tensor,
                 k: int) -> Exposure:
    out = Exposure.zeros(scores.shape[1])
    kth = values[:, k - 1]
    tie = torch.zeros_like(kth, dtype=torch.bool) if k == values.shape[1] else (
        (values[:, k] == kth) & (kth > float("-inf")))
    # lists without a tie at the cut: their ranked top-k items are in, for certain
    clear = ~tie
    listed = indices[clear, :k][values[clear, :k] > float("-inf")].cpu()
    out.counts.index_add_(0, listed, torch.ones(len(listed), dtype=torch.float64))
    out.certain[listed] = True
    if tie.any():
        rows, cut = scores[tie], kth[tie, None]
        above, tied = rows > cut, rows == cut
        # the group holds more candidates than the slots left (the (K+1)-th ties), so 0 < share < 1
        share = (k - above.sum(1)).double() / tied.sum(1).double()
        tied = tied.double()
        out.counts.add_((above.sum(0).double() + share @ tied).cpu())
        out.certain.logical_or_(above.any(0).cpu())
        out.log_miss.add_((torch.log1p(-share) @ tied).cpu())
    return out


# -- the metrics, from a finished exposure ---------------------------------------------------------
def coverage(exposure: Exposure) -> float:
    """Expected share of the catalogue that at least one list holds."""
    held = torch.where(exposure.certain, torch.ones_like(exposure.log_miss),
                       -torch.expm1(exposure.log_miss))
    return float(held.mean())


def gini(counts: torch.Tensor) -> float:
    """Gini coefficient of the exposure over the catalogue (0 for no exposure at all)."""
    total = float(counts.sum())
    if total == 0:
        return 0.0
    n = len(counts)
    rank = torch.arange(1, n + 1, dtype=torch.float64)
    return float(((2 * rank - n - 1) * counts.double().sort().values).sum() / (n * total))


def novelty(counts: torch.Tensor, popularity: np.ndarray, n_users: int) -> float:
    """Mean −log2(n_i / N) of the recommended items; n_i = 0 counts as 1."""
    info = -np.log2(np.maximum(popularity, 1) / n_users)
    return _mean_over_exposure(counts, info)


def average_popularity(counts: torch.Tensor, popularity: np.ndarray) -> float:
    """Mean training popularity n_i of the recommended items."""
    return _mean_over_exposure(counts, popularity.astype(np.float64))


def _mean_over_exposure(counts: torch.Tensor, values: np.ndarray) -> float:
    weights = counts.double().numpy()
    total = weights.sum()
    return float(weights @ values / total) if total > 0 else float("nan")


def catalogue_metrics(exposures: dict[int, Exposure], popularity: np.ndarray,
                      n_users: int) -> dict[str, float]:
    """``{"Coverage@10": ..., "Gini@10": ..., "Novelty@10": ..., "AvgPop@10": ...}`` for every K."""
    out = {}
    for k, e in exposures.items():
        out[f"Coverage@{k}"] = coverage(e)
        out[f"Gini@{k}"] = gini(e.counts)
        out[f"Novelty@{k}"] = novelty(e.counts, popularity, n_users)
        out[f"AvgPop@{k}"] = average_popularity(e.counts, popularity)
    return out


def item_popularity(user_items) -> tuple[np.ndarray, int]:
    """(n_i per item, N) from a binary user × item CSR matrix of training interactions: how many
    training users have each item, and how many users have any."""
    n_items = user_items.shape[1]
    popularity = np.bincount(user_items.indices, minlength=n_items).astype(np.int64)
    return popularity, int(np.count_nonzero(np.diff(user_items.indptr)))


class ExposureAccumulator:
    """Sums the top-K exposure of every batch of score rows; :meth:`metrics` reports the
    catalogue metrics at each K."""

    def __init__(self, n_items: int, ks: tuple[int, ...]):
        self.ks = tuple(ks)
        self.exposures = {k: Exposure.zeros(n_items) for k in self.ks}

    def add(self, scores: torch.Tensor) -> None:
        for k, e in top_k_exposure(scores, self.ks).items():
            self.exposures[k].add_(e)

    def merge_(self, world) -> None:
        """Add every rank's exposures (a :class:`memrec.distributed.World`; one process: no-op)."""
        from .distributed import all_reduce_sum
        for e in self.exposures.values():
            for tensor in (e.counts, e.certain, e.log_miss):
                tensor.copy_(all_reduce_sum(tensor, world))

    def metrics(self, popularity: np.ndarray, n_users: int) -> dict[str, float]:
        return catalogue_metrics(self.exposures, popularity, n_users)


__all__ = ["CATALOGUE_METRICS", "Exposure", "ExposureAccumulator", "top_k_exposure", "coverage",
           "gini", "novelty", "average_popularity", "catalogue_metrics", "item_popularity"]
