"""Issue 20's hot paths against the implementations they replaced (``hot_path_references``):
the log-depth affine scan (values and gradients, both of its paths, zero multipliers), the
final-state loops without a per-step host sync (erase-add and gated, bit for bit where the
arithmetic is the same), KSR's encode through ``gated_final`` against its old unroll, and the
sort-based relevant-vs-relevant rank counts (ties, exclusions, padding, −∞, a heavy user), whose
memory no longer grows as T²."""

from __future__ import annotations

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from memrec import metrics as M
from memrec.memory import erase_add
from memrec.memory.state import MemoryState
from memrec.memory.write import (affine_scan, erase_add_final, erase_add_unroll, erase_add_write,
                                 gated_final, gated_write, unroll)
from memrec.models.ksr import KSR

from .hot_path_references import (reference_average_precision, reference_counts_by_comparison,
                                  reference_hit_rate, reference_mrr, reference_ndcg, reference_affine_scan, reference_erase_add_final,
                                  reference_ksr_encode, reference_rank_counts)

#: float32 tolerance of results that are summed in another order (the log-depth scan)
F32 = dict(rtol=1e-5, atol=1e-6)
F64 = dict(rtol=1e-12, atol=1e-12)


def full(values: torch.Tensor) -> MemoryState:
    return MemoryState(values, torch.ones(values.shape[:2], dtype=torch.bool))


def padding_masks(B: int, T: int, g: torch.Generator) -> torch.Tensor:
    """Right padding, left padding, holes, an empty row and a full row, cycled over the batch."""
    lengths = torch.randint(0, T + 1, (B,), generator=g)
    right = torch.arange(T)[None, :] < lengths[:, None]
    kinds = [right, right.flip(1), torch.rand(B, T, generator=g) > 0.4,
             torch.zeros(B, T, dtype=torch.bool), torch.ones(B, T, dtype=torch.bool)]
    return torch.stack([kinds[b % len(kinds)][b] for b in range(B)])


def grads(outputs: torch.Tensor, leaves, probe: torch.Tensor):
    return torch.autograd.grad((outputs * probe).sum(), leaves)


