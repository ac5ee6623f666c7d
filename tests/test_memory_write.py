"""Memory writes (memrec.memory.write) and learned slots (memrec.memory.slots).

Hand-computed cases (arithmetic in comments), the spec's oracles (specs/rum-ksr-stamp-nmrn.md
§1.10, §2.3, §4.8) and hypothesis properties: FIFO keeps the last M in order, a zero-weight write
is the identity, masked slots/events never change anything, unroll == the per-event serving loop.
"""

from __future__ import annotations

import math
from collections import deque
from functools import partial

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from memrec.memory.slots import LearnedSlots
from memrec.memory.state import MemoryState
from memrec.memory.write import (UnrolledStates, erase_add_write, fifo_append, fifo_window,
                                 gated_write, select_rows, unroll)

PROPS = settings(max_examples=30, deadline=None)


def t(x, dtype=torch.float32):
    return torch.tensor(x, dtype=dtype)


def full_state(values, keys=None) -> MemoryState:
    """A fixed-slot memory (RUM-F, KSR, NMRN): every slot real."""
    values = t(values) if not torch.is_tensor(values) else values
    return MemoryState(values, torch.ones(values.shape[:2], dtype=torch.bool), keys)


def assert_state_equal(a: MemoryState, b: MemoryState, *, exact: bool = True) -> None:
    if exact:
        assert torch.equal(a.values, b.values), (a.values, b.values)
    else:
        torch.testing.assert_close(a.values, b.values, rtol=1e-6, atol=1e-7)
    assert torch.equal(a.mask, b.mask)
    assert (a.keys is None) == (b.keys is None)
    if a.keys is not None:
        assert torch.equal(a.keys, b.keys)


def row(state: MemoryState, b: int) -> MemoryState:
    return MemoryState(state.values[b:b + 1], state.mask[b:b + 1],
                       None if state.keys is None else state.keys[b:b + 1])


def serve_loop(write_fn, state: MemoryState, events: tuple, mask: torch.Tensor) -> list[MemoryState]:
    """The serving path: one user at a time, the write called once per real event, no masking."""
    out = []
    for b in range(state.batch_size):
        s = row(state, b)
        for step in range(mask.shape[1]):
            if mask[b, step]:
                s = write_fn(s, *(x[b:b + 1, step] for x in events))
        out.append(s)
    return out


# ------------------------------------------------------------------------------------------
# FIFO
# ------------------------------------------------------------------------------------------

def ids_of(state: MemoryState) -> list:
    """Slot contents as ints, None for empty slots (Dv = 1 memories holding ids)."""
    return [int(v) if m else None for v, m in zip(state.values[0, :, 0].tolist(), state.mask[0].tolist())]


def test_fifo_spec_oracle_keeps_last_k_oldest_first():
    # spec §1.10: K=3, write a,b,c,d in order → [b,c,d] (oldest first)
    a, b, c, d = 1.0, 2.0, 3.0, 4.0
    s = MemoryState.empty(1, 3, 1)
    for x in (a, b, c, d):
        s = fifo_append(s, t([[x]]))
    assert ids_of(s) == [2, 3, 4]
    assert s.mask.tolist() == [[True, True, True]]


def test_fifo_partial_memory_is_right_aligned():
    # newest in the last slot, empty slots at the front with mask False
    s = MemoryState.empty(1, 4, 2)
    s = fifo_append(s, t([[1.0, 10.0]]))
    assert s.mask.tolist() == [[False, False, False, True]]
    s = fifo_append(s, t([[2.0, 20.0]]))
    assert s.mask.tolist() == [[False, False, True, True]]
    assert s.values[0].tolist() == [[0, 0], [0, 0], [1, 10], [2, 20]]


def test_fifo_with_keys_and_inactive_rows_untouched():
    s = MemoryState.empty(2, 2, 1, key_dim=3)
    s = fifo_append(s, t([[1.0], [5.0]]), t([[1.0] * 3, [5.0] * 3]))
    before = MemoryState(s.values.clone(), s.mask.clone(), s.keys.clone())
    s2 = fifo_append(s, t([[2.0], [6.0]]), t([[2.0] * 3, [6.0] * 3]), active=t([True, False], torch.bool))
    assert s2.values[:, :, 0].tolist() == [[1, 2], [0, 5]]
    assert s2.keys[0, :, 0].tolist() == [1, 2]
    assert_state_equal(row(s2, 1), row(before, 1))           # inactive row: exactly as it was
    assert_state_equal(s, before)                            # input not mutated


