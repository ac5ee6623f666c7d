"""Session baselines (repeat-by-recency, SKNN, V-SKNN, STAN): hand-computed oracles on tiny
sessions, the neighbour sample and cut-off, batch == alone, checkpoints, and the CLI."""

import json
import math

import numpy as np
import pytest
import torch

from memrec.data.interactions import IdMap, Interactions
from memrec.models import REGISTRY, build
from memrec.models.base import Query
from memrec.models.baselines.session_knn import training_sessions
from memrec.models.capabilities import AnonymousScorer, HistoryScorer, StatefulScorer

from .conftest import shared_path
from .session_fixtures import ring_session_files

SESSION_MODELS = ("recency", "sknn", "vsknn", "stan")


def train_sessions(sessions, times=None, n_items=8) -> Interactions:
    """Interactions of the given sessions (lists of item ids = indices), one timestamp per click:
    ``times`` (lists like the sessions) or 1, 2, 3, ... in order."""
    sess = np.repeat(np.arange(len(sessions)), [len(s) for s in sessions])
    item = np.concatenate([np.asarray(s) for s in sessions])
    stamp = np.arange(1, len(item) + 1) if times is None else np.concatenate([np.asarray(t) for t in times])
    return Interactions(sess.astype(np.int32), item.astype(np.int32), IdMap.range(len(sessions)),
                        IdMap.range(n_items), timestamp=stamp.astype(np.float64), session=sess)


#: a = (1, 2, 3) ends at t 3, b = (2, 4) at 5, c = (3, 2, 3, 5) at 9 (3 clicked twice), d = (6, 7)
#: at 11 shares nothing with the current sessions below
TRAIN = train_sessions([[1, 2, 3], [2, 4], [3, 2, 3, 5], [6, 7]])


def fitted(name, train=TRAIN, **params):
    model = build(name, train.n_users, train.n_items, params)
    model.fit_closed_form(train)
    return model


def scores(model, *clicks):
    history = torch.tensor([list(clicks)])
    return model.score_all(Query(torch.tensor([-1]), history, torch.ones_like(history, dtype=torch.bool)))[0]


def test_session_baselines_are_registered_closed_form_anonymous_and_stateful():
    for name in SESSION_MODELS:
        cls = REGISTRY[name].cls
        assert issubclass(cls, StatefulScorer) and issubclass(cls, HistoryScorer) and issubclass(cls, AnonymousScorer)
        assert not cls.trainable and REGISTRY[name].train_defaults["refit"]


# -- repeat-by-recency --------------------------------------------------------------------------
def test_recency_ranks_the_sessions_items_by_last_click_then_popularity():
    # popularity: items 2 and 3 ×3, items 1, 4, 5, 6, 7 ×1, item 0 never; fill c / (3 + 1)
    # session (5, 2, 5, 1): 1 + p/l with the last clicks 5 → 3, 2 → 2, 1 → 4 of l = 4
    s = scores(fitted("recency"), 5, 2, 5, 1)
    expected = [0.0, 1 + 4 / 4, 1 + 2 / 4, 3 / 4, 1 / 4, 1 + 3 / 4, 1 / 4, 1 / 4]
    np.testing.assert_allclose(s.numpy(), expected, atol=1e-6)


# -- SKNN ---------------------------------------------------------------------------------------
def test_sknn_cosine_hand_computed():
    # s = {2, 3}: a shares 2 of 3 items → 2/√(2·3); b 1 of 2 → 1/√(2·2); c (distinct {3, 2, 5})
    # 2 of 3 → 2/√6; d shares none
    a, b, c = 2 / math.sqrt(6), 1 / 2, 2 / math.sqrt(6)
    expected = [0, a, a + b + c, a + c, b, c, 0, 0]
    np.testing.assert_allclose(scores(fitted("sknn"), 2, 3).numpy(), expected, atol=1e-6)


def test_sknn_jaccard_hand_computed():
    a, b, c = 2 / 3, 1 / 3, 2 / 3                                  # |s ∩ n| / |s ∪ n|
    np.testing.assert_allclose(scores(fitted("sknn", similarity="jaccard"), 2, 3).numpy(),
                               [0, a, a + b + c, a + c, b, c, 0, 0], atol=1e-6)


def test_sknn_keeps_the_k_most_similar_ties_going_to_the_more_recent_session():
    sim = 2 / math.sqrt(6)
    two = scores(fitted("sknn", neighbours=2), 2, 3)               # a and c; b (0.5) is cut
    np.testing.assert_allclose(two.numpy(), [0, sim, 2 * sim, 2 * sim, 0, sim, 0, 0], atol=1e-6)
    one = scores(fitted("sknn", neighbours=1), 2, 3)               # a and c tie: c ends later
    np.testing.assert_allclose(one.numpy(), [0, 0, sim, sim, 0, sim, 0, 0], atol=1e-6)