# -- 1. affine scan ---------------------------------------------------------------------------
def affine_inputs(B, T, M, D, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    initial = torch.randn(B, M, D, generator=g, dtype=dtype)
    multiplier = torch.rand(B, T, M, D, generator=g, dtype=dtype)
    multiplier[torch.rand(B, T, M, D, generator=g) < 0.1] = 0     # erase gates of 1: m = 0
    multiplier[torch.rand(B, T, M, D, generator=g) < 0.1] = 1     # unaddressed slots: m = 1
    increment = torch.randn(B, T, M, D, generator=g, dtype=dtype)
    probe = torch.randn(B, T, M, D, generator=g, dtype=dtype)
    return [x.requires_grad_() for x in (initial, multiplier, increment)], probe


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("B,T,M,D", [(1, 1, 2, 3), (2, 2, 3, 2), (2, 8, 3, 4), (2, 9, 3, 4),
                                     (1, 33, 5, 7), (3, 64, 4, 5), (1, 257, 10, 16), (2, 100, 1, 1)])
def test_affine_scan_equals_the_loop_with_gradients(B, T, M, D, dtype):
    leaves, probe = affine_inputs(B, T, M, D, dtype, seed=T)
    new, old = affine_scan(*leaves), reference_affine_scan(*leaves)
    tol = F64 if dtype == torch.float64 else F32
    torch.testing.assert_close(new, old, **tol)
    for a, b in zip(grads(new, leaves, probe), grads(old, leaves, probe)):
        torch.testing.assert_close(a, b, **tol)


@pytest.mark.parametrize("limit", [0, 1 << 30])
def test_both_affine_scan_paths_equal_the_loop(monkeypatch, limit):
    """limit 0: every step takes the fused loop; 2^30: every sequence goes log-depth."""
    monkeypatch.setattr(erase_add, "LOG_DEPTH_MAX_STEP", limit)
    leaves, probe = affine_inputs(4, 77, 3, 5, torch.float64, seed=1)
    new, old = affine_scan(*leaves), reference_affine_scan(*leaves)
    torch.testing.assert_close(new, old, **F64)
    for a, b in zip(grads(new, leaves, probe), grads(old, leaves, probe)):
        torch.testing.assert_close(a, b, **F64)


def test_affine_scan_takes_non_contiguous_inputs_and_an_empty_sequence():
    leaves, _ = affine_inputs(2, 12, 3, 4, torch.float64, seed=2)
    initial, multiplier, increment = (x.detach() for x in leaves)
    strided = multiplier.transpose(2, 3).contiguous().transpose(2, 3)        # same values, other strides
    torch.testing.assert_close(affine_scan(initial, strided, increment),
                               reference_affine_scan(initial, multiplier, increment), **F64)
    assert affine_scan(initial, multiplier[:, :0], increment[:, :0]).shape == (2, 0, 3, 4)


def test_erase_add_unroll_equals_the_stepwise_unroll_on_a_long_padded_sequence():
    g = torch.Generator().manual_seed(3)
    B, T, M, D = 3, 70, 4, 5
    mask = padding_masks(B, T, g)
    leaves = [torch.randn(B, M, D, generator=g, dtype=torch.float64).requires_grad_(),
              torch.softmax(torch.randn(B, T, M, generator=g, dtype=torch.float64), -1).requires_grad_(),
              torch.rand(B, T, D, generator=g, dtype=torch.float64).requires_grad_(),
              torch.randn(B, T, D, generator=g, dtype=torch.float64).requires_grad_()]
    init, w, e, a = leaves
    fast = erase_add_unroll(full(init), w, e, a, mask).values
    slow = unroll(erase_add_write, full(init), (w, e, a), mask, return_all=True).values
    torch.testing.assert_close(fast, slow, **F64)
    probe = torch.randn(fast.shape, generator=g, dtype=torch.float64)
    for x, y in zip(grads(fast, leaves, probe), grads(slow, leaves, probe)):
        torch.testing.assert_close(x, y, **F64)


# -- 2. erase_add_final without a per-step host sync ------------------------------------------
def erase_add_inputs(B, T, M, D, seed):
    g = torch.Generator().manual_seed(seed)
    leaves = [torch.randn(B, M, D, generator=g).requires_grad_(),
              torch.softmax(torch.randn(B, T, M, generator=g), -1).requires_grad_(),
              torch.rand(B, T, D, generator=g).requires_grad_(),
              torch.randn(B, T, D, generator=g).requires_grad_()]
    return leaves, padding_masks(B, T, g), torch.randn(B, M, D, generator=g)


@pytest.mark.parametrize("B,T", [(1, 1), (1, 9), (5, 1), (7, 13), (10, 40)])
def test_erase_add_final_is_bitwise_the_old_loop_with_gradients(B, T):
    leaves, mask, probe = erase_add_inputs(B, T, 4, 3, seed=B * T)
    state = full(leaves[0])
    new = erase_add_final(state, *leaves[1:], mask).values
    old = reference_erase_add_final(state, *leaves[1:], mask).values
    assert torch.equal(new, old)
    for a, b in zip(grads(new, leaves, probe), grads(old, leaves, probe)):
        assert torch.equal(a, b)


def test_erase_add_final_of_nothing_is_the_initial_memory():
    leaves, _, _ = erase_add_inputs(3, 0, 2, 2, seed=0)
    assert torch.equal(erase_add_final(full(leaves[0]), *leaves[1:], torch.zeros(3, 0, dtype=torch.bool)).values,
                       leaves[0])
    leaves, _, _ = erase_add_inputs(3, 4, 2, 2, seed=0)
    assert torch.equal(erase_add_final(full(leaves[0]), *leaves[1:], torch.zeros(3, 4, dtype=torch.bool)).values,
                       leaves[0])


def test_regression_erase_add_final_reads_the_host_once_not_every_step(monkeypatch):
    """It used to call nonzero() (a device→host sync) at every step."""
    reads = []
    tolist = torch.Tensor.tolist
    monkeypatch.setattr(torch.Tensor, "nonzero", lambda *a, **k: pytest.fail("nonzero in the loop"))
    monkeypatch.setattr(torch.Tensor, "tolist", lambda self: reads.append(1) or tolist(self))
    leaves, mask, _ = erase_add_inputs(6, 50, 3, 2, seed=4)
    with torch.no_grad():
        erase_add_final(full(leaves[0]), *leaves[1:], mask)
    assert len(reads) == 1


# -- 3. gated_final and KSR.encode ------------------------------------------------------------
def gated_inputs(B, T, M, D, seed, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, M, D, generator=g, dtype=dtype).requires_grad_(),
            torch.randn(B, T, M, D, generator=g, dtype=dtype).requires_grad_(),
            padding_masks(B, T, g), torch.randn(B, M, D, generator=g, dtype=dtype))


