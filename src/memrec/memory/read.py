"""Attention reads: address slots by similarity to a query, softmax, weighted sum of values.

Two layouts, one meaning:

* **padded** — a :class:`MemoryState` [B, M, D] with a mask; reads are two batched matrix
  products. Right for fixed-size memories (RUM, KSR, NMRN) and short histories.
* **ragged** — :class:`RaggedMemory`: every request's slots laid end to end ([S, D] with a
  segment id per slot), softmax per segment. Cost is proportional to the total number of slots,
  not batch × longest memory: for CMN's item neighbourhoods (mean 23, batch max ~200 on
  citeulike-a) that is an order of magnitude less work and memory.

Both give the same numbers (tested to 1e-6); :func:`ragged_to_padded` converts.

Similarities (``similarity=``): ``dot`` ⟨q, k⟩, ``scaled_dot`` ⟨q, k⟩/√d, ``euclidean``
−‖q − k‖ (NMRN's addressing), and ``additive`` — a learned :class:`AdditiveScore`
w·tanh(W_q q + W_k k + b) (Bahdanau; STAMP's and MARS's attention networks).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import nn

from .state import MemoryState

SIMILARITIES = ("dot", "scaled_dot", "euclidean", "additive")


class AdditiveScore(nn.Module):
    """Additive (MLP) attention score w·f(W_q q + W_k k + b).

    ``activation`` f is ``tanh`` (Bahdanau; MARS) or ``sigmoid`` (STAMP's attention network,
    eq. (7)); ``bias=False`` drops b (STAMP's official code has none).

    Shapes: query [..., Dq], keys [..., Dk] (broadcastable) → scores [...].
    """

    ACTIVATIONS = {"tanh": torch.tanh, "sigmoid": torch.sigmoid}

    def __init__(self, query_dim: int, key_dim: int, hidden: int, *, activation: str = "tanh",
                 bias: bool = True):
        super().__init__()
        if activation not in self.ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose from tanh, sigmoid")
        self.activation = self.ACTIVATIONS[activation]
        self.query_proj = nn.Linear(query_dim, hidden, bias=False)
        self.key_proj = nn.Linear(key_dim, hidden, bias=bias)
        self.out = nn.Linear(hidden, 1, bias=False)

    def forward(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        return self.out(self.activation(self.query_proj(query) + self.key_proj(keys))).squeeze(-1)


def _check_similarity(similarity: str, scorer: nn.Module | None) -> None:
    if similarity not in SIMILARITIES:
        raise ValueError(f"unknown similarity {similarity!r}; choose from {', '.join(SIMILARITIES)}")
    if similarity == "additive" and scorer is None:
        raise ValueError("additive similarity needs an AdditiveScore module (scorer=...)")


# -- padded -------------------------------------------------------------------------------------
def similarity_scores(query: torch.Tensor, keys: torch.Tensor, similarity: str = "dot",
                      scorer: nn.Module | None = None) -> torch.Tensor:
    """Score every slot against the query. query [B, Dk], keys [B, M, Dk] → [B, M]."""
    _check_similarity(similarity, scorer)
    if similarity == "additive":
        return scorer(query[:, None, :], keys)
    if similarity == "euclidean":
        return -(keys - query[:, None, :]).norm(dim=-1)
    scores = torch.bmm(keys, query[:, :, None]).squeeze(-1)
    return scores / math.sqrt(keys.shape[-1]) if similarity == "scaled_dot" else scores


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor, temperature: float = 1.0,
                   dim: int = -1) -> torch.Tensor:
    """Softmax over the valid slots of each row; invalid slots get exactly 0.

    A row with no valid slot gets all-zero weights (an *empty read* returns the zero vector)
    rather than NaN. scores [B, M], mask bool [B, M] (broadcastable) → weights [B, M]; ``dim``
    is the slot axis when it is not the last (RUM's [B, K, n_items] full-ranking block).
    """
    scores = (scores / temperature).masked_fill(~mask, float("-inf"))
    any_valid = mask.any(dim=dim, keepdim=True)
    weights = torch.softmax(scores.masked_fill(~any_valid, 0.0), dim=dim)
    return weights.masked_fill(~mask, 0.0)


def attention_read(query: torch.Tensor, state: MemoryState, *, similarity: str = "dot",
                   scorer: nn.Module | None = None, temperature: float = 1.0
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Content-addressed read: p = softmax(sim(q, k) / τ) over valid slots, r = Σ p_m v_m.

    query [B, Dk], state [B, M, ·] → (read [B, Dv], weights [B, M]).
    """
    scores = similarity_scores(query, state.addressing_keys, similarity, scorer)
    weights = masked_softmax(scores, state.mask, temperature)
    read = torch.bmm(weights[:, None, :], state.values).squeeze(1)
    return read, weights


def prefix_mask(mask: torch.Tensor, window: int | None = None) -> torch.Tensor:
    """Which slots each prefix may read: [b, k, i] is True when slot i is valid and i ≤ k
    (the memory as it stood after event k), and, with ``window``, k − i < window (only the
    most recent ``window`` events). mask bool [B, L] → bool [B, L, L]."""
    length = mask.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=mask.device).tril()
    if window is not None:
        causal = causal.triu(1 - window)
    return causal[None] & mask[:, None, :] & mask[:, :, None]


def weighted_read(scores: torch.Tensor, values: torch.Tensor, mask: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Σ_i w_i v_i with the scores used as weights as they are (no softmax: STAMP's attention is
    unnormalised), zero outside ``mask``. scores [B, P, M], values [B, M, D], mask [B, P, M]
    → (read [B, P, D], weights [B, P, M])."""
    weights = scores * mask
    return torch.bmm(weights, values), weights


@dataclass(frozen=True)
class HopReads:
    """What :func:`multi_hop_read` returns: the last hop's read, every hop's weights, and the
    query the last hop read with (MemN2N's output adds it to the read)."""

    read: torch.Tensor
    weights: list[torch.Tensor]
    query: torch.Tensor

    def __iter__(self):                     # ``read, weights = multi_hop_read(...)``
        return iter((self.read, self.weights))


def multi_hop_read(query: torch.Tensor, state: MemoryState | None, hops: int,
                   next_query: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor],
                   read: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None = None,
                   **read_options) -> HopReads:
    """H reads of the same memory; between reads the query is updated from the last read.

    ``next_query(z, o, h)`` maps the query of hop h and its read to the query of hop h+1
    (MemN2N: z + o; CMN: ReLU(W z + o + b)). ``read(z, **read_options) -> (read, weights)``
    defaults to :func:`attention_read` on ``state`` (``state`` may be None when ``read`` is
    given: a ragged, shared-layout or per-prefix memory). Returns the last read, every hop's
    weights and the last query (:class:`HopReads`).
    """
    if hops < 1:
        raise ValueError(f"hops must be at least 1, got {hops}")
    read = read or (lambda z, **kw: attention_read(z, state, **kw))
    o, weights = read(query, **read_options)
    all_weights = [weights]
    z = query
    for h in range(1, hops):
        z = next_query(z, o, h)
        o, weights = read(z, **read_options)
        all_weights.append(weights)
    return HopReads(o, all_weights, z)


# -- ragged -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RaggedMemory:
    """Variable-size memories laid end to end.

    Shapes
    ------
    values : [S, Dv]; keys : [S, Dk] or None (values are their own keys)
    segment : long [S] — which request each slot belongs to, non-decreasing
    n_segments : B (requests with no slot get an empty read)
    """

    values: torch.Tensor
    segment: torch.Tensor
    n_segments: int
    keys: torch.Tensor | None = None

    @property
    def addressing_keys(self) -> torch.Tensor:
        return self.values if self.keys is None else self.keys

    def sizes(self) -> torch.Tensor:
        return torch.bincount(self.segment, minlength=self.n_segments)


def csr_segments(indptr: torch.Tensor, indices: torch.Tensor, rows: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Gather CSR rows for a batch: (flat column ids [S], segment [S]) for rows long [B].

    Vectorised: ``repeat_interleave`` for segment ids, one arange offset trick for positions.
    """
    starts, ends = indptr[rows], indptr[rows + 1]
    sizes = ends - starts
    segment = torch.repeat_interleave(torch.arange(len(rows), device=rows.device), sizes)
    first_slot = torch.cumsum(sizes, 0) - sizes                      # where each row begins in S
    offsets = torch.arange(int(sizes.sum()), device=rows.device) - first_slot[segment]
    return indices[starts[segment] + offsets], segment


class _SegmentGather(torch.autograd.Function):
    """x[segment] for a sorted ``segment``: forward a row gather, backward a segment sum.

    Autograd's backward of ``x[segment]`` is an accumulating ``index_put``, which under
    deterministic algorithms (the trainer's default) sorts the indices every call; the segments
    are sorted already, so a ``segment_reduce`` does the same sums in the same order, several
    times faster. Each backward calls the other function, so higher derivatives still work.
    """

    @staticmethod
    def forward(ctx, x, segment, sizes):
        ctx.save_for_backward(segment, sizes)
        return x.index_select(0, segment)

    @staticmethod
    def backward(ctx, grad):
        segment, sizes = ctx.saved_tensors
        return _SegmentSum.apply(grad, segment, sizes), None, None


class _SegmentSum(torch.autograd.Function):
    """Σ of rows per sorted segment (``segment_reduce``); backward a row gather. PyTorch's own
    ``segment_reduce`` backward is generic (it handles max/min/mean) and much slower for a sum,
    whose gradient is just each segment's gradient copied to its rows."""

    @staticmethod
    def forward(ctx, x, segment, sizes):
        ctx.save_for_backward(segment, sizes)
        if x.shape[0] == 0:                          # no slot at all: every segment sums to 0
            return x.new_zeros(len(sizes), *x.shape[1:])
        return torch.segment_reduce(x, "sum", lengths=sizes, axis=0)

    @staticmethod
    def backward(ctx, grad):
        segment, sizes = ctx.saved_tensors
        return _SegmentGather.apply(grad, segment, sizes), None, None


def segment_gather(x: torch.Tensor, segment: torch.Tensor) -> torch.Tensor:
    """x[segment] for sorted segments: x [B, ...], segment long [S] non-decreasing → [S, ...],
    with a fast deterministic backward (:class:`_SegmentGather`)."""
    return _SegmentGather.apply(x, segment, torch.bincount(segment, minlength=len(x)))


def weighted_segment_sum(weights: torch.Tensor, values: torch.Tensor, segment: torch.Tensor,
                         n_segments: int) -> torch.Tensor:
    """Σ of weighted slots per segment. weights [S], values [S, D], segment [S] sorted → [B, D].

    ``torch.segment_reduce`` over contiguous segments: deterministic, and several times faster
    on CPU than ``index_add`` of [S, D] rows (and than MKL's sparse product, whose rounding
    varies with memory alignment, which broke seeded reproducibility); its backward is a row
    gather (:class:`_SegmentSum`).
    """
    if segment.numel() > 1 and bool((segment[1:] < segment[:-1]).any()):
        raise ValueError("ragged memory segments must be non-decreasing")
    sizes = torch.bincount(segment, minlength=n_segments)
    weighted = weights.to(values.dtype)[:, None] * values
    if segment.numel() == 0:
        return values.new_zeros(n_segments, values.shape[-1])
    return _SegmentSum.apply(weighted, segment, sizes)


def segment_softmax(scores: torch.Tensor, segment: torch.Tensor, n_segments: int,
                    temperature: float = 1.0) -> torch.Tensor:
    """Softmax within each segment. scores [S], segment [S] → weights [S].

    The per-segment max is subtracted for stability (detached: softmax is shift-invariant, so
    the gradient does not need it).
    """
    scores = scores / temperature
    top = torch.full((n_segments,), float("-inf"), dtype=scores.dtype, device=scores.device)
    top = top.scatter_reduce(0, segment, scores.detach(), reduce="amax", include_self=True)
    exp = torch.exp(scores - top[segment])
    total = torch.zeros(n_segments, dtype=scores.dtype, device=scores.device).index_add(0, segment, exp)
    if segment.numel() > 1 and bool((segment[1:] >= segment[:-1]).all()):
        return exp / segment_gather(total, segment)     # sorted (every ragged read): fast backward
    return exp / total[segment]


def ragged_attention_read(query: torch.Tensor, memory: RaggedMemory, *, similarity: str = "dot",
                          scorer: nn.Module | None = None, temperature: float = 1.0
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`attention_read` on a ragged memory. query [B, Dk] → (read [B, Dv], weights [S])."""
    _check_similarity(similarity, scorer)
    keys = memory.addressing_keys
    q = segment_gather(query, memory.segment)                          # [S, Dk]
    if similarity == "additive":
        scores = scorer(q, keys)
    elif similarity == "euclidean":
        scores = -(keys - q).norm(dim=-1)
    else:
        scores = (q * keys).sum(-1)
        if similarity == "scaled_dot":
            scores = scores / math.sqrt(keys.shape[-1])
    weights = segment_softmax(scores, memory.segment, memory.n_segments, temperature)
    return weighted_segment_sum(weights, memory.values, memory.segment, memory.n_segments), weights


# -- one neighbourhood layout read by many queries -------------------------------------------
@dataclass(frozen=True)
class SharedLayout:
    """One CSR layout of memory slots (segment i owns memory rows ``rows[indptr[i]:indptr[i+1]]``)
    read by a batch of B requests, each with its own query per segment.

    This is scoring *every* item for a batch of users in a neighbourhood model (CMN): the item →
    users neighbourhoods are the same for every user, only the queries differ. Laying the batch
    out as one block-diagonal sparse [B·I, N] matrix turns the per-slot work into one sampled
    dense-dense product (scores) and one sparse-dense product (reads), with no [B, S, D]
    intermediate.

    Shapes
    ------
    indptr : long [I + 1]; rows : long [S] (memory row of each slot); segment : long [S]
    """

    indptr: torch.Tensor
    rows: torch.Tensor

    @property
    def n_segments(self) -> int:
        return len(self.indptr) - 1

    @cached_property  # read by every softmax; frozen dataclasses still allow the cache
    def segment(self) -> torch.Tensor:
        return torch.repeat_interleave(torch.arange(self.n_segments, device=self.rows.device),
                                       self.indptr[1:] - self.indptr[:-1])

    @cached_property
    def empty_segments(self) -> torch.Tensor:
        """bool [I]: segments with no slot."""
        return self.indptr[1:] == self.indptr[:-1]

    def batched(self, values: torch.Tensor, n_rows: int) -> torch.Tensor:
        """Sparse CSR [B·I, n_rows] holding values [B, S] in the layout, block b in rows b·I…"""
        B, S = values.shape
        shift = torch.arange(B, device=values.device)[:, None] * S
        crow = torch.cat([(self.indptr[:-1][None] + shift).reshape(-1),
                          torch.tensor([B * S], device=values.device)])
        with warnings.catch_warnings():  # CSR support is flagged beta; these two ops are stable
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(crow, self.rows.repeat(B), values.reshape(-1),
                                           (B * self.n_segments, n_rows), check_invariants=False,
                                           device=values.device)


def shared_layout_scores(queries: torch.Tensor, keys: torch.Tensor, layout: SharedLayout
                         ) -> torch.Tensor:
    """Dot scores of every slot with its segment's query: queries [B, I, D], keys [N, D] → [B, S].

    One ``sampled_addmm`` (SDDMM) over the block-diagonal layout."""
    B, I, D = queries.shape
    pattern = layout.batched(queries.new_zeros(B, len(layout.rows)), keys.shape[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        out = torch.sparse.sampled_addmm(pattern, queries.reshape(B * I, D), keys.T, beta=0.0)
    return out.values().view(B, -1)


def shared_layout_softmax(scores: torch.Tensor, layout: SharedLayout) -> torch.Tensor:
    """Softmax within each segment, for every request: scores [B, S] → weights [B, S]."""
    B = scores.shape[0]
    segment = layout.segment.expand(B, -1)
    top = scores.new_full((B, layout.n_segments), float("-inf"))
    top = top.scatter_reduce(1, segment, scores, reduce="amax", include_self=True)
    exp = torch.exp(scores - top.gather(1, segment))
    total = scores.new_zeros(B, layout.n_segments).scatter_add(1, segment, exp)
    return exp / total.gather(1, segment)


def shared_layout_read(weights: torch.Tensor, values: torch.Tensor, layout: SharedLayout
                       ) -> torch.Tensor:
    """Σ_s w[b, s] · values[rows[s]] per segment: weights [B, S], values [N, D] → [B, I, D].

    One sparse-dense product; an empty segment reads zeros."""
    B = weights.shape[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        read = layout.batched(weights, values.shape[0]) @ values
    return read.view(B, layout.n_segments, -1)


def ragged_to_padded(memory: RaggedMemory) -> MemoryState:
    """The same memories as a padded [B, max size, D] state with a mask."""
    sizes = memory.sizes()
    width = int(sizes.max()) if len(sizes) and memory.segment.numel() else 0
    first_slot = torch.cumsum(sizes, 0) - sizes
    position = torch.arange(memory.segment.numel(), device=memory.segment.device) - first_slot[memory.segment]

    def pad(flat: torch.Tensor) -> torch.Tensor:
        out = flat.new_zeros(memory.n_segments, width, flat.shape[-1])
        out[memory.segment, position] = flat
        return out

    mask = torch.zeros(memory.n_segments, width, dtype=torch.bool, device=memory.segment.device)
    mask[memory.segment, position] = True
    return MemoryState(pad(memory.values), mask, None if memory.keys is None else pad(memory.keys))


__all__ = ["SIMILARITIES", "AdditiveScore", "similarity_scores", "masked_softmax", "attention_read",
           "prefix_mask", "weighted_read",
           "HopReads", "multi_hop_read", "RaggedMemory", "csr_segments", "segment_softmax", "weighted_segment_sum",
           "segment_gather",
           "ragged_attention_read", "ragged_to_padded", "SharedLayout", "shared_layout_scores",
           "shared_layout_softmax", "shared_layout_read"]


# -- one memory per row, several queries (candidates, or every prefix of a sequence) ----------
def candidate_read(queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                   slot_mask: torch.Tensor, scorer: nn.Module | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention read of one memory per row by several queries (candidates to score, or the
    prefixes of a sequence with a causal ``slot_mask``).

    queries [B, C, d], keys/values [B, L, d], slot_mask bool [B, C, L] (which slots each
    candidate may read) → (reads [B, C, d], weights [B, C, L]). ``scorer`` None: dot-product
    scores (one batched matmul); else an :class:`AdditiveScore`. A candidate with no readable
    slot reads the zero vector (``masked_softmax``'s empty read).
    """
    if scorer is None:
        scores = queries @ keys.transpose(1, 2)                                   # ⟨q_c, k_j⟩
    else:
        scores = scorer(queries[:, :, None, :], keys[:, None, :, :])              # wᵀtanh(W_q q + W_k k + b)
    weights = masked_softmax(scores, slot_mask)                                   # p over readable slots
    return weights @ values, weights                                              # Σ_j p_j v_j


__all__ += ["candidate_read"]


# -- copy read: the attended slots' items as a distribution, mixed with the catalogue --------------
def copy_distribution(weights: torch.Tensor, slot_items: torch.Tensor, mask: torch.Tensor,
                      n_items: int) -> torch.Tensor:
    """The item distribution a read's slot weights put on the items the slots hold, summed over
    slots holding the same item: c_i = Σ_{m valid, item_m = i} w_m. Dense, for explanations and
    tests (:func:`copy_mixture` never builds it). weights [B, M] (summing to 1 over the valid
    slots), slot_items long [B, M], mask bool [B, M] → [B, n_items]."""
    return weights.new_zeros(len(weights), n_items).scatter_add(1, slot_items, weights * mask)


def copy_mixture(logits: torch.Tensor, weights: torch.Tensor, slot_items: torch.Tensor,
                 mask: torch.Tensor, gate_logit: torch.Tensor) -> torch.Tensor:
    """Log-probabilities of the repeat/explore mixture (RepeatNet's decision, Ren et al. 2019):

        p(i) = (1 − g) · softmax(z)_i + g · c_i,    g = σ(gate_logit),  c = the copy distribution

    where c_i sums the read's weights on the slots holding item i. A row with no valid slot has
    nothing to copy: g is 0 there, and p is the catalogue softmax.

    Cost: the softmax of the logits (which the catalogue product made) plus work on the M slots
    only: the slots are sorted per row so each distinct item's weight is summed once, and its
    log-probability is written by one sparse ``index_put``. Computed in log space (``logaddexp``),
    so no probability underflows to a NaN gradient.

    logits [B, n_items], weights [B, M] (summing to 1 over the valid slots), slot_items long
    [B, M], mask bool [B, M], gate_logit [B] (±inf: the pure cases) → log p [B, n_items].
    """
    return _add_copy(torch.log_softmax(logits, dim=1), weights, slot_items, mask, gate_logit)


def copy_scores(scores: torch.Tensor, weights: torch.Tensor, slot_items: torch.Tensor,
                mask: torch.Tensor, gate_logit: torch.Tensor) -> torch.Tensor:
    """The copy read for a model trained without a catalogue softmax (pairwise losses against
    sampled negatives: RUM-I): the log of the *unnormalised* mixture

        s'_i = log((1 − g) · exp(s_i) + g · c_i).

    A softmax of s' over the catalogue is exactly a repeat/explore mixture — (1 − g')·softmax(s)
    + g'·c with g' = g / (g + (1 − g)·Σ_j exp(s_j)) — so ranking by s' ranks by that mixture,
    a sampled softmax over s' approximates its log-likelihood, and scoring a few candidates
    (:func:`copy_candidate_scores`) needs no normaliser over the catalogue. g = 0 gives the
    scores s unchanged, g = 1 log c. Same cost and layout as :func:`copy_mixture`.

    scores [B, n_items], the other arguments as there → s' [B, n_items].
    """
    return _add_copy(scores, weights, slot_items, mask, gate_logit)


def _add_copy(log_catalogue: torch.Tensor, weights: torch.Tensor, slot_items: torch.Tensor,
              mask: torch.Tensor, gate_logit: torch.Tensor) -> torch.Tensor:
    """log((1 − g)·exp(x_i) + g·c_i) for every item, x = ``log_catalogue`` [B, n_items]: the
    catalogue term everywhere, the copy term written on the slots' items only."""
    B, n_items = log_catalogue.shape
    log_repeat = nn.functional.logsigmoid(gate_logit)
    log_explore = torch.where(mask.any(1), nn.functional.logsigmoid(-gate_logit), 0.0)   # 1 − g, or 1
    out = log_catalogue + log_explore[:, None]                               # (1 − g) exp(x)
    # one entry per distinct (row, item): sort the slots by item (padding last), sum each run
    items, order = slot_items.masked_fill(~mask, n_items).sort(dim=1)
    w = (weights * mask).gather(1, order)
    first = torch.ones_like(items, dtype=torch.bool)
    first[:, 1:] = items[:, 1:] != items[:, :-1]
    run = first.cumsum(1) - 1
    mass = torch.zeros_like(w).scatter_add(1, run, w).gather(1, run)         # c_i at each slot
    lead = first & (items < n_items)
    rows = torch.arange(B, device=items.device)[:, None].expand_as(items)[lead]
    cols = items[lead]
    tiny = torch.finfo(mass.dtype).tiny                                      # log 0 → a finite floor
    boosted = torch.logaddexp(out[rows, cols], log_repeat[rows] + mass[lead].clamp_min(tiny).log())
    return out.index_put((rows, cols), boosted)                              # + g c_i, in log space


def copy_candidate_scores(scores: torch.Tensor, candidates: torch.Tensor, weights: torch.Tensor,
                          slot_items: torch.Tensor, mask: torch.Tensor, gate_logit: torch.Tensor
                          ) -> torch.Tensor:
    """:func:`copy_scores` of given candidates only (equal to it gathered at them): each
    candidate's copy mass is the weight of the slots holding it. Any leading batch shape ``...``
    (a batch, or a batch × prefixes).

    scores / candidates [..., C], weights / slot_items / mask [..., M], gate_logit [...] →
    [..., C].
    """
    holds = (candidates[..., :, None] == slot_items[..., None, :]) & mask[..., None, :]   # [..., C, M]
    mass = (holds * weights[..., None, :]).sum(-1)                                       # c at each candidate
    log_repeat = nn.functional.logsigmoid(gate_logit)[..., None]
    log_explore = torch.where(mask.any(-1), nn.functional.logsigmoid(-gate_logit), 0.0)[..., None]
    out = scores + log_explore
    tiny = torch.finfo(mass.dtype).tiny                                      # as _add_copy's floor
    return torch.where(holds.any(-1), torch.logaddexp(out, log_repeat + mass.clamp_min(tiny).log()), out)


def repeat_share(log_probs: torch.Tensor, weights: torch.Tensor, slot_items: torch.Tensor,
                 mask: torch.Tensor, gate_logit: torch.Tensor) -> torch.Tensor:
    """The share of each item's mixture probability that the copy gave it, g·c_i / p(i) ∈ [0, 1]
    (0 for items no slot holds): whether an item is recommended as a repeat or an exploration.
    log_probs [B, n_items] (:func:`copy_mixture`'s, or :func:`copy_scores`': the share of the
    unnormalised mixture is the same), the other arguments as there → [B, n_items]."""
    copy = copy_distribution(weights, slot_items, mask, log_probs.shape[1])
    gate = torch.sigmoid(gate_logit) * mask.any(1)
    return (gate[:, None] * copy / log_probs.exp()).nan_to_num(0.0).clamp(0.0, 1.0)


class CopyRead(nn.Module):
    """A copy read with its learned gate: g = σ(w·h + b) from the reader's representation h
    (repeat vs explore), mixing the read's slot weights as an item distribution with the
    catalogue softmax (:func:`copy_mixture`).

    Shapes: logits [B, n_items], state [B, d], weights / slot_items / mask [B, M] → [B, n_items]
    """

    def __init__(self, dim: int):
        super().__init__()
        self.gate = nn.Linear(dim, 1)

    def gate_logit(self, state: torch.Tensor) -> torch.Tensor:
        return self.gate(state).squeeze(-1)

    def forward(self, logits: torch.Tensor, state: torch.Tensor, weights: torch.Tensor,
                slot_items: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return copy_mixture(logits, weights, slot_items, mask, self.gate_logit(state))


__all__ += ["copy_distribution", "copy_mixture", "copy_scores", "copy_candidate_scores", "repeat_share",
            "CopyRead"]

