"""The time-gated write (memrec.memory.time_gated, DEMN's L3) and the top-r retrieval read
(memrec.memory.retrieval.top_r_read, DEMN's L4).

Hand-computed oracles (arithmetic in comments) and hypothesis properties: the write keeps the
memory in the hull of its inputs (bounded), decays monotonically with elapsed time, is the
identity with a zero gate and Δ = 0, and its unroll equals stepping one event at a time; the
retrieval equals a brute-force sort.
"""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from memrec.memory.retrieval import top_r_read
from memrec.memory.state import MemoryState
from memrec.memory.time_gated import idle_decay, time_gated_unroll, time_gated_write

PROPS = settings(max_examples=30, deadline=None)


def full(values, keys=None) -> MemoryState:
    values = torch.as_tensor(values, dtype=torch.float32)
    return MemoryState(values, torch.ones(values.shape[:2], dtype=torch.bool), keys)


def const(value: float):
    """A gate (or candidate) that ignores the memory: [B, S] (or [B, S, D]) of ``value``."""
    return lambda m: torch.full(m.shape[:2], value)


# -- time-gated write: oracle ------------------------------------------------------------------------
def test_time_gated_write_by_hand():
    # m = [[1, 0], [0, 1]], keys 0 (address = content), x = [1, 0], β = 1
    # cos = [1, 0] → w = softmax([1, 0]) = [e/(e+1), 1/(e+1)] = [0.7310586, 0.2689414]
    # τ = [1, 2], Δ = 1 → γ = [e^-1, e^-1/2] = [0.3678794, 0.6065307]; rest r = 0
    # m′ = [[0.3678794, 0], [0, 0.6065307]]; candidate c = 1 everywhere; gate 0.5
    # z = 0.5·w = [0.3655293, 0.1344707]
    # slot 1: (1 − 0.3655293)·[0.3678794, 0] + 0.3655293·[1, 1] = [0.5989380, 0.3655293]
    # slot 2: (1 − 0.1344707)·[0, 0.6065307] + 0.1344707·[1, 1] = [0.1344707, 0.6594408]
    state = full([[[1.0, 0.0], [0.0, 1.0]]], keys=torch.zeros(1, 2, 2))
    new = time_gated_write(state, torch.tensor([[1.0, 0.0]]), torch.zeros(1, 2, 2), torch.tensor([1.0, 2.0]),
                           torch.tensor([1.0]), lambda m: torch.ones_like(m), const(0.5), beta=1.0)
    expected = torch.tensor([[[0.5989380, 0.3655293], [0.1344707, 0.6594408]]])
    assert torch.allclose(new.values, expected, atol=1e-6)
    assert torch.equal(new.mask, state.mask) and torch.equal(new.keys, state.keys)


def test_idle_decay_by_hand():
    # γ = exp(−2/1) = 0.1353353: m′ = 0.1353353·4 + 0.8646647·2 = 2.2706706
    out = idle_decay(torch.tensor([[[4.0]]]), torch.tensor([[[2.0]]]), torch.tensor([1.0]), torch.tensor([2.0]))
    assert math.isclose(out.item(), 0.1353353 * 4 + 0.8646647 * 2, rel_tol=1e-6)


def test_keys_enter_the_address():
    # content [1, 0] in both slots; keys [0, 0] and [−2, 1] → cos(k + m, x) = [1, −0.7071], so
    # slot 1 takes the larger share of the gate
    state = full([[[1.0, 0.0], [1.0, 0.0]]], keys=torch.tensor([[[0.0, 0.0], [-2.0, 1.0]]]))
    new = time_gated_write(state, torch.tensor([[1.0, 0.0]]), torch.zeros(1, 2, 2), torch.ones(2),
                           torch.zeros(1), lambda m: torch.zeros_like(m), const(1.0), beta=1.0)
    w1 = 1 / (1 + math.exp(-1 - math.sqrt(0.5)))                     # softmax of [1, −1/√2]
    assert torch.allclose(new.values[0, :, 0], torch.tensor([1 - w1, w1]), atol=1e-6)


# -- time-gated write: properties ----------------------------------------------------------------
def _random_write_inputs(seed: int, B=3, S=4, D=5):
    g = torch.Generator().manual_seed(seed)
    values = torch.rand(B, S, D, generator=g) * 2 - 1
    keys = torch.randn(B, S, D, generator=g)
    rest = torch.rand(B, S, D, generator=g) * 2 - 1
    x = torch.randn(B, D, generator=g)
    timescale = torch.rand(S, generator=g) * 10 + 0.1
    W = torch.randn(D, D, generator=g)
    gate_bias = torch.randn(B, S, generator=g)
    return values, keys, rest, x, timescale, W, gate_bias