@pytest.mark.parametrize("B,T", [(1, 1), (4, 6), (10, 25)])
def test_gated_final_is_bitwise_the_unroll_with_gradients(B, T):
    initial, update, mask, probe = gated_inputs(B, T, 3, 4, seed=T)
    new = gated_final(full(initial), update, mask).values
    old = unroll(gated_write, full(initial), (update,), mask).values
    assert torch.equal(new, old)
    for a, b in zip(grads(new, (initial, update), probe), grads(old, (initial, update), probe)):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_gated_final_with_a_slot_offset_equals_the_summed_update():
    initial, _, mask, probe = gated_inputs(5, 11, 3, 4, seed=7, dtype=torch.float64)
    g = torch.Generator().manual_seed(8)
    item = torch.randn(5, 11, 4, generator=g, dtype=torch.float64).requires_grad_()
    offset = torch.randn(3, 4, generator=g, dtype=torch.float64).requires_grad_()
    new = gated_final(full(initial), item, mask, slot_offset=offset).values
    old = unroll(gated_write, full(initial), (item.unsqueeze(2) + offset,), mask).values
    torch.testing.assert_close(new, old, **F64)
    leaves = (initial, item, offset)
    for a, b in zip(grads(new, leaves, probe), grads(old, leaves, probe)):
        torch.testing.assert_close(a, b, **F64)


def test_gated_final_padding_is_inert_even_when_it_holds_nan():
    initial, update, mask, probe = gated_inputs(6, 9, 2, 3, seed=5)
    poisoned = update.detach().masked_fill(~mask[:, :, None, None], float("nan")).requires_grad_()
    new = gated_final(full(initial), poisoned, mask).values
    old = unroll(gated_write, full(initial), (update,), mask).values
    assert torch.equal(new, old)
    grad_initial, grad_update = grads(new, (initial, poisoned), probe)
    assert torch.isfinite(grad_initial).all() and (grad_update[~mask] == 0).all()
    assert torch.equal(new[~mask.any(1)], initial[~mask.any(1)])          # rows without events


def test_gated_final_shape_errors():
    state = full(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="update"):
        gated_final(state, torch.zeros(2, 5, 3, 2), torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="slot_offset"):
        gated_final(state, torch.zeros(2, 5, 4), torch.ones(2, 5, dtype=torch.bool), slot_offset=torch.zeros(2, 4))


def ksr(variant: str) -> KSR:
    torch.manual_seed(0)
    model = KSR(5, 30, variant=variant, dim=6, hidden=5, kg_dim=4, out_dim=4, relations=3,
                dropout=0.0, kg=None).eval()
    model.linked[[2, 5, 11]] = False                                    # unlinked items do not write
    return model


