"""The synthetic default dataset: determinism, well-formedness, and that the planted structure
is really there (measured with plain NumPy predictors, no memrec models)."""

import json
import sys

import numpy as np
import pandas as pd
import pytest

from memrec.data.synthetic import SynthConfig, generate, generate_with_truth, write_csv

K = 10


@pytest.fixture(scope="module")
def data_and_truth():
    return generate_with_truth(SynthConfig())


@pytest.fixture(scope="module")
def data(data_and_truth):
    return data_and_truth[0]


# -- NumPy-only predictors on a leave-last-out split ------------------------------------------
def _leave_last_out(d):
    """(train users, train items, test items per user) with the last event of each user held out.
    Train rows are in (user, time) order."""
    order = d.time_order()
    u, it = d.user[order].astype(np.int64), d.item[order].astype(np.int64)
    last = np.r_[u[1:] != u[:-1], True]
    assert (u[last] == np.arange(d.n_users)).all()
    return u[~last], it[~last], it[last]


def _hit_rate(scores, target, seen_u, seen_i):
    """HR@K with each user's training items excluded; ties count against the target."""
    s = scores.astype(np.float64)
    s[seen_u, seen_i] = -np.inf
    tgt = s[np.arange(len(target)), target]
    return float(((s > tgt[:, None]).sum(1) < K).mean())


def _hit_rates(d, seed=0):
    """HR@10 of random, popularity, most-frequent-successor and cosine item-kNN predictors."""
    n_u, n_i = d.n_users, d.n_items
    tu, ti, target = _leave_last_out(d)
    pop = np.bincount(ti, minlength=n_i).astype(np.float64)
    tie = pop / (pop.max() + 1.0)  # popularity as a tie-breaker below one count
    n_seen = np.bincount(tu, minlength=n_u)
    out = {"random": _hit_rate(np.random.default_rng(seed).random((n_u, n_i)), target, tu, ti),
           "random_expected": float(np.mean(K / (n_i - n_seen))),
           "pop": _hit_rate(np.tile(pop, (n_u, 1)), target, tu, ti)}
    # successor counts a -> b over consecutive training events of the same user
    same = tu[1:] == tu[:-1]
    succ = np.zeros((n_i, n_i))
    np.add.at(succ, (ti[:-1][same], ti[1:][same]), 1.0)
    prev = np.zeros(n_u, np.int64)
    prev[tu] = ti  # rows are time-ordered, so the last write is each user's last train item
    out["successor"] = _hit_rate(succ[prev] + tie, target, tu, ti)
    # cosine item-kNN over binary train user vectors
    x = np.zeros((n_u, n_i))
    x[tu, ti] = 1.0
    co = x.T @ x
    norm = np.sqrt(np.diag(co)) + 1e-12
    sim = co / norm[:, None] / norm[None, :]
    np.fill_diagonal(sim, 0.0)
    out["item_knn"] = _hit_rate(x @ sim + 1e-6 * tie, target, tu, ti)
    return out


def _third_shift(d, item_cluster):
    """Mean total-variation distance between the cluster histograms of each user's first and
    last third of events (users with at least 9 events)."""
    n_c = int(item_cluster.max()) + 1
    indptr, items = d.sequences()
    dists = []
    for u in range(d.n_users):
        c = item_cluster[items[indptr[u]:indptr[u + 1]]]
        k = len(c) // 3
        if k < 3:
            continue
        a = np.bincount(c[:k], minlength=n_c) / k
        b = np.bincount(c[-k:], minlength=n_c) / k
        dists.append(0.5 * np.abs(a - b).sum())
    return float(np.mean(dists))


def _as_clusters(data_and_truth):
    data, truth = data_and_truth
    return data, truth.item_cluster


# -- determinism -------------------------------------------------------------------------------
def test_same_seed_gives_byte_identical_csv(tmp_path):
    cfg = SynthConfig(n_users=120, n_items=200, seed=7)
    write_csv(generate(cfg), tmp_path / "a.csv")
    write_csv(generate(cfg), tmp_path / "b.csv")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