def test_fifo_keys_must_match_state():
    with pytest.raises(ValueError, match="item_keys"):
        fifo_append(MemoryState.empty(1, 2, 1), t([[1.0]]), t([[1.0]]))
    with pytest.raises(ValueError, match="item_keys"):
        fifo_append(MemoryState.empty(1, 2, 1, key_dim=1), t([[1.0]]))
    with pytest.raises(ValueError, match="item_values"):
        fifo_append(MemoryState.empty(1, 2, 3), t([[1.0]]))


@PROPS
@given(st.integers(1, 5), st.lists(st.lists(st.tuples(st.integers(1, 99), st.booleans()), max_size=12),
                                    min_size=1, max_size=4))
def test_fifo_matches_deque(capacity, pushes):
    """Property: after any push sequence (with inactive steps), each row holds the last M pushed
    items in order, right-aligned, exactly as a deque(maxlen=M)."""
    B, T = len(pushes), max(len(p) for p in pushes)
    items = torch.zeros(B, T, 1)
    active = torch.zeros(B, T, dtype=torch.bool)
    for b, seq in enumerate(pushes):
        for step, (x, on) in enumerate(seq):
            items[b, step, 0], active[b, step] = float(x), on
    s = MemoryState.empty(B, capacity, 1)
    for step in range(T):
        s = fifo_append(s, items[:, step], active=active[:, step])
    for b, seq in enumerate(pushes):
        q = deque((x for x, on in seq if on), maxlen=capacity)
        expect = [None] * (capacity - len(q)) + list(q)
        assert ids_of(row(s, b)) == expect


@PROPS
@given(st.integers(0, 2**31 - 1), st.integers(1, 4), st.integers(0, 7), st.integers(1, 4), st.booleans())
def test_fifo_window_equals_unrolled_fifo(seed, B, T, capacity, with_keys):
    g = torch.Generator().manual_seed(seed)
    values, keys = torch.randn(B, T, 3, generator=g), torch.randn(B, T, 2, generator=g)
    mask = torch.rand(B, T, generator=g) < 0.6               # holes, fully masked rows, any padding
    init = MemoryState.empty(B, capacity, 3, key_dim=2 if with_keys else None)
    events = (values, keys) if with_keys else (values,)
    expected = unroll(fifo_append, init, events, mask)
    got = fifo_window(values, mask, capacity, keys if with_keys else None)
    assert_state_equal(got, expected)


def test_fifo_window_gradient_reaches_only_kept_items():
    values = torch.randn(1, 5, 2, requires_grad=True)
    mask = t([[True, True, False, True, True]], torch.bool)
    fifo_window(values, mask, 2).values.sum().backward()    # keeps positions 3 and 4
    assert values.grad[0, :, 0].tolist() == [0, 0, 0, 1, 1]


# ------------------------------------------------------------------------------------------
# erase / add
# ------------------------------------------------------------------------------------------

def test_erase_add_spec_hand_case():
    # spec §1.10: m=(1,2), z=0.5, e=(1,0), a=(0.2,-0.4)
    #   erase: (1·(1−0.5·1), 2·(1−0.5·0)) = (0.5, 2)
    #   add:   (0.5 + 0.5·0.2, 2 + 0.5·(−0.4)) = (0.6, 1.8)
    # second slot, weight 0: unchanged (3, 4)
    s = full_state([[[1.0, 2.0], [3.0, 4.0]]])
    out = erase_add_write(s, t([[0.5, 0.0]]), t([[1.0, 0.0]]), t([[0.2, -0.4]]))
    torch.testing.assert_close(out.values[0, 0], t([0.6, 1.8]))
    assert out.values[0, 1].tolist() == [3.0, 4.0]
    assert torch.equal(out.mask, s.mask) and out.keys is None


def test_erase_one_weight_one_empties_then_adds():
    # spec §1.10 / §4.8 (NMRN): z_k = 1, e = 1 → m_k ⊙ 0 = 0 after erase, = a after add
    s = full_state([[[5.0, -3.0, 7.0]]])
    zeros = erase_add_write(s, t([[1.0]]), torch.ones(1, 3), torch.zeros(1, 3))
    assert zeros.values.tolist() == [[[0.0, 0.0, 0.0]]]
    a = t([[0.25, -0.5, 0.75]])
    assert torch.equal(erase_add_write(s, t([[1.0]]), torch.ones(1, 3), a).values, a[:, None])


