"""Attention reads: hand oracles, properties, and ragged == padded."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from memrec.memory.read import (AdditiveScore, RaggedMemory, SharedLayout, shared_layout_read,
                                shared_layout_scores, shared_layout_softmax, attention_read, csr_segments,
                                masked_softmax, multi_hop_read, ragged_attention_read,
                                ragged_to_padded, segment_softmax)
from memrec.memory.state import MemoryState


def test_single_read_hand_oracle():
    # CMN spec §1(i).1: keys (1,0),(0,2); values (1,0),(0,2); query (1,1)
    keys = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])
    values = keys.clone()
    state = MemoryState(values, torch.ones(1, 2, dtype=torch.bool), keys)
    read, weights = attention_read(torch.tensor([[1.0, 1.0]]), state)
    # scores (1, 2) → softmax (e/(e+e²), e²/(e+e²)) = (0.268941, 0.731059)
    assert weights[0].tolist() == pytest.approx([0.268941, 0.731059], abs=1e-6)
    assert read[0].tolist() == pytest.approx([0.268941, 1.462117], abs=1e-6)


def test_two_hop_hand_oracle():
    # CMN spec §1(i).2 with the hop map z ← ReLU(z + o)
    keys = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])
    state = MemoryState(keys.clone(), torch.ones(1, 2, dtype=torch.bool), keys)
    read, weights = multi_hop_read(torch.tensor([[1.0, 1.0]]), state, 2,
                                   lambda z, o, h: torch.relu(z + o))
    assert weights[1][0].tolist() == pytest.approx([0.025202, 0.974798], abs=1e-6)
    assert read[0].tolist() == pytest.approx([0.025202, 1.949595], abs=1e-6)


def test_scaled_dot_and_euclidean_hand_values():
    keys = torch.tensor([[[3.0, 4.0], [0.0, 0.0]]])
    state = MemoryState(keys, torch.ones(1, 2, dtype=torch.bool))
    _, w = attention_read(torch.tensor([[0.0, 0.0]]), state, similarity="euclidean")
    # distances 5 and 0 → softmax(-5, 0)
    assert w[0].tolist() == pytest.approx([math.exp(-5) / (1 + math.exp(-5)), 1 / (1 + math.exp(-5))])
    _, w = attention_read(torch.tensor([[2.0, 0.0]]), state, similarity="scaled_dot")
    # scores 6/√2 and 0
    s = 6 / math.sqrt(2)
    assert w[0, 0].item() == pytest.approx(math.exp(s) / (math.exp(s) + 1))


def test_temperature_sharpens():
    state = MemoryState(torch.tensor([[[1.0], [2.0]]]), torch.ones(1, 2, dtype=torch.bool))
    _, soft = attention_read(torch.tensor([[1.0]]), state, temperature=10.0)
    _, sharp = attention_read(torch.tensor([[1.0]]), state, temperature=0.1)
    assert sharp[0, 1] > soft[0, 1] > 0.5


def test_empty_memory_reads_zero():
    weights = masked_softmax(torch.randn(2, 3), torch.tensor([[False] * 3, [True, False, True]]))
    assert weights[0].tolist() == [0.0, 0.0, 0.0]
    assert weights[1].sum().item() == pytest.approx(1.0) and weights[1, 1] == 0


def test_equal_keys_give_the_mean_of_values():
    keys = torch.ones(1, 4, 3)
    values = torch.randn(1, 4, 5)
    read, _ = attention_read(torch.randn(1, 3), MemoryState(values, torch.ones(1, 4, dtype=torch.bool), keys))
    assert torch.allclose(read[0], values[0].mean(0), atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.integers(1, 6), st.integers(0, 10_000))
def test_weights_sum_to_one_over_valid_slots_and_padding_is_inert(batch, slots, seed):
    g = torch.Generator().manual_seed(seed)
    values = torch.randn(batch, slots, 3, generator=g)
    keys = torch.randn(batch, slots, 3, generator=g)
    mask = torch.rand(batch, slots, generator=g) > 0.3
    mask[:, 0] = True
    query = torch.randn(batch, 3, generator=g)
    read, weights = attention_read(query, MemoryState(values, mask, keys))
    assert torch.allclose(weights.sum(1), torch.ones(batch), atol=1e-6)
    assert (weights[~mask] == 0).all()
    garbage = torch.randn(batch, slots, 3, generator=g) * 100
    noisy = MemoryState(torch.where(mask[..., None], values, garbage), mask,
                        torch.where(mask[..., None], keys, garbage))
    assert torch.allclose(attention_read(query, noisy)[0], read, atol=1e-5)


def test_read_is_permutation_invariant():
    g = torch.Generator().manual_seed(0)
    values, keys, query = torch.randn(2, 5, 4, generator=g), torch.randn(2, 5, 4, generator=g), torch.randn(2, 4, generator=g)
    mask = torch.ones(2, 5, dtype=torch.bool)
    perm = torch.randperm(5, generator=g)
    a, _ = attention_read(query, MemoryState(values, mask, keys))
    b, _ = attention_read(query, MemoryState(values[:, perm], mask, keys[:, perm]))
    assert torch.allclose(a, b, atol=1e-6)


def test_csr_segments_gathers_rows():
    indptr = torch.tensor([0, 2, 2, 5])
    indices = torch.tensor([7, 8, 1, 2, 3])
    flat, segment = csr_segments(indptr, indices, torch.tensor([2, 1, 0, 2]))
    assert flat.tolist() == [1, 2, 3, 7, 8, 1, 2, 3]
    assert segment.tolist() == [0, 0, 0, 2, 2, 3, 3, 3]


def test_segment_softmax_hand_values():
    w = segment_softmax(torch.tensor([0.0, 0.0, 1.0, 5.0]), torch.tensor([0, 0, 1, 2]), 4)
    assert w.tolist() == pytest.approx([0.5, 0.5, 1.0, 1.0])


@pytest.mark.parametrize("similarity", ["dot", "scaled_dot", "euclidean", "additive"])
def test_ragged_equals_padded_on_random_inputs(similarity):
    g = torch.Generator().manual_seed(1)
    sizes = torch.tensor([3, 0, 1, 7, 2])
    segment = torch.repeat_interleave(torch.arange(5), sizes)
    memory = RaggedMemory(torch.randn(len(segment), 6, generator=g, dtype=torch.float64), segment, 5,
                          keys=torch.randn(len(segment), 4, generator=g, dtype=torch.float64))
    query = torch.randn(5, 4, generator=g, dtype=torch.float64)
    scorer = AdditiveScore(4, 4, 8).double() if similarity == "additive" else None
    ragged, ragged_w = ragged_attention_read(query, memory, similarity=similarity, scorer=scorer)
    state = ragged_to_padded(memory)
    padded, padded_w = attention_read(query, state, similarity=similarity, scorer=scorer)
    assert torch.allclose(ragged, padded, atol=1e-6)
    assert torch.allclose(ragged_w, padded_w[state.mask], atol=1e-6)
    assert ragged[1].abs().sum() == 0  # the empty memory reads zero


def test_ragged_gradients_match_padded():
    g = torch.Generator().manual_seed(2)
    segment = torch.tensor([0, 0, 1, 1, 1])
    values = torch.randn(5, 3, generator=g, requires_grad=True)
    query = torch.randn(2, 3, generator=g, requires_grad=True)
    ragged, _ = ragged_attention_read(query, RaggedMemory(values, segment, 2))
    grads_r = torch.autograd.grad(ragged.square().sum(), (values, query))
    state = ragged_to_padded(RaggedMemory(values, segment, 2))
    padded, _ = attention_read(query, state)
    grads_p = torch.autograd.grad(padded.square().sum(), (values, query))
    for a, b in zip(grads_r, grads_p):
        assert torch.allclose(a, b, atol=1e-6)


def test_bad_similarity_is_rejected():
    state = MemoryState(torch.zeros(1, 1, 1), torch.ones(1, 1, dtype=torch.bool))
    with pytest.raises(ValueError, match="unknown similarity"):
        attention_read(torch.zeros(1, 1), state, similarity="cosine")
    with pytest.raises(ValueError, match="AdditiveScore"):
        attention_read(torch.zeros(1, 1), state, similarity="additive")


def test_weighted_segment_sum_gradcheck_and_order_check():
    from memrec.memory.read import weighted_segment_sum
    segment = torch.tensor([0, 0, 2, 2, 2, 3])
    w = torch.rand(6, dtype=torch.float64, requires_grad=True)
    v = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: weighted_segment_sum(a, b, segment, 5), (w, v))
    out = weighted_segment_sum(w, v, segment, 5)
    assert torch.allclose(out[2], (w[2:5, None] * v[2:5]).sum(0))
    assert out[1].abs().sum() == 0 and out[4].abs().sum() == 0
    with pytest.raises(ValueError, match="non-decreasing"):
        weighted_segment_sum(w, v, torch.tensor([1, 0, 2, 2, 2, 3]), 5)


# -- one layout read by many queries ------------------------------------------------------------
def test_shared_layout_read_equals_one_ragged_read_per_request():
    """Every request b reads every segment i with its own query z[b, i]: the block-diagonal
    SDDMM / softmax / SpMM path equals a ragged read of each (b, i) pair; an empty segment
    reads zeros."""
    torch.manual_seed(3)
    indptr = torch.tensor([0, 3, 3, 4, 8])                      # segment 1 is empty
    rows = torch.tensor([0, 2, 5, 1, 0, 1, 3, 4])
    layout = SharedLayout(indptr, rows)
    keys, values = torch.randn(6, 4), torch.randn(6, 3)
    queries = torch.randn(2, 4, 4)
    weights = shared_layout_softmax(shared_layout_scores(queries, keys, layout), layout)
    read = shared_layout_read(weights, values, layout)
    for b in range(2):
        for i in range(4):
            slots = rows[indptr[i]:indptr[i + 1]]
            memory = RaggedMemory(values[slots], torch.zeros(len(slots), dtype=torch.long), 1,
                                  keys=keys[slots])
            expected, w = ragged_attention_read(queries[b, i][None], memory)
            torch.testing.assert_close(read[b, i], expected[0])
            torch.testing.assert_close(weights[b, indptr[i]:indptr[i + 1]], w)
    assert layout.empty_segments.tolist() == [False, True, False, False]
    assert torch.allclose(weights.view(2, -1)[:, :3].sum(1), torch.ones(2))


def test_multi_hop_read_returns_the_last_query():
    # the last hop reads with z¹ = ReLU(z⁰ + o⁰); MemN2N's output needs it (the purchase DMN)
    keys = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])
    state = MemoryState(keys.clone(), torch.ones(1, 2, dtype=torch.bool), keys)
    q = torch.tensor([[1.0, 1.0]])
    first, _ = attention_read(q, state)
    result = multi_hop_read(q, state, 2, lambda z, o, h: torch.relu(z + o))
    assert torch.allclose(result.query, torch.relu(q + first))
    assert len(result.weights) == 2
    one = multi_hop_read(q, state, 1, lambda z, o, h: z + o)
    assert torch.equal(one.query, q) and torch.allclose(one.read, first)


# -- copy read ----------------------------------------------------------------------------------
from memrec.memory.read import CopyRead, copy_distribution, copy_mixture, repeat_share  # noqa: E402

INF = float("inf")


def test_copy_read_one_slot_hand_oracle():
    # logits (0, ln 2, 0): softmax (1/4, 1/2, 1/4); one slot holding item 2; g = σ(0) = 1/2
    # p = 1/2 · (1/4, 1/2, 1/4) + 1/2 · (0, 0, 1) = (1/8, 1/4, 5/8)
    logits = torch.tensor([[0.0, math.log(2.0), 0.0]])
    log_p = copy_mixture(logits, torch.tensor([[1.0]]), torch.tensor([[2]]),
                         torch.tensor([[True]]), torch.tensor([0.0]))
    assert log_p.exp()[0].tolist() == pytest.approx([0.125, 0.25, 0.625], abs=1e-6)


def test_copy_read_sums_the_weights_of_a_repeated_item():
    # slots (item 1, item 3, item 1) with weights (0.2, 0.5, 0.3): c = (0, 0.5, 0, 0.5);
    # uniform logits over 4 items, g = σ(ln 3) = 3/4: p = 1/4 · 1/4 + 3/4 · c
    log_p = copy_mixture(torch.zeros(1, 4), torch.tensor([[0.2, 0.5, 0.3]]), torch.tensor([[1, 3, 1]]),
                         torch.ones(1, 3, dtype=torch.bool), torch.tensor([math.log(3.0)]))
    assert log_p.exp()[0].tolist() == pytest.approx([0.0625, 0.4375, 0.0625, 0.4375], abs=1e-6)


def test_copy_read_gate_zero_and_one_are_the_pure_cases():
    logits = torch.tensor([[0.3, -1.0, 2.0, 0.5]])
    weights, items, mask = torch.tensor([[0.25, 0.75]]), torch.tensor([[2, 0]]), torch.ones(1, 2, dtype=torch.bool)
    explore = copy_mixture(logits, weights, items, mask, torch.tensor([-INF]))        # g = 0
    torch.testing.assert_close(explore, torch.log_softmax(logits, 1))
    repeat = copy_mixture(logits, weights, items, mask, torch.tensor([INF]))          # g = 1
    assert repeat.exp()[0].tolist() == pytest.approx([0.75, 0.0, 0.25, 0.0], abs=1e-7)
    assert torch.isneginf(repeat[0, [1, 3]]).all()           # nothing outside the memory


def test_copy_read_with_an_empty_memory_is_the_catalogue_softmax():
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 1.0]])
    mask = torch.tensor([[False, False], [True, False]])
    log_p = copy_mixture(logits, torch.tensor([[0.0, 0.0], [1.0, 0.0]]), torch.tensor([[0, 1], [1, 0]]),
                         mask, torch.tensor([5.0, 0.0]))
    torch.testing.assert_close(log_p[0], torch.log_softmax(logits[0], 0))   # even with g = σ(5)


@st.composite
def copy_cases(draw):
    B, M, N = draw(st.integers(1, 4)), draw(st.integers(1, 6)), draw(st.integers(2, 9))
    seed = draw(st.integers(0, 10_000))
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(B, M, generator=g) < 0.7
    weights = masked_softmax(torch.randn(B, M, generator=g) * 2, mask)
    items = torch.randint(0, N, (B, M), generator=g)
    return torch.randn(B, N, generator=g) * 3, weights, items, mask, torch.randn(B, generator=g) * 2


@settings(max_examples=60, deadline=None)
@given(copy_cases())
def test_copy_mixture_is_a_distribution_equal_to_the_dense_formula(case):
    logits, weights, items, mask, gate = case
    log_p = copy_mixture(logits.double(), weights.double(), items, mask, gate.double())
    torch.testing.assert_close(log_p.exp().sum(1), torch.ones(len(logits), dtype=torch.float64))
    g = (torch.sigmoid(gate.double()) * mask.any(1))[:, None]
    dense = (1 - g) * torch.softmax(logits.double(), 1) + g * copy_distribution(weights.double(), items, mask, logits.shape[1])
    torch.testing.assert_close(log_p.exp(), dense)


@settings(max_examples=60, deadline=None)
@given(copy_cases(), st.integers(0, 10_000))
def test_copy_read_padding_is_inert(case, seed):
    logits, weights, items, mask, gate = case
    g = torch.Generator().manual_seed(seed)
    junk_items = torch.where(mask, items, torch.randint(0, logits.shape[1], items.shape, generator=g))
    junk_weights = torch.where(mask, weights, torch.rand(weights.shape, generator=g))
    torch.testing.assert_close(copy_mixture(logits, weights, items, mask, gate),
                               copy_mixture(logits, junk_weights, junk_items, mask, gate))


def test_copy_read_gradients_stay_finite_when_a_copy_mass_underflows():
    logits = torch.tensor([[0.0, 1.0, -1.0]], requires_grad=True)
    scores = torch.tensor([[0.0, -200.0]], requires_grad=True)            # weight e⁻²⁰⁰ → 0 in float32
    gate = torch.tensor([0.5], requires_grad=True)
    weights = masked_softmax(scores, torch.ones(1, 2, dtype=torch.bool))
    log_p = copy_mixture(logits, weights, torch.tensor([[0, 2]]), torch.ones(1, 2, dtype=torch.bool), gate)
    (-log_p[0, 2]).backward()
    assert all(torch.isfinite(t.grad).all() for t in (logits, scores, gate))


def test_repeat_share_and_copy_read_module():
    read = CopyRead(2)
    with torch.no_grad():
        read.gate.weight.zero_()
        read.gate.bias.fill_(math.log(3.0))                                 # g = 3/4
    logits, state = torch.zeros(1, 4), torch.zeros(1, 2)
    weights, items, mask = torch.tensor([[1.0, 0.0]]), torch.tensor([[1, 0]]), torch.tensor([[True, False]])
    log_p = read(logits, state, weights, items, mask)
    # p(1) = 1/4 · 1/4 + 3/4 = 13/16, of which the copy gave 3/4 = 12/16; item 0 is padding
    share = repeat_share(log_p, weights, items, mask, read.gate_logit(state))
    assert share[0].tolist() == pytest.approx([0.0, 12 / 13, 0.0, 0.0], abs=1e-6)


# -- the copy read of unnormalised scores (pairwise-trained models: RUM-I) --------------------------
from memrec.memory.read import copy_candidate_scores, copy_scores  # noqa: E402


def test_copy_scores_one_slot_hand_oracle():
    # scores (0, ln 2, 0); one slot holding item 2; g = σ(0) = 1/2:
    # exp(s') = 1/2 · (1, 2, 1) + 1/2 · (0, 0, 1) = (1/2, 1, 1)
    s = copy_scores(torch.tensor([[0.0, math.log(2.0), 0.0]]), torch.tensor([[1.0]]), torch.tensor([[2]]),
                    torch.tensor([[True]]), torch.tensor([0.0]))
    assert s.exp()[0].tolist() == pytest.approx([0.5, 1.0, 1.0], abs=1e-6)


def test_copy_scores_sum_a_repeated_item_and_gate_zero_and_one_are_the_pure_cases():
    # slots (item 1, item 3, item 1) with weights (0.2, 0.5, 0.3): c = (0, 0.5, 0, 0.5);
    # scores 0, g = 3/4: exp(s') = 1/4 · 1 + 3/4 · c
    scores = torch.zeros(1, 4)
    weights, items, mask = torch.tensor([[0.2, 0.5, 0.3]]), torch.tensor([[1, 3, 1]]), torch.ones(1, 3, dtype=torch.bool)
    s = copy_scores(scores, weights, items, mask, torch.tensor([math.log(3.0)]))
    assert s.exp()[0].tolist() == pytest.approx([0.25, 0.625, 0.25, 0.625], abs=1e-6)
    scores = torch.tensor([[0.3, -1.0, 2.0, 0.5]])
    torch.testing.assert_close(copy_scores(scores, weights, items, mask, torch.tensor([-INF])), scores)   # g = 0
    repeat = copy_scores(scores, weights, items, mask, torch.tensor([INF]))                               # g = 1
    assert repeat.exp()[0].tolist() == pytest.approx([0.0, 0.5, 0.0, 0.5], abs=1e-7)
    assert torch.isneginf(repeat[0, [0, 2]]).all()
    # an empty memory leaves the scores as they are, whatever the gate
    torch.testing.assert_close(copy_scores(scores, weights, items, torch.zeros_like(mask), torch.tensor([5.0])), scores)


@settings(max_examples=60, deadline=None)
@given(copy_cases())
def test_copy_scores_softmax_is_a_repeat_explore_mixture(case):
    # softmax(s') over the catalogue = (1 − g')·softmax(s) + g'·c with g' = g / (g + (1 − g) Σ exp s)
    scores, weights, items, mask, gate = (t.double() if t.is_floating_point() else t for t in case)
    s = copy_scores(scores, weights, items, mask, gate)
    g = (torch.sigmoid(gate) * mask.any(1))[:, None]
    c = copy_distribution(weights, items, mask, scores.shape[1])
    torch.testing.assert_close(s.exp(), (1 - g) * scores.exp() + g * c)                 # the dense formula
    g_prime = g / (g + (1 - g) * scores.exp().sum(1, keepdim=True))
    mixture = (1 - g_prime) * torch.softmax(scores, 1) + g_prime * c
    torch.testing.assert_close(torch.softmax(s, 1), mixture)
    torch.testing.assert_close(mixture.sum(1), torch.ones(len(scores), dtype=torch.float64))


@settings(max_examples=60, deadline=None)
@given(copy_cases(), st.integers(0, 10_000))
def test_copy_candidate_scores_equal_copy_scores_at_the_candidates_and_ignore_padding(case, seed):
    scores, weights, items, mask, gate = case
    g = torch.Generator().manual_seed(seed)
    candidates = torch.randint(0, scores.shape[1], (len(scores), 5), generator=g)
    full = copy_scores(scores, weights, items, mask, gate)
    some = copy_candidate_scores(scores.gather(1, candidates), candidates, weights, items, mask, gate)
    torch.testing.assert_close(some, full.gather(1, candidates))
    junk_items = torch.where(mask, items, torch.randint(0, scores.shape[1], items.shape, generator=g))
    junk_weights = torch.where(mask, weights, torch.rand(weights.shape, generator=g))
    torch.testing.assert_close(copy_scores(scores, junk_weights, junk_items, mask, gate), full)
    torch.testing.assert_close(copy_candidate_scores(scores.gather(1, candidates), candidates, junk_weights,
                                                     junk_items, mask, gate), some)


def test_repeat_share_of_copy_scores():
    # one slot (item 1), g = 3/4, scores 0: exp(s'(1)) = 1/4 + 3/4 = 1, of which the copy gave 3/4
    weights, items, mask = torch.tensor([[1.0]]), torch.tensor([[1]]), torch.tensor([[True]])
    gate = torch.tensor([math.log(3.0)])
    s = copy_scores(torch.zeros(1, 3), weights, items, mask, gate)
    assert repeat_share(s, weights, items, mask, gate)[0].tolist() == pytest.approx([0.0, 0.75, 0.0], abs=1e-6)