@PROPS
@given(seed=st.integers(0, 10_000), elapsed=st.floats(0.0, 100.0))
def test_write_stays_in_the_unit_box(seed, elapsed):
    # |m|, |r| ≤ 1 and c = tanh(·) ∈ (−1, 1): a convex combination stays within 1
    values, keys, rest, x, timescale, W, gate_bias = _random_write_inputs(seed)
    new = time_gated_write(full(values, keys), x, rest, timescale, torch.full((3,), elapsed),
                           lambda m: torch.tanh(5 * m @ W), lambda m: torch.sigmoid(gate_bias + m.sum(-1)))
    assert new.values.abs().max() <= 1 + 1e-6


@PROPS
@given(seed=st.integers(0, 10_000), a=st.floats(0.0, 50.0), b=st.floats(0.0, 50.0))
def test_decay_is_monotone_in_elapsed_time(seed, a, b):
    # with a zero gate only the decay acts: a longer idle time leaves every slot closer to rest
    values, keys, rest, x, timescale, W, _ = _random_write_inputs(seed)
    short, long = min(a, b), max(a, b)

    def distance(elapsed):
        new = time_gated_write(full(values, keys), x, rest, timescale, torch.full((3,), elapsed),
                               lambda m: torch.tanh(m @ W), const(0.0))
        return (new.values - rest).abs()
    assert (distance(long) <= distance(short) + 1e-6).all()


@PROPS
@given(seed=st.integers(0, 10_000))
def test_zero_gate_and_no_elapsed_time_is_the_identity(seed):
    values, keys, rest, x, timescale, W, _ = _random_write_inputs(seed)
    state = full(values, keys)
    new = time_gated_write(state, x, rest, timescale, torch.zeros(3), lambda m: torch.tanh(m @ W), const(0.0))
    assert torch.equal(new.values, state.values)


@PROPS
@given(seed=st.integers(0, 10_000))
def test_unroll_equals_stepping_one_event_at_a_time(seed):
    g = torch.Generator().manual_seed(seed)
    values, keys, rest, _, timescale, W, _ = _random_write_inputs(seed)
    B, T, D = 3, 5, values.shape[2]
    x = torch.randn(B, T, D, generator=g)
    elapsed = torch.rand(B, T, generator=g) * 5
    mask = torch.rand(B, T, generator=g) > 0.3                       # holes anywhere
    context = torch.randn(B, T, D, generator=g)                      # per-step input of the networks
    candidate = lambda m, t: torch.tanh(m @ W + context[:, t, None, :])
    gate = lambda m, t: torch.sigmoid(m.sum(-1) + context[:, t, :1])
    states = time_gated_unroll(full(values, keys), x, rest, timescale, elapsed, mask, candidate, gate, 2.0)
    for b in range(B):
        s = full(values[b:b + 1], keys[b:b + 1])
        for t in range(T):
            if mask[b, t]:
                s = time_gated_write(s, x[b:b + 1, t], rest[b:b + 1], timescale, elapsed[b:b + 1, t],
                                     lambda m: torch.tanh(m @ W + context[b:b + 1, t, None, :]),
                                     lambda m: torch.sigmoid(m.sum(-1) + context[b:b + 1, t, :1]), 2.0)
            assert torch.allclose(states.values[b, t], s.values[0], atol=1e-6), (b, t)


# -- top-r retrieval ---------------------------------------------------------------------------------
def test_top_r_read_by_hand():
    # q = [1, 0]; keys [1, 0], [0.5, 0], [2, 0], [3, 0] (the last masked) → scores 1, 0.5, 2, (3)
    # r = 2 keeps entries 3 and 1 (by similarity: the bias −2 on entry 3 does not change *what* is
    # retrieved); weights softmax([1 + 0, 2 − 2]) = [e/(1+e), 1/(1+e)] = [0.7310586, 0.2689414]
    # read = 0.7310586·[1, 0] + 0.2689414·[0, 2] = [0.7310586, 0.5378828]
    q = torch.tensor([[[1.0, 0.0]]])
    keys = torch.tensor([[[1.0, 0.0], [0.5, 0.0], [2.0, 0.0], [3.0, 0.0]]])
    values = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.0, 2.0], [9.0, 9.0]]])
    mask = torch.tensor([[True, True, True, False]])
    read, weights = top_r_read(q, keys, values, mask, 2, bias=torch.tensor([[0.0, 0.0, -2.0, 0.0]]))
    assert torch.allclose(weights, torch.tensor([[[0.7310586, 0.0, 0.2689414, 0.0]]]), atol=1e-6)
    assert torch.allclose(read, torch.tensor([[[0.7310586, 0.5378828]]]), atol=1e-6)