def test_erase_add_per_slot_vectors_match_broadcast():
    g = torch.Generator().manual_seed(0)
    s = full_state(torch.randn(2, 3, 4, generator=g))
    w, e, a = torch.rand(2, 3, generator=g), torch.rand(2, 4, generator=g), torch.randn(2, 4, generator=g)
    flat = erase_add_write(s, w, e, a)
    per_slot = erase_add_write(s, w, e[:, None].expand(2, 3, 4), a[:, None].expand(2, 3, 4))
    assert torch.equal(flat.values, per_slot.values)
    with pytest.raises(ValueError, match="erase"):
        erase_add_write(s, w, torch.rand(2, 5), a)


@PROPS
@given(st.integers(0, 2**31 - 1), st.integers(1, 3), st.integers(1, 5), st.integers(1, 4))
def test_erase_add_changes_only_weighted_slots(seed, B, M, D):
    """Zero-weight slots are unchanged bit for bit (all-zero weights: the identity); slots with
    weight > 0 move (erase in (0,1), add ≠ 0, generic values)."""
    g = torch.Generator().manual_seed(seed)
    s = full_state(torch.randn(B, M, D, generator=g))
    w = torch.rand(B, M, generator=g) * (torch.rand(B, M, generator=g) < 0.5)  # about half exactly 0
    e = torch.rand(B, D, generator=g) * 0.8 + 0.1
    a = torch.randn(B, D, generator=g) + 3.0
    out = erase_add_write(s, w, e, a)
    zero = w == 0
    assert torch.equal(out.values[zero], s.values[zero])
    assert (out.values[~zero] != s.values[~zero]).any(-1).all()
    assert_state_equal(erase_add_write(s, torch.zeros(B, M), e, a), s)


@PROPS
@given(st.integers(0, 2**31 - 1), st.integers(1, 3), st.integers(2, 6), st.integers(1, 4))
def test_masked_slots_never_change_under_masked_softmax_address(seed, B, M, D):
    """With the address a masked softmax (weight exactly 0 on masked slots), masked slots keep
    their contents, whatever the erase/add vectors."""
    g = torch.Generator().manual_seed(seed)
    values = torch.randn(B, M, D, generator=g)
    mask = torch.rand(B, M, generator=g) < 0.5
    mask[:, 0] = True                                          # at least one valid slot per row
    s = MemoryState(values, mask)
    logits = torch.randn(B, M, generator=g).masked_fill(~mask, float("-inf"))
    w = torch.softmax(logits, dim=-1)
    out = erase_add_write(s, w, torch.rand(B, D, generator=g), torch.randn(B, D, generator=g))
    assert torch.equal(out.values[~mask], values[~mask])
    assert torch.equal(out.mask, mask)


# ------------------------------------------------------------------------------------------
# gated write
# ------------------------------------------------------------------------------------------

def test_gated_write_hand_case():
    # slot 1: v=(1,0), u=(1,1): <v,u> = 1, z = σ(1) = 0.7310586
    #         (1−z)·(1,0) + z·(1,1) = (1, z) = (1, 0.7310586)
    # slot 2: v=(0,0), u=(2,−2): <v,u> = 0, z = σ(0) = 0.5 → (1, −1)
    s = full_state([[[1.0, 0.0], [0.0, 0.0]]])
    out = gated_write(s, t([[[1.0, 1.0], [2.0, -2.0]]]))
    z = 1 / (1 + math.exp(-1))
    torch.testing.assert_close(out.values, t([[[1.0, z], [1.0, -1.0]]]))
    assert abs(z - 0.7310586) < 1e-7


def test_gated_write_given_gate_zero_is_identity_one_replaces():
    g = torch.Generator().manual_seed(1)
    s = full_state(torch.randn(2, 3, 4, generator=g))
    u = torch.randn(2, 3, 4, generator=g)
    assert_state_equal(gated_write(s, u, torch.zeros(2, 3)), s)
    assert torch.equal(gated_write(s, u, torch.ones(2, 3)).values, u)
    mixed = gated_write(s, u, t([[0.0, 1.0, 0.25]] * 2))
    assert torch.equal(mixed.values[:, 0], s.values[:, 0]) and torch.equal(mixed.values[:, 1], u[:, 1])
    torch.testing.assert_close(mixed.values[:, 2], 0.75 * s.values[:, 2] + 0.25 * u[:, 2])
    per_dim = gated_write(s, u, torch.full((2, 3, 4), 0.25))
    torch.testing.assert_close(per_dim.values, 0.75 * s.values + 0.25 * u)
    with pytest.raises(ValueError, match="gate"):
        gated_write(s, u, torch.zeros(2, 4))


