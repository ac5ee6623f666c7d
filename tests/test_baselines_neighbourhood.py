"""ItemKNN, RP3Beta and EASE: hand-computed oracles, the scoring contract, learnability.

The tiny data set used throughout (4 users x 5 items):

    user   items          deg(u)
    u0     {0, 4}         2
    u1     {2, 3}         2
    u2     {1, 3}         2
    u3     {0, 2, 3, 4}   4

    item popularity pop = (2, 1, 2, 3, 2)
    co-occurrence c_ij (i < j, nonzero only):
        c02 = 1 (u3)  c03 = 1 (u3)  c04 = 2 (u0, u3)  c13 = 1 (u2)
        c23 = 2 (u1, u3)  c24 = 1 (u3)  c34 = 1 (u3)
    (all other pairs are 0). It was chosen so that every row's largest similarity is unique, so
    k = 1 truncation is well defined.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

from memrec.models.capabilities import AnonymousScorer, HistoryScorer

from memrec.data.interactions import IdMap, Interactions
from memrec.models.base import Query
from memrec.nn import item_item
from memrec.models.baselines.ease import EASE
from memrec.models.baselines.itemknn import ItemKNN
from memrec.models.baselines.rp3beta import RP3Beta

X_TINY = np.array([
    [1, 0, 0, 0, 1],
    [0, 0, 1, 1, 0],
    [0, 1, 0, 1, 0],
    [1, 0, 1, 1, 1],
], dtype=np.float64)

MODELS = [ItemKNN, RP3Beta, EASE]


def interactions(x: np.ndarray) -> Interactions:
    users, items = np.nonzero(x)
    return Interactions(users.astype(np.int32), items.astype(np.int32),
                        IdMap.range(x.shape[0]), IdMap.range(x.shape[1]))


def fitted(cls, x: np.ndarray = X_TINY, **kwargs):
    model = cls(x.shape[0], x.shape[1], **kwargs)
    model.fit_closed_form(interactions(x))
    return model


def query(histories: list[list[int]], users: list[int] | None = None,
          pad_with: int = 0, width: int | None = None) -> Query:
    """Right-padded Query; padded slots hold ``pad_with`` (any value: the mask must hide it)."""
    width = width or max(len(h) for h in histories)
    hist = torch.full((len(histories), width), pad_with, dtype=torch.long)
    mask = torch.zeros(len(histories), width, dtype=torch.bool)
    for r, h in enumerate(histories):
        hist[r, :len(h)] = torch.tensor(h, dtype=torch.long)
        mask[r, :len(h)] = True
    users = torch.tensor(users if users is not None else [-1] * len(histories))
    return Query(users, hist, mask)


def scores(model, histories, **kwargs) -> np.ndarray:
    with torch.no_grad():
        return model.score_all(query(histories, **kwargs)).numpy()


def dense_similarity(model) -> np.ndarray:
    """The item-item matrix S held by a neighbour model, made dense."""
    s = np.zeros((model.n_items, model.n_items))
    ids, w = model.neighbour_ids.numpy(), model.neighbour_weights.numpy()
    np.add.at(s, (np.repeat(np.arange(model.n_items), ids.shape[1]), ids.ravel()), w.ravel())
    return s


# -- ItemKNN --------------------------------------------------------------------------------------
R6, R3 = math.sqrt(6), math.sqrt(3)

# shrink = 0: sim(i,j) = c_ij / sqrt(pop_i pop_j)
#   s02 = 1/sqrt(2*2) = 1/2      s03 = 1/sqrt(2*3) = 1/sqrt6   s04 = 2/sqrt(2*2) = 1
#   s13 = 1/sqrt(1*3) = 1/sqrt3  s23 = 2/sqrt(2*3) = 2/sqrt6   s24 = 1/sqrt(2*2) = 1/2
#   s34 = 1/sqrt(3*2) = 1/sqrt6
KNN_SIM = np.array([
    [0,      0,      1 / 2,  1 / R6, 1],
    [0,      0,      0,      1 / R3, 0],
    [1 / 2,  0,      0,      2 / R6, 1 / 2],
    [1 / R6, 1 / R3, 2 / R6, 0,      1 / R6],
    [1,      0,      1 / 2,  1 / R6, 0],
])
# shrink = 1: sim(i,j) = c_ij / (sqrt(pop_i pop_j) + 1)
#   s02 = 1/(2+1) = 1/3   s03 = 1/(sqrt6+1)   s04 = 2/(2+1) = 2/3   s13 = 1/(sqrt3+1)
#   s23 = 2/(sqrt6+1)     s24 = 1/3           s34 = 1/(sqrt6+1)
KNN_SIM_SHRINK1 = np.array([
    [0,            0,            1 / 3,        1 / (R6 + 1), 2 / 3],
    [0,            0,            0,            1 / (R3 + 1), 0],
    [1 / 3,        0,            0,            2 / (R6 + 1), 1 / 3],
    [1 / (R6 + 1), 1 / (R3 + 1), 2 / (R6 + 1), 0,            1 / (R6 + 1)],
    [2 / 3,        0,            1 / 3,        1 / (R6 + 1), 0],
])


def test_itemknn_cosine_without_shrink_matches_hand_computation():
    model = fitted(ItemKNN, shrink=0.0)
    np.testing.assert_allclose(dense_similarity(model), KNN_SIM, rtol=1e-6, atol=1e-7)
    # history {0, 2}: score_j = s0j + s2j
    #   j0: 0 + 1/2 = 0.5        j1: 0 + 0 = 0          j2: 1/2 + 0 = 0.5
    #   j3: 1/sqrt6 + 2/sqrt6 = 3/sqrt6 = 1.224745      j4: 1 + 1/2 = 1.5
    expected = [0.5, 0.0, 0.5, 3 / R6, 1.5]
    np.testing.assert_allclose(scores(model, [[0, 2]])[0], expected, rtol=1e-6)


def test_itemknn_shrink_damps_similarities():
    model = fitted(ItemKNN, shrink=1.0)
    np.testing.assert_allclose(dense_similarity(model), KNN_SIM_SHRINK1, rtol=1e-6, atol=1e-7)
    # history {3}: row 3 of the shrunk matrix
    np.testing.assert_allclose(scores(model, [[3]])[0], KNN_SIM_SHRINK1[3], rtol=1e-6)


def test_itemknn_top1_truncation_keeps_each_rows_best_neighbour():
    model = fitted(ItemKNN, shrink=0.0, neighbours=1)
    # best neighbour per row (no shrink): 0 → 4 (1), 1 → 3 (1/sqrt3), 2 → 3 (2/sqrt6),
    #                                     3 → 2 (2/sqrt6), 4 → 0 (1)
    assert model.neighbour_ids[:, 0].tolist() == [4, 3, 3, 2, 0]
    np.testing.assert_allclose(model.neighbour_weights[:, 0].numpy(),
                               [1, 1 / R3, 2 / R6, 2 / R6, 1], rtol=1e-6)
    # history {0, 2}: only 0 → 4 (1) and 2 → 3 (2/sqrt6) survive
    np.testing.assert_allclose(scores(model, [[0, 2]])[0], [0, 0, 0, 2 / R6, 1], rtol=1e-6)
    # the truncated S is not symmetric: 1 → 3 is kept, 3 → 1 is not
    assert scores(model, [[3]])[0][1] == 0.0


def test_itemknn_top2_with_shrink():
    model = fitted(ItemKNN, shrink=1.0, neighbours=2)
    # row 3 (shrink 1): s32 = 2/(sqrt6+1) = .580 > s31 = 1/(sqrt3+1) = .366 > s30 = s34 = .290
    assert model.neighbour_ids[3].tolist() == [2, 1]
    np.testing.assert_allclose(scores(model, [[3]])[0], [0, 1 / (R3 + 1), 2 / (R6 + 1), 0, 0],
                               rtol=1e-6)


# -- RP3Beta --------------------------------------------------------------------------------------
# P_ui rows: u0 (1/2 on 0, 4); u1 (1/2 on 2, 3); u2 (1/2 on 1, 3); u3 (1/4 on 0, 2, 3, 4)
# P_iu rows: i0 (1/2 on u0, u3); i1 (1 on u2); i2 (1/2 on u1, u3); i3 (1/3 on u1, u2, u3);
#            i4 (1/2 on u0, u3)
# W = P_iu P_ui:
#   W0 = 1/2 P_u0 + 1/2 P_u3 = (1/4+1/8, 0, 1/8, 1/8, 1/4+1/8) = (3/8, 0, 1/8, 1/8, 3/8)
#   W1 = P_u2 = (0, 1/2, 0, 1/2, 0)
#   W2 = 1/2 P_u1 + 1/2 P_u3 = (1/8, 0, 1/4+1/8, 1/4+1/8, 1/8) = (1/8, 0, 3/8, 3/8, 1/8)
#   W3 = 1/3 (P_u1 + P_u2 + P_u3) = 1/3 (1/4, 1/2, 3/4, 5/4, 1/4) = (1/12, 1/6, 1/4, 5/12, 1/12)
#   W4 = W0
# (each row sums to 1: a probability), then the diagonal is zeroed:
RP3_W = np.array([
    [0,      0,     1 / 8, 1 / 8, 3 / 8],
    [0,      0,     0,     1 / 2, 0],
    [1 / 8,  0,     0,     3 / 8, 1 / 8],
    [1 / 12, 1 / 6, 1 / 4, 0,     1 / 12],
    [3 / 8,  0,     1 / 8, 1 / 8, 0],
])
P_UI = X_TINY / X_TINY.sum(axis=1, keepdims=True)
POP = X_TINY.sum(axis=0)


def test_rp3_alpha1_beta0_is_the_three_step_walk():
    model = fitted(RP3Beta, alpha=1.0, beta=0.0)
    np.testing.assert_allclose(dense_similarity(model), RP3_W, rtol=1e-6, atol=1e-8)
    # user u3 (history {0, 2, 3, 4}): score = W0 + W2 + W3 + W4
    #   j0: 0 + 1/8 + 1/12 + 3/8 = 7/12     j1: 1/6          j2: 1/8 + 0 + 1/4 + 1/8 = 1/2
    #   j3: 1/8 + 3/8 + 0 + 1/8 = 5/8       j4: 3/8 + 1/8 + 1/12 + 0 = 7/12
    got = scores(model, [[0, 2, 3, 4]], users=[3])[0]
    np.testing.assert_allclose(got, [7 / 12, 1 / 6, 1 / 2, 5 / 8, 7 / 12], rtol=1e-6)
    # divided by deg(u3) = 4 it is the 3-step walk probability u3 → i → u → j (walks returning
    # through the starting item removed). Check j1 by enumerating walks: the only one is
    # u3 →(1/4) i3 →(1/3) u2 →(1/2) i1, probability 1/24.
    assert got[1] / 4 == pytest.approx(1 / 24)
    # ... and for every user and item, with the matrix form P_ui (P_iu P_ui − diag):
    all_scores = scores(model, [[0, 4], [2, 3], [1, 3], [0, 2, 3, 4]])
    np.testing.assert_allclose(all_scores / X_TINY.sum(axis=1, keepdims=True), P_UI @ RP3_W,
                               rtol=1e-6, atol=1e-8)


def test_rp3_beta_divides_by_popularity():
    model = fitted(RP3Beta, alpha=1.0, beta=0.5)
    np.testing.assert_allclose(dense_similarity(model), RP3_W / np.sqrt(POP)[None, :], rtol=1e-6)
    # history {0, 2}: W0 + W2 = (1/8, 0, 1/8, 1/2, 1/2); divide by sqrt(pop) = (√2, 1, √2, √3, √2)
    #   j3 = (1/8 + 3/8)/√3 = 1/(2√3) = 0.2887   j4 = (3/8 + 1/8)/√2 = 1/(2√2) = 0.3536
    # beta = 0 ties j3 and j4; beta = 0.5 ranks the less popular j4 (pop 2) above j3 (pop 3).
    r2 = math.sqrt(2)
    expected = [1 / (8 * r2), 0, 1 / (8 * r2), 1 / (2 * R3), 1 / (2 * r2)]
    np.testing.assert_allclose(scores(model, [[0, 2]])[0], expected, rtol=1e-6)
    plain = scores(fitted(RP3Beta, alpha=1.0, beta=0.0), [[0, 2]])[0]
    assert plain[3] == pytest.approx(plain[4]) == pytest.approx(0.5)


def test_rp3_alpha_powers_each_transition_before_the_product():
    model = fitted(RP3Beta, alpha=2.0, beta=0.0)
    # P_ui^2: u0 1/4 on {0,4}; u3 1/16 on {0,2,3,4}.  P_iu^2: i0 1/4 on {u0, u3}.
    # W0 = 1/4 (1/4, 0, 0, 0, 1/4) + 1/4 (1/16, 0, 1/16, 1/16, 1/16)
    #    = (5/64, 0, 1/64, 1/64, 5/64) → diagonal zeroed: (0, 0, 1/64, 1/64, 5/64)
    # (the other reading, (P_iu P_ui)^2, would give W04 = (3/8)^2 = 9/64)
    np.testing.assert_allclose(dense_similarity(model)[0], [0, 0, 1 / 64, 1 / 64, 5 / 64],
                               rtol=1e-6)
    p_ui, p_iu = P_UI**2, (X_TINY.T / POP[:, None])**2
    w = p_iu @ p_ui
    np.fill_diagonal(w, 0)
    np.testing.assert_allclose(dense_similarity(model), w, rtol=1e-6, atol=1e-9)


def test_rp3_top1_and_normalize_similarity():
    top1 = fitted(RP3Beta, alpha=1.0, beta=0.0, neighbours=1)
    # best per row of RP3_W: 0 → 4 (3/8), 1 → 3 (1/2), 2 → 3 (3/8), 3 → 2 (1/4), 4 → 0 (3/8)
    assert top1.neighbour_ids[:, 0].tolist() == [4, 3, 3, 2, 0]
    np.testing.assert_allclose(scores(top1, [[0, 2]])[0], [0, 0, 0, 3 / 8, 3 / 8], rtol=1e-6)
    normed = fitted(RP3Beta, alpha=1.0, beta=0.0, normalize_similarity=True)
    # rows 0 and 2 sum to 5/8: W0 → (0, 0, 1/5, 1/5, 3/5), W2 → (1/5, 0, 0, 3/5, 1/5)
    np.testing.assert_allclose(scores(normed, [[0, 2]])[0], [1 / 5, 0, 1 / 5, 4 / 5, 4 / 5],
                               rtol=1e-6)


# -- EASE -----------------------------------------------------------------------------------------
def ease_closed_form(x: np.ndarray, lam: float) -> np.ndarray:
    p = np.linalg.inv(x.T @ x + lam * np.eye(x.shape[1]))
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return b


@pytest.mark.parametrize("lam", [0.5, 1.0, 500.0])
def test_ease_matches_numpy_closed_form_and_has_zero_diagonal(lam):
    model = fitted(EASE, l2=lam)
    b = model.weights.numpy().astype(np.float64)
    np.testing.assert_allclose(b, ease_closed_form(X_TINY, lam), rtol=1e-5, atol=1e-9)
    assert np.all(np.diag(b) == 0)
    np.testing.assert_allclose(scores(model, [[0, 2]])[0], b[0] + b[2], rtol=1e-5, atol=1e-9)


def test_ease_is_the_constrained_ridge_minimiser():
    lam = 1.0
    b = fitted(EASE, l2=lam).weights.numpy().astype(np.float64)
    n = X_TINY.shape[1]
    # brute force: column j solves min_b ‖x_j − X_{-j} b‖² + λ‖b‖², b_j = 0, via least squares on
    # the augmented system [X_{-j}; √λ I] b ≈ [x_j; 0]
    for j in range(n):
        others = [i for i in range(n) if i != j]
        a = np.vstack([X_TINY[:, others], math.sqrt(lam) * np.eye(n - 1)])
        rhs = np.concatenate([X_TINY[:, j], np.zeros(n - 1)])
        sol = np.linalg.lstsq(a, rhs, rcond=None)[0]
        np.testing.assert_allclose(b[others, j], sol, rtol=1e-5, atol=1e-7)
    # KKT: the gradient (XᵀX + λI) B − XᵀX vanishes off the diagonal (the diagonal carries the
    # Lagrange multipliers of diag(B) = 0)
    g = X_TINY.T @ X_TINY
    grad = (g + lam * np.eye(n)) @ b - g
    np.testing.assert_allclose(grad - np.diag(np.diag(grad)), 0.0, atol=1e-5)
    # and perturbing any off-diagonal entry increases the objective
    def objective(bb):
        return np.sum((X_TINY - X_TINY @ bb) ** 2) + lam * np.sum(bb**2)
    rng = np.random.default_rng(0)
    for _ in range(20):
        d = rng.normal(size=(n, n)) * 1e-2
        np.fill_diagonal(d, 0.0)
        assert objective(b + d) > objective(b)


def test_ease_blocked_symmetrisation_matches_closed_form(monkeypatch):
    rng = np.random.default_rng(2)
    x = (rng.random((30, 23)) < 0.3).astype(np.float64)
    monkeypatch.setattr(item_item, "FIT_BLOCK_ELEMENTS", 50)      # bands of 2 rows
    b = fitted(EASE, x, l2=3.0).weights.numpy().astype(np.float64)
    np.testing.assert_allclose(b, ease_closed_form(x, 3.0), rtol=1e-5, atol=1e-7)


def test_ease_singular_gram_without_l2_is_an_error():
    # X_TINY has 4 users and 5 items: XᵀX has rank ≤ 4, so l2 = 0 leaves it singular
    with pytest.raises(ValueError, match="positive definite"):
        fitted(EASE, l2=0.0)


def test_ease_refuses_too_many_items():
    with pytest.raises(ValueError, match="n_items"):
        EASE(10, 30_001)


# -- contract shared by the three models ----------------------------------------------------------
@pytest.mark.parametrize("cls", MODELS)
def test_flags(cls):
    assert cls.trainable is False and issubclass(cls, HistoryScorer) and issubclass(cls, AnonymousScorer)


@pytest.mark.parametrize("cls", MODELS)
def test_padding_never_changes_scores(cls):
    model = fitted(cls)
    tight = scores(model, [[0, 2], [3]])
    for pad in (0, 1, 4):
        padded = scores(model, [[0, 2], [3]], pad_with=pad, width=6)
        np.testing.assert_array_equal(padded, tight)


@pytest.mark.parametrize("cls", MODELS)
def test_history_order_and_repeats_do_not_change_scores(cls):
    model = fitted(cls)
    base = scores(model, [[0, 2, 3]])
    for perm in ([3, 0, 2], [2, 3, 0], [0, 3, 2, 0, 2]):
        np.testing.assert_array_equal(scores(model, [perm]), base)


@pytest.mark.parametrize("cls", MODELS)
def test_batch_equals_single_requests(cls):
    model = fitted(cls)
    histories = [[0, 4], [2, 3], [1], [0, 2, 3, 4]]
    batch = scores(model, histories)
    for r, h in enumerate(histories):
        np.testing.assert_allclose(scores(model, [h])[0], batch[r], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("cls", MODELS)
def test_anonymous_query_scores_like_a_known_user(cls):
    model = fitted(cls)
    known = scores(model, [[0, 2, 3, 4]], users=[3])
    anonymous = scores(model, [[0, 2, 3, 4]], users=[-1])
    np.testing.assert_array_equal(anonymous, known)
    assert anonymous.shape == (1, X_TINY.shape[1])


@pytest.mark.parametrize("cls", MODELS)
def test_state_dict_round_trip(cls):
    model = fitted(cls)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    fresh = cls(*X_TINY.shape)
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    histories = [[0, 2], [1, 3, 4], [4]]
    np.testing.assert_array_equal(scores(fresh, histories), scores(model, histories))


@pytest.mark.parametrize("cls", [ItemKNN, RP3Beta])
def test_blocked_fit_and_chunked_scoring_equal_one_shot(cls, monkeypatch):
    rng = np.random.default_rng(1)
    x = (rng.random((40, 23)) < 0.2).astype(np.float64)
    one_shot = fitted(cls, x, neighbours=5)
    histories = [list(np.flatnonzero(row)) or [0] for row in x[:10]]
    expected = scores(one_shot, histories)
    monkeypatch.setattr(item_item, "FIT_BLOCK_ELEMENTS", 50)      # 2 rows per block
    monkeypatch.setattr(item_item, "SCORE_CHUNK_ELEMENTS", 1)     # 1 position per chunk
    blocked = fitted(cls, x, neighbours=5)
    np.testing.assert_array_equal(blocked.neighbour_weights.numpy(),
                                  one_shot.neighbour_weights.numpy())
    np.testing.assert_allclose(scores(blocked, histories), expected, rtol=1e-6, atol=1e-7)


def test_neighbours_capped_at_item_count_and_items_never_recommend_themselves():
    model = fitted(ItemKNN)                                 # default neighbours=100 > 5 items
    assert tuple(model.neighbour_ids.shape) == (5, 5)
    assert np.all(np.diag(dense_similarity(model)) == 0)


# -- learnability ---------------------------------------------------------------------------------
def clustered_split(seed: int = 0, n_users: int = 300, n_clusters: int = 3, per_cluster: int = 20,
                    per_user: int = 10, p_inside: float = 0.9):
    """Users interact mostly inside their item cluster; one item per user is held out."""
    rng = np.random.default_rng(seed)
    n_items = n_clusters * per_cluster
    # item appeal: Zipf-like inside each cluster, so popularity is informative but not enough
    appeal = 1.0 / np.arange(1, per_cluster + 1) ** 0.7
    x = np.zeros((n_users, n_items))
    for u in range(n_users):                                # data generation only
        c = u % n_clusters
        own = c * per_cluster + rng.choice(per_cluster, size=per_user, replace=False,
                                           p=appeal / appeal.sum())
        noise = rng.choice(n_items, size=per_user, replace=False)
        pick = np.where(rng.random(per_user) < p_inside, own, noise)
        x[u, pick] = 1
    held = np.array([rng.choice(np.flatnonzero(row)) for row in x])
    train = x.copy()
    train[np.arange(n_users), held] = 0
    return train, held


def hit_rate_at_10(score_matrix: np.ndarray, train: np.ndarray, held: np.ndarray) -> float:
    s = np.where(train > 0, -np.inf, score_matrix)          # exclude seen items
    top = np.argsort(-s, axis=1, kind="stable")[:, :10]
    return float((top == held[:, None]).any(axis=1).mean())


@pytest.mark.parametrize("cls", MODELS)
def test_beats_popularity_on_clustered_data(cls):
    train, held = clustered_split()
    model = fitted(cls, train)
    histories = [list(np.flatnonzero(row)) for row in train]
    model_hr = hit_rate_at_10(scores(model, histories), train, held)
    pop = np.broadcast_to(train.sum(axis=0), train.shape)
    pop_hr = hit_rate_at_10(pop, train, held)
    assert model_hr > pop_hr + 0.1, (model_hr, pop_hr)
