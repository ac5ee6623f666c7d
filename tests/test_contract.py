"""The contract every registered model keeps, checked once for all (DESIGN.md, "Contracts").

Shapes, seeded determinism, checkpoint round trip, batch vs single recommendation,
``exclude_seen``, and learnability: each model beats popularity on the planted synthetic data.
"""

import numpy as np
import pytest
import torch

from memrec.data.splits import leave_one_out
from memrec.data.synthetic import SynthConfig, generate
from memrec.evaluation import Evaluator
from memrec.models import REGISTRY, KnowledgeGraphEmbedding, build
from memrec.models.base import Query
from memrec.models.capabilities import AnonymousScorer
from memrec.recommender import Recommender

FAST_TRAIN = {"epochs": 8, "batch_size": 512, "lr": 0.01, "patience": 0}
# small settings for the heavier memory models: the contract is the same, the test stays quick
LIGHT = {"cmn": ({"dim": 16, "hops": 2}, {"epochs": 4}),
         "stamp": ({"dim": 32}, {}), "stmp": ({"dim": 32}, {}),
         # KSR without a knowledge graph is the explicit ablation (synthetic data has none)
         "ksr": ({"hidden": 64, "out_dim": 32, "kg": None}, {"pretrain_epochs": 3, "epochs": 4})}
NAMES = sorted(n for n, s in REGISTRY.items() if not issubclass(s.cls, KnowledgeGraphEmbedding))


@pytest.fixture(scope="module")
def split():
    data = generate(SynthConfig(n_users=300, n_items=400, mean_length=30, seed=3))
    return leave_one_out(data)


def fitted(name, split, seed=0):
    params, train = LIGHT.get(name, ({}, {}))
    rec = Recommender(name, train={**FAST_TRAIN, **train, "seed": seed}, **params)
    return rec.fit(split.train, split.valid)


@pytest.fixture(scope="module")
def fitted_models(split):
    return {name: fitted(name, split) for name in NAMES}


@pytest.mark.parametrize("name", NAMES)
def test_scores_have_documented_shapes(name, fitted_models, split):
    model = fitted_models[name].model_
    users = np.array([0, 5, 7])
    query = fitted_models[name].query(users)
    assert model.score_all(query).shape == (3, split.train.n_items)
    items = torch.tensor([[1, 2], [3, 4], [5, 6]])
    sub = model.score_items(query, items)
    assert sub.shape == (3, 2)
    assert torch.allclose(sub, model.score_all(query).gather(1, items), atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_seeded_training_is_deterministic(name, fitted_models, split):
    again = fitted(name, split)
    q = fitted_models[name].query(np.arange(10))
    assert torch.equal(fitted_models[name].model_.score_all(q), again.model_.score_all(q))


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_round_trip(name, fitted_models, tmp_path):
    rec = fitted_models[name]
    rec.save(tmp_path / name)
    loaded = Recommender.load(tmp_path / name)
    ids, scores = rec.recommend([0, 1, 2], k=5)
    ids2, scores2 = loaded.recommend([0, 1, 2], k=5)
    np.testing.assert_array_equal(ids, ids2)
    np.testing.assert_allclose(scores, scores2)


@pytest.mark.parametrize("name", NAMES)
def test_batch_recommendation_equals_single(name, fitted_models):
    rec = fitted_models[name]
    ids, scores = rec.recommend([3, 4, 9], k=10)
    for row, user in enumerate([3, 4, 9]):
        one_ids, one_scores = rec.recommend([user], k=10)
        np.testing.assert_allclose(scores[row], one_scores[0], rtol=1e-5, atol=1e-6)
        # ties may order differently only among equal scores
        assert set(ids[row][scores[row] > scores[row][-1]]) == set(one_ids[0][one_scores[0] > one_scores[0][-1]])


@pytest.mark.parametrize("name", NAMES)
def test_exclude_seen(name, fitted_models, split):
    # regression: this test used k = n_items, which returns every item whatever the filter does
    rec = fitted_models[name]
    seen = set(split.train.item[split.train.user == 4]) | set(split.valid.item[split.valid.user == 4])
    n_unseen = len(rec.saved_.items) - len(seen)
    ids, scores = rec.recommend([4], k=n_unseen)
    assert not (set(ids[0].tolist()) & seen) and np.isfinite(scores).all()
    # without the filter, the seen items are ranked with their own scores: the top n_unseen
    # differ, and each seen item's score is the model's score for it
    ids_all, scores_all = rec.recommend([4], k=len(rec.saved_.items), exclude_seen=False)
    assert np.isfinite(scores_all).all()
    model_scores = rec.model_.score_all(rec.query(np.array([4]))).detach().numpy()[0]
    by_id = dict(zip(ids_all[0].tolist(), scores_all[0].tolist()))
    for item in seen:
        assert by_id[item] == pytest.approx(float(model_scores[item]), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("name", [n for n in NAMES if issubclass(REGISTRY[n].cls, AnonymousScorer)])
def test_anonymous_scorers_score_a_history_without_a_user(name, fitted_models):
    rec = fitted_models[name]
    known = rec.query(np.array([4]))
    anonymous = Query(torch.tensor([-1]), known.history, known.mask)
    if rec.model_.reads_known_users:       # user 4's own vector, the anonymous user's for -1
        assert torch.isfinite(rec.model_.score_all(anonymous)).all()
        assert not torch.allclose(rec.model_.score_all(anonymous), rec.model_.score_all(known))
    else:
        torch.testing.assert_close(rec.model_.score_all(anonymous), rec.model_.score_all(known))


def test_unknown_user_is_a_clear_error(fitted_models):
    from memrec.errors import DataError
    with pytest.raises(DataError, match="unknown user: 99999"):
        fitted_models["pop"].recommend([99999])


# repeat-by-recency is popularity on every item a user has not had: the full protocol ranks only those
@pytest.mark.parametrize("name", [n for n in NAMES if n not in ("pop", "recency")])
def test_model_beats_popularity_on_planted_data(name, fitted_models, split):
    evaluator = Evaluator(split, "test", protocols=("full",), ks=(10,))
    ours = evaluator.evaluate(fitted_models[name].model_)["full"]["NDCG@10"]
    pop = evaluator.evaluate(fitted_models["pop"].model_)["full"]["NDCG@10"]
    assert ours > pop, f"{name} NDCG@10 {ours:.4f} <= popularity {pop:.4f}"


@pytest.mark.parametrize("name", NAMES)
def test_build_rejects_unknown_hyperparameters(name):
    from memrec.errors import ConfigError
    model = build(name, 4, 6)
    assert model.n_users == 4 and model.n_items == 6
    with pytest.raises(ConfigError, match="has no parameter 'no_such_knob'"):
        build(name, 4, 6, {"no_such_knob": 1})