def test_ksr_write_oracle():
    # KSR (spec §2.3): slot a = relation a, update u_a = e_i + r_a, z_a = σ(v_a·u_a).
    # e_i = (1,0), r_1 = (0,1), r_2 = (0,−1) → u_1 = (1,1), u_2 = (1,−1). Memory starts at 0.
    # write 1: z = σ(0) = 0.5 → v_1 = (0.5, 0.5), v_2 = (0.5, −0.5)
    # write 2 (same item): v_1·u_1 = 1 and v_2·u_2 = 1 → z = σ(1) = 0.7310586;
    #   v_1 = (1−z)(0.5,0.5) + z(1,1) = 0.5 + 0.5z each = 0.8655293; v_2 = (0.8655293, −0.8655293)
    e_i, rel = t([[1.0, 0.0]]), t([[0.0, 1.0], [0.0, -1.0]])
    update = e_i[:, None, :] + rel[None]                      # [B, R, d]
    s = full_state(torch.zeros(1, 2, 2), keys=rel[None])      # keys = relation embeddings
    s1 = gated_write(s, update)
    torch.testing.assert_close(s1.values, t([[[0.5, 0.5], [0.5, -0.5]]]))
    s2 = gated_write(s1, update)
    v = 0.5 + 0.5 / (1 + math.exp(-1))
    torch.testing.assert_close(s2.values, t([[[v, v], [v, -v]]]))
    assert abs(v - 0.8655293) < 1e-7
    assert torch.equal(s2.keys, s.keys) and torch.equal(s2.mask, s.mask)


def test_rum_feature_write_oracle_through_softmax_address():
    # RUM-F (spec §1.3) with K=2 features f_1=(1,0), f_2=(0,1), β=1, item q=(ln 3, 0):
    #   z = softmax(q·f) = softmax(ln 3, 0) = (3/4, 1/4)
    #   e = (1, 0), a = (1, 1), memory m_1 = m_2 = (2, 2):
    #   m_1 = (2·(1−3/4), 2) + 3/4·(1,1) = (0.5+0.75, 2.75) = (1.25, 2.75)
    #   m_2 = (2·(1−1/4), 2) + 1/4·(1,1) = (1.5+0.25, 2.25) = (1.75, 2.25)
    feats = t([[1.0, 0.0], [0.0, 1.0]])
    q = t([[math.log(3.0), 0.0]])
    z = torch.softmax(q @ feats.T, dim=-1)
    s = full_state(torch.full((1, 2, 2), 2.0), keys=feats[None])
    out = erase_add_write(s, z, t([[1.0, 0.0]]), t([[1.0, 1.0]]))
    torch.testing.assert_close(out.values, t([[[1.25, 2.75], [1.75, 2.25]]]))


# ------------------------------------------------------------------------------------------
# unroll
# ------------------------------------------------------------------------------------------

def random_mask(g: torch.Generator, B: int, T: int) -> torch.Tensor:
    """Random holes, plus a fully masked row and a row with trailing padding when B allows."""
    mask = torch.rand(B, T, generator=g) < 0.6
    if B >= 2:
        mask[1] = False
    if B >= 3 and T >= 2:
        mask[2] = torch.arange(T) < T // 2
    return mask


#: writes whose result can differ in the last bit between batch sizes: torch's vectorised and
#: scalar kernels round sigmoid (and sums) differently, so a [1, M] row and a [4, M] batch may
#: disagree by ~1 ulp. Purely elementwise writes (+, ×, where) agree bit for bit.
NOT_BIT_STABLE = {"gated"}


