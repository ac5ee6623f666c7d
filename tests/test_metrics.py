"""Metrics: hand-checked values and the exact tie expectation against brute force."""

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from memrec import metrics as M


def counts(scores, relevant, excluded=None):
    scores = torch.tensor([scores], dtype=torch.float64)
    rel = torch.tensor([relevant])
    mask = torch.ones_like(rel, dtype=torch.bool)
    exc = None if excluded is None else torch.tensor([excluded])
    return M.rank_counts(scores, rel, mask, exc)


def value(name, c, k=None):
    return float(M.metric_values(c, (k or 1,))[name if k is None else f"{name}@{k}"][0])


def test_single_target_without_ties_hand_values():
    # target (column 2, score 0.7) has two higher scores → rank 3
    c = counts([0.9, 0.8, 0.7, 0.1, 0.0], [2])
    assert value("HR", c, 3) == 1.0 and value("HR", c, 2) == 0.0
    assert value("NDCG", c, 5) == pytest.approx(1 / math.log2(4))
    assert value("MRR", c, 5) == pytest.approx(1 / 3)
    assert value("MAP", c, 5) == pytest.approx(1 / 3)
    assert value("Precision", c, 5) == pytest.approx(1 / 5)
    assert value("Recall", c, 5) == 1.0
    assert value("AUC", c) == pytest.approx(2 / 4)  # beats 2 of 4 negatives


def test_constant_scorer_gets_random_ranker_value():
    # 10 candidates, one relevant, all scores equal: rank uniform on 1..10
    c = counts([0.5] * 10, [4])
    assert value("HR", c, 3) == pytest.approx(0.3)
    assert value("MRR", c, 10) == pytest.approx(sum(1 / r for r in range(1, 11)) / 10)
    assert value("NDCG", c, 10) == pytest.approx(sum(1 / math.log2(r + 1) for r in range(1, 11)) / 10)
    assert value("AUC", c) == pytest.approx(0.5)


def test_excluded_candidates_are_not_ranked():
    # column 0 outscores the target but is excluded (a training item): target ranks first
    c = counts([0.9, 0.1, 0.5], [2], excluded=[True, False, False])
    assert value("HR", c, 1) == 1.0
    assert value("AUC", c) == 1.0  # one negative left, below the target
    assert float(c.n_candidates[0]) == 2


def test_multiple_targets_hand_values():
    # ranks of the relevant items: 1 and 3 (no ties); 2 relevant, 5 candidates
    c = counts([0.9, 0.8, 0.7, 0.1, 0.0], [0, 2])
    assert value("Recall", c, 2) == pytest.approx(0.5)
    assert value("Precision", c, 5) == pytest.approx(2 / 5)
    assert value("MAP", c, 5) == pytest.approx((1 / 1 + 2 / 3) / 2)
    ideal = 1 + 1 / math.log2(3)
    assert value("NDCG", c, 5) == pytest.approx((1 + 1 / math.log2(4)) / ideal)
    assert value("MRR", c, 5) == 1.0
    assert value("AUC", c) == pytest.approx((3 / 3 + 2 / 3) / 2)


def brute_force(scores, relevant, k):
    """Average each metric over every tie-breaking order (all permutations of tied items)."""
    n = len(scores)
    rel = set(relevant)
    totals = {name: 0.0 for name in ("HR", "Recall", "Precision", "NDCG", "MRR", "MAP", "AUC")}
    perms = list(itertools.permutations(range(n)))
    count = 0
    for perm in perms:
        # a permutation is a tie-break order: sort by (-score, position in perm)
        position = {item: p for p, item in enumerate(perm)}
        order = sorted(range(n), key=lambda i: (-scores[i], position[i]))
        ranks = {item: r + 1 for r, item in enumerate(order)}
        rel_ranks = sorted(ranks[i] for i in rel)
        hits = [r for r in rel_ranks if r <= k]
        totals["HR"] += float(bool(hits))
        totals["Recall"] += len(hits) / len(rel)
        totals["Precision"] += len(hits) / k
        idcg = sum(1 / math.log2(r + 1) for r in range(1, min(len(rel), k) + 1))
        totals["NDCG"] += sum(1 / math.log2(r + 1) for r in hits) / idcg
        totals["MRR"] += 1 / rel_ranks[0] if rel_ranks[0] <= k else 0.0
        totals["MAP"] += sum((j + 1) / r for j, r in enumerate(hits)) / min(len(rel), k)
        negatives = [i for i in range(n) if i not in rel]
        totals["AUC"] += np.mean([np.mean([ranks[i] < ranks[j] for j in negatives]) for i in rel])
        count += 1
    return {name: v / count for name, v in totals.items()}


@settings(max_examples=60, deadline=None)
@given(st.integers(3, 6).flatmap(lambda n: st.tuples(
    st.lists(st.integers(0, 2), min_size=n, max_size=n),
    st.sets(st.integers(0, n - 1), min_size=1, max_size=n - 1),
    st.integers(1, n))))
def test_tie_expectation_matches_brute_force(case):
    scores, relevant, k = case
    relevant = sorted(relevant)
    expected = brute_force(scores, relevant, k)
    got = M.metric_values(counts([float(s) for s in scores], relevant), (k,))
    for name, want in expected.items():
        key = name if name == "AUC" else f"{name}@{k}"
        assert float(got[key][0]) == pytest.approx(want, abs=1e-9), (name, scores, relevant, k)


def test_padding_slots_are_ignored():
    scores = torch.tensor([[0.9, 0.5, 0.1, 0.3]], dtype=torch.float64)
    one = M.rank_counts(scores, torch.tensor([[1]]), torch.tensor([[True]]))
    padded = M.rank_counts(scores, torch.tensor([[1, 0]]), torch.tensor([[True, False]]))
    a, b = M.metric_values(one), M.metric_values(padded)
    for name in a:
        assert float(a[name][0]) == pytest.approx(float(b[name][0])), name


def test_nan_scores_are_an_error():
    with pytest.raises(ValueError, match="NaN"):
        counts([0.1, float("nan")], [0])


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 12))
def test_comparison_and_sort_paths_agree(seed, n_relevant):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, 6, (3, 20), generator=g).float()   # many ties
    relevant = torch.stack([torch.randperm(20, generator=g)[:n_relevant] for _ in range(3)])
    mask = torch.rand(3, n_relevant, generator=g) > 0.2
    excluded = torch.rand(3, 20, generator=g) > 0.7
    excluded[torch.arange(3)[:, None].expand_as(relevant), relevant] = False
    a = M.rank_counts(scores, relevant, mask, excluded, method="compare")
    b = M.rank_counts(scores, relevant, mask, excluded, method="sort")
    for field in ("above", "tied", "rel_above", "rel_tied", "n_candidates"):
        assert torch.equal(getattr(a, field)[mask] if getattr(a, field).dim() == 2 else getattr(a, field),
                           getattr(b, field)[mask] if getattr(b, field).dim() == 2 else getattr(b, field)), field