def test_sample_keeps_the_most_recent_candidates_before_similarity():
    # the 2 most recent sessions sharing an item are c (t 9) and b (t 5): a, as similar as c, is
    # never a candidate
    s = scores(fitted("sknn", sample_size=2), 2, 3)
    b, c = 1 / 2, 2 / math.sqrt(6)
    np.testing.assert_allclose(s.numpy(), [0, 0, b + c, c, b, c, 0, 0], atol=1e-6)


def test_recency_is_the_last_events_time_not_the_file_order():
    # session 0 is listed first but clicked last; session 1 ends earliest
    train = train_sessions([[1, 2], [2, 3], [2, 4]], times=[[50, 60], [1, 2], [10, 11]])
    indptr, items, positions, time = training_sessions(train)
    assert time.tolist() == [2, 11, 60]                            # oldest first
    assert [items[indptr[k]:indptr[k + 1]].tolist() for k in range(3)] == [[2, 3], [2, 4], [1, 2]]
    only_latest = scores(fitted("sknn", train, sample_size=1), 2)
    assert only_latest[1] > 0 and only_latest[3] == 0 and only_latest[4] == 0


def test_training_sessions_keep_each_items_last_click_position():
    indptr, items, positions, _ = training_sessions(train_sessions([[3, 2, 3, 5]]))
    assert items.tolist() == [2, 3, 5] and positions.tolist() == [2, 3, 4]


# -- V-SKNN -------------------------------------------------------------------------------------
def test_vsknn_hand_computed():
    # s = (2, 3), l = 2: w(2) = 1/2, w(3) = 2/2; sim = Σ_{s∩n} w / |s| with |s| = 2
    # a, c share both (the last click, step 1): (1/2 + 1)/2; b shares 2 (one click back, step 2)
    a = c = (0.5 + 1) / 2
    b = 0.5 / 2 / 2
    expected = [0, a, a + b + c, a + c, b, c, 0, 0]
    np.testing.assert_allclose(scores(fitted("vsknn"), 2, 3).numpy(), expected, atol=1e-6)


def test_vsknn_counts_repeated_clicks_in_positions_and_steps():
    # s = (3, 2, 3), l = 3: 3's last click is at 3 → w = 1, 2's at 2 → w = 2/3; |s| = 2
    # b shares only 2: sim = (2/3)/2, step = 3 − 2 + 1 = 2 → item 4 gets 1/6
    assert float(scores(fitted("vsknn"), 3, 2, 3)[4]) == pytest.approx(1 / 6, abs=1e-6)


# -- STAN ---------------------------------------------------------------------------------------
def test_stan_hand_computed():
    l1, l3 = 1.02, 2.05
    # s = (2, 3): w1(2) = e^{(1−2)/λ1}, w1(3) = 1; ‖w1‖ = √(w1(2)² + 1)
    w2_, w3_ = math.exp(-1 / l1), 1.0
    norm = math.sqrt(w2_ ** 2 + w3_ ** 2)
    sim_a = (w2_ + w3_) / (norm * math.sqrt(3))                    # a = (1, 2, 3)
    sim_b = w2_ / (norm * math.sqrt(2))                            # b = (2, 4)
    sim_c = (w2_ + w3_) / (norm * math.sqrt(3))                    # c = (3, 2, 3, 5): {2, 3, 5}
    d = lambda k: math.exp(-k / l3)                                # noqa: E731  w3 at distance k
    # p*: a's last shared click is 3 at position 3; b's is 2 at 1; c's is 3 at 3 (2 at 2, 5 at 4)
    expected = [0,
                sim_a * d(2),                                      # item 1 at a:1
                sim_a * d(1) + sim_b * d(0) + sim_c * d(1),        # item 2 at a:2, b:1, c:2
                sim_a * d(0) + sim_c * d(0),                       # item 3 at a:3, c:3
                sim_b * d(1),                                      # item 4 at b:2
                sim_c * d(1),                                      # item 5 at c:4
                0, 0]
    np.testing.assert_allclose(scores(fitted("stan", lambda2=None), 2, 3).numpy(), expected, atol=1e-6)


def test_stan_time_decay_is_in_days_from_the_end_of_training():
    day = 86_400.0
    # two sessions sharing item 1 with the current one, ending 1 day apart; λ2 = 2 days
    train = train_sessions([[1, 2], [1, 3]], times=[[0, day], [day, 2 * day]])
    s = scores(fitted("stan", train, lambda1=None, lambda2=2.0, lambda3=None), 1)
    assert float(s[2] / s[3]) == pytest.approx(math.exp(-1 / 2), abs=1e-6)