def test_different_seed_gives_different_data(tmp_path):
    write_csv(generate(SynthConfig(n_users=120, n_items=200, seed=7)), tmp_path / "a.csv")
    write_csv(generate(SynthConfig(n_users=120, n_items=200, seed=8)), tmp_path / "b.csv")
    assert (tmp_path / "a.csv").read_bytes() != (tmp_path / "b.csv").read_bytes()


def test_default_seed_is_reproducible(data):
    again = generate(SynthConfig())
    for col in ("user", "item", "timestamp", "rating"):
        np.testing.assert_array_equal(getattr(data, col), getattr(again, col))


# -- well-formedness ---------------------------------------------------------------------------
def test_sizes_and_id_ranges(data):
    cfg = SynthConfig()
    assert (data.n_users, data.n_items) == (cfg.n_users, cfg.n_items)
    assert data.user.min() >= 0 and data.user.max() < cfg.n_users
    assert data.item.min() >= 0 and data.item.max() < cfg.n_items
    np.testing.assert_array_equal(data.users.raw, np.arange(cfg.n_users))  # raw id == index
    np.testing.assert_array_equal(data.items.raw, np.arange(cfg.n_items))
    degree = data.user_degree()
    assert degree.min() >= cfg.min_length, "every user has at least min_length events"
    assert abs(degree.mean() - cfg.mean_length) < 0.15 * cfg.mean_length, degree.mean()
    assert (data.item_degree() > 0).mean() > 0.95, "almost every item is used"


def test_timestamps_are_integer_and_strictly_increasing_per_user(data):
    ts = data.timestamp
    assert np.all(ts == np.floor(ts))
    assert np.all(np.diff(ts) >= 0), "rows are in global time order"
    order = np.lexsort((ts, data.user))
    u, t = data.user[order], ts[order]
    same_user = u[1:] == u[:-1]
    assert np.all(np.diff(t)[same_user] > 0)


def test_users_interleave_in_global_time(data):
    """A global temporal split at the median time leaves many users on both sides."""
    cut = np.median(data.timestamp)
    before = np.unique(data.user[data.timestamp < cut])
    after = np.unique(data.user[data.timestamp >= cut])
    both = np.intersect1d(before, after)
    assert len(before) > 0.3 * data.n_users and len(after) > 0.3 * data.n_users
    assert len(both) > 0.1 * data.n_users


def test_no_duplicate_pairs_by_default(data):
    pairs = data.user.astype(np.int64) * data.n_items + data.item
    assert len(np.unique(pairs)) == len(data)


def test_allow_repeats_allows_duplicates():
    d = generate(SynthConfig(n_users=100, n_items=60, n_clusters=4, allow_repeats=True))
    pairs = d.user.astype(np.int64) * d.n_items + d.item
    assert len(np.unique(pairs)) < len(d)


def test_tiny_catalogue_without_repeats_terminates():
    """Histories longer than a cluster exhaust it; the fallback must still find unseen items."""
    d = generate(SynthConfig(n_users=30, n_items=20, n_clusters=4, clusters_per_user=1,
                             mean_length=10.0, drift=0.0))
    pairs = d.user.astype(np.int64) * d.n_items + d.item
    assert len(np.unique(pairs)) == len(d)
    assert d.user_degree().max() <= 10  # capped at n_items // 2


def test_ratings_in_range_and_higher_in_active_cluster(data_and_truth):
    data, truth = data_and_truth
    r = data.rating
    assert r.min() >= 1 and r.max() <= 5 and np.all(r == np.round(r))
    in_cluster = truth.item_cluster[data.item] == truth.active_cluster
    assert r[in_cluster].mean() > r[~in_cluster].mean() + 1.0, (
        r[in_cluster].mean(), r[~in_cluster].mean())


