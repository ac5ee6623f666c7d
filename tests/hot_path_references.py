"""The hot paths as they were before issue 20's rewrite, kept verbatim as references.

``tests/test_hot_paths.py`` checks the new implementations equal to these (values and
gradients), and ``benchmarks/hot_paths.py`` times old against new in one process. Do not
"improve" them: their job is to stay the old behaviour.
"""

from __future__ import annotations

import numpy as np
import torch

from memrec.memory.state import MemoryState
from memrec.memory.unroll import check_shape
from memrec.memory.write import unroll
from memrec.metrics import (RankCounts, _best_group, _counts_by_comparison, _counts_by_sorting,
                            _discount_prefix, _harmonic_prefix, _log_comb)
from memrec.models.ksr import KSR, KSRState


# -- memrec.memory.erase_add (before): one fused op per step, time-major ----------------------
class ReferenceAffineScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, initial, multiplier, increment):           # [B, ...], [T, B, ...], [T, B, ...]
        out = torch.empty_like(increment)
        previous = initial
        for t in range(len(increment)):
            torch.addcmul(increment[t], previous, multiplier[t], out=out[t])
            previous = out[t]
        ctx.save_for_backward(initial, multiplier, out)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        initial, multiplier, out = ctx.saved_tensors
        T = len(out)
        grad = torch.empty_like(grad_out)
        grad[T - 1] = grad_out[T - 1]
        for t in range(T - 2, -1, -1):
            torch.addcmul(grad_out[t], grad[t + 1], multiplier[t + 1], out=grad[t])
        previous = torch.cat([initial.unsqueeze(0), out[:-1]], dim=0)
        return grad[0] * multiplier[0], grad * previous, grad


def reference_affine_scan(initial, multiplier, increment):
    if multiplier.shape[1] == 0:
        return increment.clone()
    time_major = lambda x: x.transpose(0, 1).contiguous()       # noqa: E731
    return ReferenceAffineScan.apply(initial, time_major(multiplier), time_major(increment)).transpose(0, 1)


def reference_erase_add_final(state: MemoryState, weights, erase, add, mask) -> MemoryState:
    B, M, Dv = state.values.shape
    T = mask.shape[1]
    check_shape("weights", weights, (B, T, M))
    check_shape("erase", erase, (B, T, Dv))
    check_shape("add", add, (B, T, Dv))
    values = state.values.clone()
    for t in range(T):
        rows = mask[:, t].nonzero().flatten()
        if len(rows):
            w = weights[rows, t].unsqueeze(-1)                                  # [b, M, 1]
            new = values[rows] * (1 - w * erase[rows, t, None, :]) + w * add[rows, t, None, :]
            values.index_copy_(0, rows, new)
    return state.with_values(values)


# -- memrec.models.ksr.KSR.encode (before): the generic unroll of the per-event write ----------
def reference_ksr_encode(model: KSR, users, history, mask) -> KSRState:
    state = model.init_state(users)
    length = mask.sum(1)
    rows = torch.nonzero(length > 0).flatten()
    if len(rows) == 0:
        return state
    h0, memory, pending = state.hidden, model._memory(state.values), state.pending
    packed = torch.nn.utils.rnn.pack_padded_sequence(model.item_embedding(history[rows]), length[rows].cpu(),
                                                     batch_first=True, enforce_sorted=False)
    _, h_rows = model.gru(packed)
    h = h0.index_copy(0, rows, h_rows[0])
    writes = mask & model.linked[history]
    last = history.gather(1, (length - 1).clamp_min(0)[:, None])[:, 0]
    if model.variant == "paper":
        writes = writes & (torch.arange(history.shape[1], device=mask.device) < (length - 1)[:, None])
        pending = torch.where(length > 0, last, pending)
    memory = unroll(model._write, memory, (history,), writes)
    return KSRState(h, memory.values, pending)


# -- memrec.metrics.rank_counts (before): relevant items compared pairwise, [B, T, T] ----------
def reference_rank_counts(scores, relevant, relevant_mask, excluded=None, *, n_candidates=None,
                          method="auto") -> RankCounts:
    if torch.isnan(scores.sum()) and torch.isnan(scores).any():
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
    pair_real = real[:, None, :]
    rel_above = ((target[:, None, :] > target[:, :, None]) & pair_real).sum(-1)
    rel_tied = ((target[:, None, :] == target[:, :, None]) & pair_real).sum(-1)
    return RankCounts(above.double(), tied.double(), rel_above.double(), rel_tied.double(), real,
                      n_candidates, real.sum(1).double())


# -- memrec.metrics (before): log-binomials for every request, prefix tables as long as the catalogue

