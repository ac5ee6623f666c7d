"""Top-K ranking metrics, computed from ranks, exact under ties.

A scorer may give several candidates the same score (popularity does, a constant scorer gives
every item the same). Breaking those ties by item id or position silently rewards or punishes a
model, so every metric here is the **exact expectation over a uniformly random tie-breaking**: a
constant scorer gets the random ranker's value, not 0 or 1.

Everything rests on four counts per relevant item ``i`` of a request, all over the request's
valid candidates (``RankCounts``):

* ``above``      p — candidates scored strictly higher than i
* ``tied``       g — candidates scored exactly as i, i included
* ``rel_above``  m — relevant candidates scored strictly higher than i
* ``rel_tied``   h — relevant candidates scored exactly as i, i included

Under random tie-breaking i's rank is uniform on p+1 … p+g, so linear metrics (Recall,
Precision, DCG) follow from sums over that range; HR and MRR depend only on the best-scored
relevant tie group, and AP on the hypergeometric count of relevant items ahead of i inside its
group. Formulas are derived in the docstrings; ``tests/test_metrics.py`` checks each one against
a brute-force average over all tie-breaking permutations.

All functions are vectorised over a batch of requests ``[B]`` and relevant slots ``[B, T]``
(padded; ``relevant_mask`` says which slots are real).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

METRICS = ("HR", "Recall", "Precision", "NDCG", "MRR", "MAP")
"""Metrics reported at every cutoff K; ``AUC`` is reported once, without a cutoff."""


@dataclass(frozen=True)
class RankCounts:
    """Tie-aware rank counts of the relevant items of a batch of requests.

    Shapes: ``above``, ``tied``, ``rel_above``, ``rel_tied``, ``relevant_mask`` [B, T];
    ``n_candidates``, ``n_relevant`` [B]. Counts are float64 so the formulas stay exact.
    """

    above: torch.Tensor
    tied: torch.Tensor
    rel_above: torch.Tensor
    rel_tied: torch.Tensor
    relevant_mask: torch.Tensor
    n_candidates: torch.Tensor
    n_relevant: torch.Tensor


def rank_counts(scores: torch.Tensor, relevant: torch.Tensor, relevant_mask: torch.Tensor,
                excluded: torch.Tensor | None = None, *, n_candidates: torch.Tensor | None = None,
                method: str = "auto") -> RankCounts:
    """Count, for each relevant candidate, how many valid candidates outscore or tie it.

    Parameters
    ----------
    scores : float [B, C]
        Candidate scores; higher is better.
    relevant : long [B, T]
        Column indices (into ``scores``) of each request's relevant candidates; padding slots
        may hold any index and are ignored via ``relevant_mask``.
    relevant_mask : bool [B, T]
    excluded : bool [B, C], optional
        Candidates that are not ranked at all (the user's training items in full ranking, padding
        in a sampled candidate list). A relevant candidate must not be excluded.
    n_candidates : float [B], optional
        Number of ranked candidates when the caller has already set unranked candidates to
        −inf (then ``excluded`` is not needed; the full-ranking protocol does this).
    method : "auto" | "compare" | "sort"
        ``compare`` counts with one pass over the scores per relevant slot, O(B·C·T): the fast
        path for few relevant items (leave-one-out: T = 1). ``sort`` sorts each row once and
        binary-searches, O(B·C·log C + B·T·log C): better for many relevant items per request.
        ``auto`` compares when T ≤ 8. Both give identical counts. The counts among the
        relevant items themselves always sort: O(T log T) per request.
    """
    if torch.isnan(scores.sum()) and torch.isnan(scores).any():  # the sum is one cheap pass
        raise ValueError("the model produced NaN scores")
    if excluded is not None and (excluded.gather(1, relevant) & relevant_mask).any():
        raise ValueError("a relevant candidate is also marked excluded")
    width = scores.shape[1]
    if n_candidates is not None:
        n_candidates = n_candidates.double()
    elif excluded is not None:
        n_candidates = (width - excluded.sum(1)).double()
    else:
        n_candidates = torch.full((scores.shape[0],), float(width), dtype=torch.float64)
    target = scores.gather(1, relevant)
    if method == "auto":
        method = "compare" if relevant.shape[1] <= 8 else "sort"
    if method == "compare":
        above, tied = _counts_by_comparison(scores, target, excluded)
    elif method == "sort":
        above, tied = _counts_by_sorting(scores, target, excluded)
    else:
        raise ValueError(f"unknown method {method!r}")
    real = relevant_mask
    rel_above, rel_tied = _relevant_counts(target, real)
    return RankCounts(above.double(), tied.double(), rel_above.double(), rel_tied.double(), real,
                      n_candidates, real.sum(1).double())


def _counts_by_comparison(scores, target, excluded) -> tuple[torch.Tensor, torch.Tensor]:
    """(#valid candidates scored >, #valid candidates scored ==) per relevant slot, one pass of
    exact comparisons in the scores' own dtype per slot (no sort, no float64 copy). On the CPU
    the comparisons and counts run in NumPy on zero-copy views: its comparison kernels and
    ``count_nonzero`` take about half of torch's time on a full-ranking batch."""
    cpu = scores.device.type == "cpu" and scores.dtype in (torch.float32, torch.float64)
    values = scores.numpy() if cpu else scores
    valid = None if excluded is None else (~excluded).numpy() if cpu else ~excluded
    above = torch.empty(target.shape, dtype=torch.long)
    tied = torch.empty(target.shape, dtype=torch.long)
    for t in range(target.shape[1]):
        column = target[:, t:t + 1].numpy() if cpu else target[:, t:t + 1]
        greater, equal = values > column, values == column
        if valid is not None:
            greater, equal = greater & valid, equal & valid
        above[:, t] = _count_true(greater)
        tied[:, t] = _count_true(equal)
    return above, tied


def _count_true(flags) -> torch.Tensor:
    """Row counts of a bool [B, C] array (NumPy on the CPU, else a tensor)."""
    if isinstance(flags, np.ndarray):
        return torch.from_numpy(np.count_nonzero(flags, axis=1))
    return flags.sum(1).cpu()


def _counts_by_sorting(scores, target, excluded) -> tuple[torch.Tensor, torch.Tensor]:
    """The same counts from one sort per row and two binary searches per relevant slot."""
    if excluded is not None:
        scores = scores.masked_fill(excluded, float("-inf"))
    ascending = scores.sort(dim=1).values
    width = scores.shape[1]
    not_below = width - torch.searchsorted(ascending, target, right=False)  # score >= target
    above = width - torch.searchsorted(ascending, target, right=True)       # score >  target
    return above, not_below - above


def _relevant_counts(target, real) -> tuple[torch.Tensor, torch.Tensor]:
    """(#real relevant slots scored >, #real relevant slots scored ==) per relevant slot, padding
    slots neither counting nor counted: one sort of each request's relevant scores and two
    binary searches per slot, O(T log T) time and O(T) memory per request (comparing all pairs
    needed a [B, T, T] tensor: gigabytes for a full-ranking batch with a heavy user).

    Padding goes to −∞ so it sorts below every real score; it can never be strictly above a
    score, and it ties only a score of −∞, where the padding count is taken off again.
    """
    lowest = float("-inf")
    ascending = target.masked_fill(~real, lowest).sort(dim=1).values
    at_most = torch.searchsorted(ascending, target, right=True)                # slots scored <= target
    below = torch.searchsorted(ascending, target, right=False)                 # slots scored <  target
    padding = (~real).sum(1, keepdim=True)
    rel_tied = at_most - below - padding * (target == lowest)
    return target.shape[1] - at_most, rel_tied


def _discount_prefix(n: int) -> torch.Tensor:
    """D[r] = Σ_{k=1..r} 1/log2(k+1), D[0] = 0 (cumulative DCG discounts)."""
    ranks = torch.arange(1, n + 1, dtype=torch.float64)
    return torch.cat([torch.zeros(1, dtype=torch.float64), (1.0 / torch.log2(ranks + 1)).cumsum(0)])


def _harmonic_prefix(n: int) -> torch.Tensor:
    """H[r] = Σ_{k=1..r} 1/k, H[0] = 0."""
    ranks = torch.arange(1, n + 1, dtype=torch.float64)
    return torch.cat([torch.zeros(1, dtype=torch.float64), (1.0 / ranks).cumsum(0)])


def _log_comb(n: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """log C(n, k) for real tensors, -inf where k < 0 or k > n."""
    valid = (k >= 0) & (k <= n)
    n_, k_ = n.clamp(min=0), k.clamp(min=0)
    out = torch.lgamma(n_ + 1) - torch.lgamma(k_ + 1) - torch.lgamma((n_ - k_).clamp(min=0) + 1)
    return torch.where(valid, out, torch.full_like(out, float("-inf")))


def _best_group(c: RankCounts) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(p, g, h) of the best-scored relevant tie group of each request (the items with m = 0)."""
    key = torch.where(c.relevant_mask, c.above, torch.full_like(c.above, float("inf")))
    slot = key.argmin(1, keepdim=True)
    return (c.above.gather(1, slot).squeeze(1), c.tied.gather(1, slot).squeeze(1),
            c.rel_tied.gather(1, slot).squeeze(1))


def hit_rate(c: RankCounts, k: int) -> torch.Tensor:
    """P(at least one relevant item in the top k).

    Only the best relevant group can reach the top k: with s = clip(k − p, 0, g) of its g slots
    inside the cutoff, HR = 1 − C(g − h, s) / C(g, s) (no relevant item among the s drawn).
    """
    p, g, h = _best_group(c)
    s = (k - p).clamp(min=0).minimum(g)
    hit = s / g.clamp(min=1)                 # h = 1 (the usual case): C(g−1, s) / C(g, s) = 1 − s/g
    several = h > 1
    if several.any():                        # log-binomials only for groups holding several
        miss = torch.exp(_log_comb(g[several] - h[several], s[several]) - _log_comb(g[several], s[several]))
        hit[several] = 1.0 - miss
    return hit


def _hit_probability(c: RankCounts, k: int) -> torch.Tensor:
    """Per relevant item: P(rank ≤ k) = clip(k − p, 0, g) / g. [B, T]"""
    inside = (k - c.above).clamp(min=0).minimum(c.tied)
    return torch.where(c.relevant_mask, inside / c.tied.clamp(min=1), torch.zeros_like(inside))


def recall(c: RankCounts, k: int) -> torch.Tensor:
    """E[#relevant in top k] / #relevant."""
    return _hit_probability(c, k).sum(1) / c.n_relevant


def precision(c: RankCounts, k: int) -> torch.Tensor:
    """E[#relevant in top k] / k."""
    return _hit_probability(c, k).sum(1) / k


def ndcg(c: RankCounts, k: int) -> torch.Tensor:
    """E[DCG@k] / IDCG@k with binary gains.

    Item i's expected discount is (D[min(p+g, k)] − D[min(p, k)]) / g with D the cumulative
    discount; IDCG@k = D[min(#relevant, k)].
    """
    d = _discount_prefix(k)                  # every index below is clamped to ≤ k
    lo = c.above.clamp(max=k).long()
    hi = (c.above + c.tied).clamp(max=k).long()
    gain = (d[hi] - d[lo]) / c.tied.clamp(min=1)
    gain = torch.where(c.relevant_mask, gain, torch.zeros_like(gain))
    ideal = d[c.n_relevant.clamp(max=k).long()]
    return gain.sum(1) / ideal


def mrr(c: RankCounts, k: int) -> torch.Tensor:
    """E[1 / rank of the first relevant item], 0 when it falls below k.

    In the best relevant group (p, g, h) the first relevant position j ∈ 1..g−h+1 has
    P(j) = C(g − j, h − 1) / C(g, h); sum P(j) / (p + j) over p + j ≤ k.
    """
    p, g, h = _best_group(c)
    # h = 1 (the usual case): j is uniform on 1..g, so the sum is (H[p + Q] − H[p]) / g with
    # Q = clip(k − p, 0, g) positions inside the cutoff
    harmonic = _harmonic_prefix(k)
    reach = (p + (k - p).clamp(min=0).minimum(g)).clamp(max=k).long()
    out = (harmonic[reach] - harmonic[p.clamp(max=k).long()]) / g.clamp(min=1)
    several = h > 1
    if several.any():                        # the hypergeometric sum only where it is needed
        out[several] = _mrr_of_groups(p[several], g[several], h[several], k)
    return out


def _mrr_of_groups(p: torch.Tensor, g: torch.Tensor, h: torch.Tensor, k: int) -> torch.Tensor:
    """Σ_j P(j) / (p + j) over p + j ≤ k, P(j) = C(g − j, h − 1) / C(g, h), for groups [G]."""
    j = torch.arange(1, k + 1, dtype=torch.float64)[None, :]
    log_p = _log_comb(g[:, None] - j, h[:, None] - 1) - _log_comb(g, h)[:, None]
    inside = (p[:, None] + j) <= k
    terms = torch.where(inside, torch.exp(log_p) / (p[:, None] + j), torch.zeros_like(log_p))
    return terms.sum(1)


def average_precision(c: RankCounts, k: int) -> torch.Tensor:
    """E[AP@k], AP@k = Σ_{relevant i, rank ≤ k} precision@rank(i) / min(#relevant, k).

    Item i sits at group position q uniform on 1..Q (Q = clip(k − p, 0, g) positions inside the
    cutoff); given q, the expected number of other relevant group members ahead of it is
    (h − 1)(q − 1)/(g − 1). Summing (1 + m + (h−1)(q−1)/(g−1)) / (p + q) over q with harmonic
    numbers H gives ((1 + m)·S + (h−1)/(g−1)·(Q − (p+1)·S)) / g, S = H[p+Q] − H[p].
    """
    harmonic = _harmonic_prefix(k)
    p, g, h, m = c.above, c.tied, c.rel_tied, c.rel_above
    q_max = (k - p).clamp(min=0).minimum(g)
    # p + q_max ≤ k when p < k; when p ≥ k, q_max = 0 and s = 0: indices clamped to ≤ k
    s = harmonic[(p + q_max).clamp(max=k).long()] - harmonic[p.clamp(max=k).long()]
    spread = torch.where(g > 1, (h - 1) / (g - 1).clamp(min=1), torch.zeros_like(g))
    term = ((1 + m) * s + spread * (q_max - (p + 1) * s)) / g.clamp(min=1)
    term = torch.where(c.relevant_mask, term, torch.zeros_like(term))
    return term.sum(1) / c.n_relevant.clamp(max=k)


def auc(c: RankCounts) -> torch.Tensor:
    """Mean over relevant items of P(a random non-relevant candidate scores below it), ties ½.
    NaN for a request with no non-relevant candidate."""
    negatives = c.n_candidates - c.n_relevant
    beaten_by = (c.above - c.rel_above) + 0.5 * (c.tied - c.rel_tied)
    per_item = 1.0 - beaten_by / negatives[:, None]
    per_item = torch.where(c.relevant_mask, per_item, torch.zeros_like(per_item))
    return per_item.sum(1) / c.n_relevant


_AT_K = {"HR": hit_rate, "Recall": recall, "Precision": precision, "NDCG": ndcg, "MRR": mrr,
         "MAP": average_precision}


def metric_values(c: RankCounts, ks: tuple[int, ...] = (5, 10, 20)) -> dict[str, torch.Tensor]:
    """All metrics per request: ``{"HR@10": [B], ..., "AUC": [B]}`` (requests with no relevant
    item must be filtered out by the caller)."""
    out = {f"{name}@{k}": fn(c, k) for k in ks for name, fn in _AT_K.items()}
    out["AUC"] = auc(c)
    return out