def test_write_csv_round_trip(tmp_path):
    d = generate(SynthConfig(n_users=50, n_items=80, seed=3))
    write_csv(d, tmp_path / "s.csv")
    assert (tmp_path / "s.csv").read_text().splitlines()[0] == "user,item,rating,timestamp"
    frame = pd.read_csv(tmp_path / "s.csv")
    assert all(frame[c].dtype.kind == "i" for c in frame.columns), frame.dtypes.to_dict()
    np.testing.assert_array_equal(frame["user"], d.users.to_raw(d.user))
    np.testing.assert_array_equal(frame["item"], d.items.to_raw(d.item))
    np.testing.assert_array_equal(frame["rating"], d.rating)
    np.testing.assert_array_equal(frame["timestamp"], d.timestamp)


@pytest.mark.parametrize("bad", [dict(drift=1.5), dict(n_clusters=0), dict(clusters_per_user=20),
                                 dict(mean_length=3.0), dict(transition_strength=0.95)])
def test_invalid_config_is_rejected(bad):
    with pytest.raises(ValueError):
        SynthConfig(**bad)


def test_regression_generation_cost_is_counted_not_timed():
    """The default dataset stays cheap to generate: at most 22 Python and C function calls per
    event (16.2 today; 26.9 if every pick fell back to exact sampling, which also triples the
    time). A count, not a wall-clock budget: the same on a loaded or a fast machine."""
    calls = 0

    def count(frame, event, arg):
        nonlocal calls
        calls += event in ("call", "c_call")

    sys.setprofile(count)
    try:
        data = generate(SynthConfig(seed=1))
    finally:
        sys.setprofile(None)
    assert calls / len(data) < 22, f"{calls / len(data):.1f} calls per event"


# -- planted structure ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hit_rates(data):
    return _hit_rates(data)


def test_popularity_is_well_above_random(hit_rates):
    hr = hit_rates
    assert hr["pop"] > 3 * max(hr["random"], hr["random_expected"]) and hr["pop"] > 0.04, (
        f"popularity HR@10 {hr['pop']:.3f} vs random {hr['random']:.3f} "
        f"(expected {hr['random_expected']:.3f})")


def test_successor_predictor_beats_popularity(hit_rates):
    hr = hit_rates
    assert hr["successor"] > 2 * hr["pop"], (
        f"successor HR@10 {hr['successor']:.3f} vs popularity {hr['pop']:.3f}")


def test_item_knn_beats_popularity(hit_rates):
    hr = hit_rates
    assert hr["item_knn"] > 2 * hr["pop"], (
        f"item-kNN HR@10 {hr['item_knn']:.3f} vs popularity {hr['pop']:.3f}")


def test_planted_transitions_add_sequential_signal(hit_rates):
    """Without planted transitions the successor predictor only sees cluster co-occurrence."""
    flat = _hit_rates(generate(SynthConfig(transition_strength=0.0)))
    assert hit_rates["successor"] > flat["successor"] + 0.04, (
        f"successor HR@10 {hit_rates['successor']:.3f} with transitions vs "
        f"{flat['successor']:.3f} without")


def test_planted_successors_are_followed(data_and_truth):
    """Consecutive events land on a planted successor of the previous item far above chance."""
    data, truth = data_and_truth
    order = data.time_order()
    u, it = data.user[order], data.item[order]
    same = u[1:] == u[:-1]
    a, b = it[:-1][same], it[1:][same]
    assert np.all(truth.item_cluster[truth.successors] == truth.item_cluster[:, None])
    followed = (truth.successors[a] == b[:, None]).any(1).mean()
    cluster_size = data.n_items / len(np.unique(truth.item_cluster))
    chance = truth.successors.shape[1] / cluster_size  # even if every step stayed in-cluster
    assert followed > 0.1 and followed > 2 * chance, (followed, chance)


def test_meta_is_json_serialisable(data):
    assert json.loads(json.dumps(data.meta))["config"]["seed"] == 0


def test_interests_drift_over_time(data_and_truth):
    drifting = _third_shift(*_as_clusters(data_and_truth))
    static = _third_shift(*_as_clusters(generate_with_truth(SynthConfig(drift=0.0))))
    assert drifting > static + 0.15, (
        f"first-vs-last-third cluster TV distance {drifting:.3f} with drift vs {static:.3f} without")