def write_cases(g: torch.Generator, B: int, T: int, M: int, D: int):
    """(name, write_fn, initial state, events tuple) for each primitive."""
    fixed = full_state(torch.randn(B, M, D, generator=g))
    yield "fifo", fifo_append, MemoryState.empty(B, M, D), (torch.randn(B, T, D, generator=g),)
    yield "fifo+keys", fifo_append, MemoryState.empty(B, M, D, key_dim=2), (
        torch.randn(B, T, D, generator=g), torch.randn(B, T, 2, generator=g))
    yield "erase_add", erase_add_write, fixed, (
        torch.softmax(torch.randn(B, T, M, generator=g), -1), torch.rand(B, T, D, generator=g),
        torch.tanh(torch.randn(B, T, D, generator=g)))
    yield "gated", gated_write, fixed, (torch.randn(B, T, M, D, generator=g),)
    yield "gated+gate", gated_write, fixed, (torch.randn(B, T, M, D, generator=g), torch.rand(B, T, M, generator=g))


@PROPS
@given(st.integers(0, 2**31 - 1), st.integers(1, 4), st.integers(0, 6), st.integers(1, 4), st.integers(1, 3))
def test_unroll_equals_per_event_serving_loop(seed, B, T, M, D):
    g = torch.Generator().manual_seed(seed)
    mask = random_mask(g, B, T)
    for name, fn, init, events in write_cases(g, B, T, M, D):
        final = unroll(fn, init, events, mask)
        for b, served in enumerate(serve_loop(fn, init, events, mask)):
            assert_state_equal(row(final, b), served, exact=name not in NOT_BIT_STABLE)
        if T:
            every = unroll(fn, init, events, mask, return_all=True)
            assert isinstance(every, UnrolledStates) and len(every) == T
            assert every.values.shape == (B, T, M, D) and every.mask.shape == (B, T, M)
            assert_state_equal(every.final, final)
            for step in range(T):                             # state t = unroll of the prefix [:t+1]
                prefix = unroll(fn, init, tuple(x[:, :step + 1] for x in events), mask[:, :step + 1])
                assert_state_equal(every.at(step), prefix)
            before = every.before(init)
            assert_state_equal(before.at(0), init)
            if T > 1:
                assert_state_equal(before.at(T - 1), every.at(T - 2))


@pytest.mark.parametrize("where", ["prefix", "suffix", "middle"])
def test_padding_events_never_change_anything(where):
    """Padding (even NaN) at the front, the back or in the middle gives the unpadded result."""
    g = torch.Generator().manual_seed(7)
    B, T, P, M, D = 3, 4, 3, 3, 2
    for name, fn, init, events in write_cases(g, B, T, M, D):
        real = unroll(fn, init, events, torch.ones(B, T, dtype=torch.bool))
        pad = tuple(torch.full((B, P) + x.shape[2:], float("nan")) for x in events)
        if where == "prefix":
            padded = tuple(torch.cat([p, x], 1) for p, x in zip(pad, events))
            mask = torch.arange(T + P) >= P
        elif where == "suffix":
            padded = tuple(torch.cat([x, p], 1) for p, x in zip(pad, events))
            mask = torch.arange(T + P) < T
        else:
            padded = tuple(torch.cat([x[:, :2], p, x[:, 2:]], 1) for p, x in zip(pad, events))
            mask = (torch.arange(T + P) < 2) | (torch.arange(T + P) >= 2 + P)
        got = unroll(fn, init, padded, mask.expand(B, -1))
        assert_state_equal(got, real), name


def test_unroll_dict_events_and_partial_binding():
    g = torch.Generator().manual_seed(3)
    B, T, M, D = 2, 5, 3, 2
    init = full_state(torch.randn(B, M, D, generator=g))
    w, e, a = torch.softmax(torch.randn(B, T, M, generator=g), -1), torch.rand(B, T, D, generator=g), torch.randn(B, T, D, generator=g)
    mask = random_mask(g, B, T)
    by_tuple = unroll(erase_add_write, init, (w, e, a), mask)
    by_dict = unroll(erase_add_write, init, {"add": a, "weights": w, "erase": e}, mask)
    assert_state_equal(by_tuple, by_dict)
    fixed_erase = partial(erase_add_write, erase=torch.full((B, D), 0.5))
    got = unroll(fixed_erase, init, {"weights": w, "add": a}, mask)
    ref = unroll(erase_add_write, init, (w, torch.full((B, T, D), 0.5), a), mask)
    assert_state_equal(got, ref)
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        unroll(erase_add_write, init, (w[:, :2], e, a), mask)