def test_stan_without_its_three_decays_is_sknn_with_cosine():
    rng = np.random.default_rng(0)
    train = train_sessions([rng.integers(0, 30, rng.integers(2, 8)).tolist() for _ in range(80)], n_items=30)
    stan = fitted("stan", train, lambda1=None, lambda2=None, lambda3=None, neighbours=10, sample_size=40)
    sknn = fitted("sknn", train, neighbours=10, sample_size=40)
    query = random_windows(30, seed=1)
    torch.testing.assert_close(stan.score_all(query), sknn.score_all(query))


# -- all four ------------------------------------------------------------------------------------
def random_windows(n_items, seed, B=7, L=9) -> Query:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, L + 1, (B,), generator=g)
    mask = torch.arange(L)[None, :] < lengths[:, None]
    history = torch.randint(0, n_items, (B, L), generator=g) * mask
    return Query(torch.full((B,), -1), history, mask)


@pytest.mark.parametrize("name", SESSION_MODELS)
def test_a_batch_scores_each_session_as_alone_and_padding_is_inert(name):
    rng = np.random.default_rng(3)
    train = train_sessions([rng.integers(0, 25, rng.integers(2, 7)).tolist() for _ in range(120)], n_items=25)
    model = fitted(name, train, **({} if name == "recency" else {"neighbours": 5, "sample_size": 30}))
    query = random_windows(25, seed=2)
    batch = model.score_all(query)
    assert batch.abs().sum() > 0
    for b in range(len(query)):
        clicks = query.history[b][query.mask[b]]
        alone = model.score_all(Query(torch.tensor([-1]), clicks[None], torch.ones(1, len(clicks), dtype=torch.bool)))
        torch.testing.assert_close(batch[b], alone[0])
        junk = query.history[b].clone()
        junk[~query.mask[b]] = 7                                    # padding holding a real item
        padded = model.score_all(Query(torch.tensor([-1]), junk[None], query.mask[b][None]))
        torch.testing.assert_close(batch[b], padded[0])


@pytest.mark.parametrize("name", SESSION_MODELS)
def test_weights_load_into_a_model_fitted_elsewhere(name):
    # the training sessions are data buffers: a checkpoint resizes them and the cached sparse
    # matrices are rebuilt (a stale cache would score with the other model's sessions)
    model = fitted(name)
    other = fitted(name, train_sessions([[0, 1], [1, 2], [2, 3], [3, 4], [4, 5]]))
    other.score_all(random_windows(8, seed=0))                     # builds its cache
    other.load_state_dict(model.state_dict())
    query = random_windows(8, seed=4)
    torch.testing.assert_close(other.score_all(query), model.score_all(query))


def test_bad_options_are_clear_errors():
    from memrec.errors import ConfigError
    with pytest.raises(ConfigError, match="similarity"):
        build("sknn", 2, 8, {"similarity": "dice"})
    with pytest.raises(ConfigError, match="neighbours"):
        build("vsknn", 2, 8, {"neighbours": 0})
    with pytest.raises(ConfigError, match="lambda3"):
        build("stan", 2, 8, {"lambda3": 0.0})


# -- the CLI and the real data ------------------------------------------------------------------
@pytest.mark.parametrize("name", ["vsknn", "stan"])
def test_trains_from_the_cli_on_session_files_and_recommends_a_live_session(name, tmp_path):
    from click.testing import CliRunner

    from memrec.cli import main
    folder, out = ring_session_files(tmp_path), tmp_path / name
    result = CliRunner().invoke(main, ["train", name, "--data", str(folder), "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "results.json").read_text())["metrics"]["session"]
    # the next item on the ring is in the neighbours that share the current one: far above 5/20
    assert metrics["HR@5"] > 0.9, metrics
    result = CliRunner().invoke(main, ["recommend", str(out), "--session", "1,2", "-k", "3"])
    assert result.exit_code == 0, result.output
    assert len(result.output.splitlines()) == 4                     # "session 1,2" and 3 items


def test_recency_reproduces_the_trivial_ranking_on_yoochoose():
    # the numbers: the session's items by recency, then popularity, P@20 / MRR@20
    from memrec.data.readers import load
    from memrec.evaluation import Evaluator
    split = load(shared_path("yoochoose1_64")).given_split
    model = fitted("recency", split.train)
    result = Evaluator(split, "test", protocols=("session",), ks=(20,), beyond_accuracy=False).evaluate(model)
    assert result["session"]["HR@20"] == pytest.approx(0.3103, abs=5e-5)
    assert result["session"]["MRR@20"] == pytest.approx(0.1982, abs=5e-5)