@pytest.mark.parametrize("variant", ["official", "paper"])
def test_ksr_encode_equals_its_old_unroll_for_every_user(variant):
    model = ksr(variant)
    g = torch.Generator().manual_seed(9)
    B, L = 12, 17
    lengths = torch.tensor([0, 1, 2, 17, 5, 9, 1, 0, 16, 3, 17, 8])
    mask = torch.arange(L)[None, :] < lengths[:, None]
    history = torch.randint(0, 30, (B, L), generator=g) * mask               # right padding, item 0
    users = torch.arange(B)
    new, old = model.encode(users, history, mask), reference_ksr_encode(model, users, history, mask)
    torch.testing.assert_close(new.values, old.values, rtol=1e-6, atol=1e-7)
    assert torch.equal(new.hidden, old.hidden) and torch.equal(new.pending, old.pending)
    assert torch.equal(new.values[lengths == 0], torch.zeros_like(new.values[lengths == 0]))
    # padding is inert: other padded ids, or a longer pad, give the same states
    repadded = torch.cat([torch.where(mask, history, 29), torch.full((B, 5), 7)], 1)
    again = model.encode(users, repadded, torch.cat([mask, torch.zeros(B, 5, dtype=torch.bool)], 1))
    assert torch.equal(again.values, new.values) and torch.equal(again.pending, new.pending)


def test_ksr_encode_gradients_equal_the_old_unroll():
    model = ksr("official")
    model.entity.requires_grad_(True)
    g = torch.Generator().manual_seed(10)
    mask = padding_masks(6, 10, g)
    history = torch.randint(0, 30, (6, 10), generator=g)
    users = torch.arange(6)
    leaves = [model.entity, model.relation_keys, model.write_projection.weight]
    probe = torch.randn(6, 3, 4, generator=g)
    new = grads(model.encode(users, history, mask).values, leaves, probe)
    old = grads(reference_ksr_encode(model, users, history, mask).values, leaves, probe)
    for a, b in zip(new, old):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


# -- 4. rank counts: relevant items by sorting ------------------------------------------------
FIELDS = ("above", "tied", "rel_above", "rel_tied", "relevant_mask", "n_candidates", "n_relevant")


def assert_counts_equal(a: M.RankCounts, b: M.RankCounts) -> None:
    for field in FIELDS:
        assert torch.equal(getattr(a, field), getattr(b, field)), field


def ranking_case(B, C, T, seed, levels=5):
    """Integer scores from a few levels (many ties, within and across relevant items), −∞ for
    some candidates (the full-ranking protocol's unranked ones), exclusions, padding slots."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, levels, (B, C), generator=g).float()
    scores[torch.rand(B, C, generator=g) < 0.1] = float("-inf")
    relevant = torch.stack([torch.randperm(C, generator=g)[:T] for _ in range(B)])
    mask = torch.rand(B, T, generator=g) > 0.25
    mask[0] = True                                                     # one request without padding
    excluded = torch.rand(B, C, generator=g) < 0.3
    excluded[torch.arange(B)[:, None].expand_as(relevant), relevant] = False
    return scores, relevant, mask, excluded


@pytest.mark.parametrize("method", ["auto", "compare", "sort"])
@pytest.mark.parametrize("B,C,T,seed", [(4, 12, 1, 0), (6, 30, 5, 1), (5, 40, 12, 2), (3, 200, 60, 3),
                                        (8, 50, 50, 4)])
def test_rank_counts_equal_the_pairwise_counts(B, C, T, seed, method):
    scores, relevant, mask, excluded = ranking_case(B, C, T, seed)
    for exc in (None, excluded):
        assert_counts_equal(M.rank_counts(scores, relevant, mask, exc, method=method),
                            reference_rank_counts(scores, relevant, mask, exc, method=method))
    n = (scores > float("-inf")).sum(1)
    assert_counts_equal(M.rank_counts(scores, relevant, mask, n_candidates=n, method=method),
                        reference_rank_counts(scores, relevant, mask, n_candidates=n, method=method))


def test_rank_counts_of_relevant_items_scored_minus_infinity_beside_padding():
    """Padding sorts as −∞: a real relevant item at −∞ must not count it as tied."""
    scores = torch.tensor([[float("-inf"), float("-inf"), 1.0, 0.0, float("-inf")]])
    relevant = torch.tensor([[0, 1, 2, 3, 4]])
    mask = torch.tensor([[True, True, True, False, False]])
    new, old = M.rank_counts(scores, relevant, mask), reference_rank_counts(scores, relevant, mask)
    assert_counts_equal(new, old)
    assert new.rel_tied[0, :3].tolist() == [2.0, 2.0, 1.0] and new.rel_above[0, :3].tolist() == [1.0, 1.0, 0.0]


def test_rank_counts_of_a_heavy_user_equal_the_pairwise_counts():
    """A temporal split's heavy user: thousands of held-out items in one request."""
    scores, relevant, mask, excluded = ranking_case(3, 6000, 3000, seed=11, levels=40)
    assert_counts_equal(M.rank_counts(scores, relevant, mask, excluded),
                        reference_rank_counts(scores, relevant, mask, excluded))