def test_unroll_gradients_skip_masked_events_and_reach_the_rest():
    g = torch.Generator().manual_seed(5)
    B, T, M, D = 2, 4, 3, 2
    init = full_state(torch.randn(B, M, D, generator=g).requires_grad_())
    update = torch.randn(B, T, M, D, generator=g, requires_grad=True)
    mask = t([[True, False, True, False], [False, False, False, False]], torch.bool)
    unroll(gated_write, init, (update,), mask).values.sum().backward()
    per_event = update.grad.abs().sum((2, 3))                  # [B, T]
    assert (per_event[~mask] == 0).all() and (per_event[mask] > 0).all()
    assert torch.equal(init.values.grad[1], torch.ones(M, D))  # fully masked row: state passes through


def test_unroll_is_differentiable_gradcheck():
    g = torch.Generator().manual_seed(11)
    B, T, M, D = 2, 3, 2, 2
    mask = t([[True, True, False], [False, True, True]], torch.bool)
    v0 = torch.randn(B, M, D, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.softmax(torch.randn(B, T, M, generator=g, dtype=torch.float64), -1).requires_grad_()
    e = torch.rand(B, T, D, generator=g, dtype=torch.float64, requires_grad=True)
    a = torch.randn(B, T, D, generator=g, dtype=torch.float64, requires_grad=True)

    def f(v0, w, e, a):
        s = unroll(erase_add_write, full_state(v0), (w, e, a), mask)
        return unroll(gated_write, s, (a[:, :, None, :].expand(B, T, M, D).contiguous(),), mask).values

    assert torch.autograd.gradcheck(f, (v0, w, e, a))


def test_unroll_empty_sequence_and_select_rows_checks():
    init = MemoryState.empty(2, 3, 2)
    events = (torch.zeros(2, 0, 2),)
    assert_state_equal(unroll(fifo_append, init, events, torch.zeros(2, 0, dtype=torch.bool)), init)
    every = unroll(fifo_append, init, events, torch.zeros(2, 0, dtype=torch.bool), return_all=True)
    assert every.values.shape == (2, 0, 3, 2) and every.mask.shape == (2, 0, 3)
    with pytest.raises(ValueError, match="shapes"):
        select_rows(torch.ones(2, dtype=torch.bool), MemoryState.empty(2, 4, 2), init)


# ------------------------------------------------------------------------------------------
# learned slots
# ------------------------------------------------------------------------------------------

def test_learned_slots_gradients_reach_only_addressed_rows():
    torch.manual_seed(0)
    slots = LearnedSlots(10, 4, padding_idx=0)
    assert torch.equal(slots.value_table.weight[0], torch.zeros(4))
    ids = t([[3, 5, 0], [5, 7, 0]], torch.long)
    state = slots(ids)                                         # mask defaults to ids != padding_idx
    assert state.mask.tolist() == [[True, True, False], [True, True, False]]
    assert state.keys is None and state.addressing_keys is state.values
    assert torch.equal(state.values, slots.value_table.weight[ids])
    state.values.pow(2).sum().backward()
    touched = slots.value_table.weight.grad.abs().sum(-1) > 0
    assert touched.nonzero().flatten().tolist() == [3, 5, 7]   # not the padding row 0, nor the rest
    assert 0.002 < slots.value_table.weight[1:].std().item() < 0.05   # init_std = 0.01


def test_learned_slots_separate_key_table():
    torch.manual_seed(0)
    slots = LearnedSlots(6, 3, separate_keys=True, key_dim=5)
    ids, mask = t([[1, 2]], torch.long), t([[True, False]], torch.bool)
    state = slots(ids, mask)
    assert state.mask.tolist() == [[True, False]]
    assert state.keys.shape == (1, 2, 5) and state.values.shape == (1, 2, 3)
    assert torch.equal(state.keys, slots.key_table.weight[ids])
    assert not torch.equal(slots.key_table.weight[:, :3], slots.value_table.weight)
    state.keys.sum().backward()                                # a loss on keys only
    assert slots.value_table.weight.grad is None
    assert (slots.key_table.weight.grad.abs().sum(-1) > 0).nonzero().flatten().tolist() == [1, 2]
    with pytest.raises(ValueError, match="key_dim"):
        LearnedSlots(6, 3, key_dim=5)
    shared = LearnedSlots(6, 3)
    assert shared.key_table is None and not shared.separate_keys
    assert shared(ids).mask.all()                              # no padding index: every slot real