def test_top_r_ties_go_to_the_later_entry():
    # a repeated item: equal keys, r = 1 keeps the later (more recent) one
    keys = torch.tensor([[[1.0], [1.0], [0.5]]])
    _, weights = top_r_read(torch.ones(1, 1, 1), keys, keys, torch.ones(1, 3, dtype=torch.bool), 1)
    assert weights.tolist() == [[[0.0, 1.0, 0.0]]]


def test_top_r_read_of_an_empty_store_is_zero():
    read, weights = top_r_read(torch.ones(1, 2, 3), torch.ones(1, 4, 3), torch.ones(1, 4, 3),
                               torch.zeros(1, 4, dtype=torch.bool), 2)
    assert torch.equal(read, torch.zeros(1, 2, 3)) and torch.equal(weights, torch.zeros(1, 2, 4))


@PROPS
@given(seed=st.integers(0, 10_000), r=st.integers(1, 8), M=st.integers(1, 7))
def test_top_r_read_equals_brute_force(seed, r, M):
    g = torch.Generator().manual_seed(seed)
    B, C, D = 2, 3, 4
    q, keys = torch.randn(B, C, D, generator=g), torch.randn(B, M, D, generator=g)
    values, bias = torch.randn(B, M, 5, generator=g), torch.randn(B, M, generator=g)
    mask = torch.rand(B, M, generator=g) > 0.3
    read, weights = top_r_read(q, keys, values, mask, r, bias)
    for b in range(B):
        for c in range(C):
            scores = [float(q[b, c] @ keys[b, m]) for m in range(M)]
            valid = [m for m in range(M) if mask[b, m]]
            chosen = sorted(valid, key=lambda m: (-scores[m], -m))[:r]
            expected = torch.zeros(M)
            if chosen:
                logits = torch.tensor([scores[m] + float(bias[b, m]) for m in chosen])
                expected[chosen] = torch.softmax(logits, 0)
            assert torch.allclose(weights[b, c], expected, atol=1e-5), (b, c)
            assert torch.allclose(read[b, c], expected @ values[b], atol=1e-5), (b, c)


@PROPS
@given(seed=st.integers(0, 10_000), r=st.integers(1, 8), M=st.integers(2, 9))
def test_top_r_selection_with_many_ties_equals_brute_force(seed, r, M):
    # a session's store repeats items: keys drawn from 3 vectors, so the r-th score is often tied
    g = torch.Generator().manual_seed(seed)
    B, C, D = 2, 3, 4
    pool = torch.randn(3, D, generator=g)
    keys = pool[torch.randint(0, 3, (B, M), generator=g)]
    q = torch.randn(B, C, D, generator=g)
    mask = torch.rand(B, M, generator=g) > 0.2
    _, weights = top_r_read(q, keys, keys, mask, r)
    scores = q @ keys.transpose(-1, -2)                                         # the same products
    for b in range(B):
        for c in range(C):
            valid = [m for m in range(M) if mask[b, m]]
            chosen = sorted(valid, key=lambda m: (-float(scores[b, c, m]), -m))[:r]
            assert sorted(torch.nonzero(weights[b, c]).flatten().tolist()) == sorted(chosen), (b, c)


@PROPS
@given(seed=st.integers(0, 10_000), r=st.integers(1, 6))
def test_top_r_read_of_one_shared_store_equals_the_store_copied_per_prefix(seed, r):
    # every prefix reading one store [B, 1, M, D] (its own causal part by the mask) is a single
    # product per row; it must equal the broadcast copy
    g = torch.Generator().manual_seed(seed)
    B, P, C, M, D = 2, 4, 3, 5, 4
    q, store = torch.randn(B, P, C, D, generator=g), torch.randn(B, 1, M, D, generator=g)
    mask, bias = torch.rand(B, P, M, generator=g) > 0.3, torch.randn(B, P, M, generator=g)
    shared = top_r_read(q, store, store, mask, r, bias)
    copied = top_r_read(q, store.expand(B, P, M, D).clone(), store.expand(B, P, M, D).clone(), mask, r, bias)
    assert torch.allclose(shared[0], copied[0], atol=1e-5) and torch.allclose(shared[1], copied[1], atol=1e-6)