@pytest.mark.parametrize("B,C,T,seed,levels", [(6, 30, 1, 5, 3), (8, 50, 5, 6, 4), (5, 200, 40, 7, 6),
                                               (64, 2000, 1, 8, 2000), (16, 300, 3, 9, 2)])
def test_metrics_at_k_equal_their_log_binomial_forms(B, C, T, seed, levels):
    """HR and MRR take 1 − s/g and a harmonic difference where the best group holds one
    relevant item, NDCG and MAP index prefix tables cut at k: the values of the general forms."""
    scores, relevant, mask, _ = ranking_case(B, C, T, seed, levels=levels)
    kept = mask.any(1)                                   # requests hold at least one relevant item
    scores, relevant, mask = scores[kept], relevant[kept], mask[kept]
    counts = M.rank_counts(scores, relevant, mask, n_candidates=(scores > float("-inf")).sum(1))
    assert (counts.rel_tied[counts.relevant_mask] == 1).any()            # both kinds of group
    for k in (1, 5, 10, 20):
        for new, old in ((M.hit_rate, reference_hit_rate), (M.mrr, reference_mrr), (M.ndcg, reference_ndcg),
                         (M.average_precision, reference_average_precision)):
            torch.testing.assert_close(new(counts, k), old(counts, k), rtol=0, atol=1e-12,
                                       msg=lambda m: f"{new.__name__}@{k}: {m}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_counts_by_comparison_in_numpy_equal_the_torch_comparisons(dtype):
    scores, relevant, _, excluded = ranking_case(7, 300, 3, seed=12, levels=4)
    scores = scores.to(dtype)
    target = scores.gather(1, relevant)
    for exc in (None, excluded):
        new, old = M._counts_by_comparison(scores, target, exc), reference_counts_by_comparison(scores, target, exc)
        assert torch.equal(new[0], old[0]) and torch.equal(new[1], old[1])


def largest_allocation(fn) -> int:
    """Bytes of the largest single CPU allocation while ``fn`` runs."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return max((e.cpu_memory_usage for e in prof.events()), default=0)


def test_regression_rank_counts_memory_is_linear_in_the_relevant_items():
    """Comparing relevant items pairwise allocated [B, T, T]: 16 MB here, gigabytes for a
    full-ranking batch with a heavy user. Sorting keeps every allocation O(B·(C + T))."""
    B, C, T = 2, 4000, 2000
    scores, relevant, mask, _ = ranking_case(B, C, T, seed=12)
    linear = 8 * B * (C + T)                                             # one float64/long row set
    assert largest_allocation(lambda: M.rank_counts(scores, relevant, mask)) <= linear
    assert largest_allocation(lambda: reference_rank_counts(scores, relevant, mask)) >= B * T * T