def reference_hit_rate(c: RankCounts, k: int) -> torch.Tensor:
    """P(at least one relevant item in the top k).

    Only the best relevant group can reach the top k: with s = clip(k − p, 0, g) of its g slots
    inside the cutoff, HR = 1 − C(g − h, s) / C(g, s) (no relevant item among the s drawn).
    """
    p, g, h = _best_group(c)
    s = (k - p).clamp(min=0).minimum(g)
    miss = torch.exp(_log_comb(g - h, s) - _log_comb(g, s))
    return 1.0 - miss


def reference_ndcg(c: RankCounts, k: int) -> torch.Tensor:
    """E[DCG@k] / IDCG@k with binary gains.

    Item i's expected discount is (D[min(p+g, k)] − D[min(p, k)]) / g with D the cumulative
    discount; IDCG@k = D[min(#relevant, k)].
    """
    d = _discount_prefix(int(c.n_candidates.max().item()) + 1)
    lo = c.above.clamp(max=k).long()
    hi = (c.above + c.tied).clamp(max=k).long()
    gain = (d[hi] - d[lo]) / c.tied.clamp(min=1)
    gain = torch.where(c.relevant_mask, gain, torch.zeros_like(gain))
    ideal = d[c.n_relevant.clamp(max=k).long()]
    return gain.sum(1) / ideal


def reference_mrr(c: RankCounts, k: int) -> torch.Tensor:
    """E[1 / rank of the first relevant item], 0 when it falls below k.

    In the best relevant group (p, g, h) the first relevant position j ∈ 1..g−h+1 has
    P(j) = C(g − j, h − 1) / C(g, h); sum P(j) / (p + j) over p + j ≤ k.
    """
    p, g, h = _best_group(c)
    j = torch.arange(1, k + 1, dtype=torch.float64)[None, :]
    log_p = _log_comb(g[:, None] - j, h[:, None] - 1) - _log_comb(g, h)[:, None]
    inside = (p[:, None] + j) <= k
    terms = torch.where(inside, torch.exp(log_p) / (p[:, None] + j), torch.zeros_like(log_p))
    return terms.sum(1)


def reference_average_precision(c: RankCounts, k: int) -> torch.Tensor:
    """E[AP@k], AP@k = Σ_{relevant i, rank ≤ k} precision@rank(i) / min(#relevant, k).

    Item i sits at group position q uniform on 1..Q (Q = clip(k − p, 0, g) positions inside the
    cutoff); given q, the expected number of other relevant group members ahead of it is
    (h − 1)(q − 1)/(g − 1). Summing (1 + m + (h−1)(q−1)/(g−1)) / (p + q) over q with harmonic
    numbers H gives ((1 + m)·S + (h−1)/(g−1)·(Q − (p+1)·S)) / g, S = H[p+Q] − H[p].
    """
    harmonic = _harmonic_prefix(int(c.n_candidates.max().item()) + 1)
    p, g, h, m = c.above, c.tied, c.rel_tied, c.rel_above
    q_max = (k - p).clamp(min=0).minimum(g)
    s = harmonic[(p + q_max).long()] - harmonic[p.long()]
    spread = torch.where(g > 1, (h - 1) / (g - 1).clamp(min=1), torch.zeros_like(g))
    term = ((1 + m) * s + spread * (q_max - (p + 1) * s)) / g.clamp(min=1)
    term = torch.where(c.relevant_mask, term, torch.zeros_like(term))
    return term.sum(1) / c.n_relevant.clamp(max=k)


# -- memrec.metrics._counts_by_comparison (before): torch comparisons, NumPy counts
def reference_counts_by_comparison(scores, target, excluded) -> tuple[torch.Tensor, torch.Tensor]:
    """(#valid candidates scored >, #valid candidates scored ==) per relevant slot, one pass of
    exact comparisons in the scores' own dtype per slot (no sort, no float64 copy)."""
    valid = None if excluded is None else ~excluded
    above = torch.empty(target.shape, dtype=torch.long)
    tied = torch.empty(target.shape, dtype=torch.long)
    for t in range(target.shape[1]):
        column = target[:, t:t + 1]
        greater, equal = scores > column, scores == column
        if valid is not None:
            greater, equal = greater & valid, equal & valid
        above[:, t] = _reference_count_true(greater)
        tied[:, t] = _reference_count_true(equal)
    return above, tied


def _reference_count_true(flags: torch.Tensor) -> torch.Tensor:
    """Row counts of a bool [B, C] tensor. On CPU NumPy's count_nonzero (a zero-copy view) is
    several times faster than torch's bool sum."""
    if flags.device.type == "cpu":
        return torch.from_numpy(np.count_nonzero(flags.numpy(), axis=1))
    return flags.sum(1)

