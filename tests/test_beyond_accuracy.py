"""Beyond-accuracy metrics (coverage, Gini, novelty, popularity) against hand computations, and
their tie handling against a brute-force average over every tie-breaking."""

import itertools

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from memrec.beyond_accuracy import (ExposureAccumulator, catalogue_metrics, coverage, gini,
                                    item_popularity, top_k_exposure)

INF = float("inf")

# 3 users x 4 items, no ties: top-1 {0}, {1}, {3}; top-2 {0,1}, {1,2}, {3,0}
SCORES = torch.tensor([[4.0, 3.0, 2.0, 1.0],
                       [1.0, 4.0, 3.0, 2.0],
                       [3.0, 1.0, 2.0, 4.0]])
POPULARITY = np.array([3, 2, 1, 0])     # training users per item; item 3 has none
N_USERS = 4


def test_three_users_four_items_by_hand():
    m = catalogue_metrics(top_k_exposure(SCORES, (1, 2)), POPULARITY, N_USERS)
    # K=1: exposure (1, 1, 0, 1)
    assert m["Coverage@1"] == pytest.approx(3 / 4)
    assert m["Gini@1"] == pytest.approx((-1 * 1 + 1 * 1 + 3 * 1) / (4 * 3))    # sorted 0,1,1,1
    info = -np.log2([3 / 4, 2 / 4, 1 / 4, 1 / 4])          # item 3: n = 0 counts as 1
    assert m["Novelty@1"] == pytest.approx((info[0] + info[1] + info[3]) / 3)
    assert m["AvgPop@1"] == pytest.approx((3 + 2 + 0) / 3)
    # K=2: exposure (2, 2, 1, 1)
    assert m["Coverage@2"] == 1.0
    assert m["Gini@2"] == pytest.approx((-3 * 1 - 1 * 1 + 1 * 2 + 3 * 2) / (4 * 6))  # sorted 1,1,2,2
    assert m["Novelty@2"] == pytest.approx((2 * info[0] + 2 * info[1] + info[2] + info[3]) / 6)
    assert m["AvgPop@2"] == pytest.approx((2 * 3 + 2 * 2 + 1 + 0) / 6)


def test_gini_bounds():
    assert gini(torch.tensor([5.0, 5.0, 5.0, 5.0], dtype=torch.float64)) == 0.0
    assert gini(torch.tensor([0.0, 0.0, 0.0, 7.0], dtype=torch.float64)) == pytest.approx(3 / 4)
    assert gini(torch.zeros(4, dtype=torch.float64)) == 0.0


def test_unranked_candidates_never_count_and_shorten_the_list():
    # user 0 has only two ranked items (the rest are its known items, at -inf)
    scores = torch.tensor([[1.0, -INF, -INF, 2.0], [4.0, 3.0, 2.0, 1.0]])
    e = top_k_exposure(scores, (3,))[3]
    assert e.counts.tolist() == [2.0, 1.0, 1.0, 1.0]        # 2 + 3 items, nothing from the -inf ones
    only_unranked = top_k_exposure(torch.tensor([[-INF, -INF, 5.0]]), (2,))[2]
    assert only_unranked.counts.tolist() == [0.0, 0.0, 1.0]


def test_k_at_or_over_the_catalogue_lists_every_ranked_item():
    e = top_k_exposure(torch.tensor([[1.0, 1.0, 1.0]]), (3, 10))
    assert e[3].counts.tolist() == [1.0, 1.0, 1.0] and e[10].counts.tolist() == [1.0, 1.0, 1.0]
    assert coverage(e[10]) == 1.0


def _plain_metrics(lists, n_items):
    """Coverage, novelty and AvgPop of explicit lists (no ties left)."""
    counts = np.bincount(np.concatenate(lists), minlength=n_items).astype(float)
    info = -np.log2(np.maximum(POPULARITY, 1) / N_USERS)
    return (np.count_nonzero(counts) / n_items, counts @ info / counts.sum(),
            counts @ POPULARITY / counts.sum(), counts)


def test_ties_are_the_exact_expectation_over_every_tie_breaking():
    scores = torch.tensor([[2.0, 1.0, 1.0, 1.0],        # top-2: item 0, then one of three tied
                           [1.0, 1.0, 3.0, -INF],       # top-2: item 2, then one of two tied
                           [0.5, 0.5, 0.5, 0.5]])       # top-2: any two of four
    k = 2
    per_row = []
    for row in scores.numpy():
        # every order a random tie-breaking can produce: sort by (score desc, random key)
        orders = {tuple(sorted(range(4), key=lambda i: (-row[i], perm[i])))
                  for perm in itertools.permutations(range(4))}
        per_row.append([[i for i in order[:k] if row[i] > -INF] for order in sorted(orders)])
    outcomes = [_plain_metrics([np.array(l) for l in combo], 4)
                for combo in itertools.product(*per_row)]
    expected = np.mean([o[:3] for o in outcomes], axis=0)
    expected_counts = np.mean([o[3] for o in outcomes], axis=0)

    e = top_k_exposure(scores, (k,))[k]
    m = catalogue_metrics({k: e}, POPULARITY, N_USERS)
    assert e.counts.numpy() == pytest.approx(expected_counts)
    assert m["Coverage@2"] == pytest.approx(expected[0])
    assert m["Novelty@2"] == pytest.approx(expected[1])
    assert m["AvgPop@2"] == pytest.approx(expected[2])
    assert m["Gini@2"] == pytest.approx(gini(torch.as_tensor(expected_counts)))


def test_a_constant_scorer_gets_the_random_rankers_coverage():
    n_users, n_items, k = 50, 20, 3
    e = top_k_exposure(torch.zeros(n_users, n_items), (k,))[k]
    assert coverage(e) == pytest.approx(1 - (1 - k / n_items) ** n_users)
    assert gini(e.counts) == pytest.approx(0.0, abs=1e-12)


def test_batches_add_up_to_the_whole():
    rng = np.random.default_rng(0)
    scores = torch.as_tensor(rng.integers(0, 4, size=(12, 9)).astype(np.float32))   # many ties
    scores[3, :5] = -INF
    whole, batched = ExposureAccumulator(9, (1, 4)), ExposureAccumulator(9, (1, 4))
    whole.add(scores)
    for rows in (slice(0, 5), slice(5, 6), slice(6, 12)):
        batched.add(scores[rows])
    popularity = np.arange(9)
    assert batched.metrics(popularity, N_USERS) == pytest.approx(whole.metrics(popularity, N_USERS))


def test_item_popularity_counts_distinct_users():
    # user 0: items 0, 2; user 1: nothing; user 2: item 2
    matrix = sp.csr_matrix(np.array([[1, 0, 1], [0, 0, 0], [0, 0, 1]], dtype=np.float32))
    popularity, n_users = item_popularity(matrix)
    assert popularity.tolist() == [1, 0, 2] and n_users == 2
