"""Training/serving agreement for every registered model (the live engine, no HTTP).

* a trained user with no new events gets exactly what ``memrec recommend`` gives;
* a new user after events E, each applied in its own write, gets what a stateless request with
  history E gets (the documented cold-start rule on both paths);
* a trained user's live state after events E scores like the model reading the whole history
  (training + E) at once, for models that read histories;
* a rebuild from the log gives the states the live writes gave.
"""

import numpy as np
import pytest
import torch

from memrec.checkpoint import load_model
from memrec.models.capabilities import AnonymousScorer, Explainer, HistoryScorer, make_query
from memrec.recommender import Recommender
from memrec.serving.live import BadRequest, LiveModel, UnknownUser, checkpoint_digest
from memrec.serving.store import Event, MemoryStore
from .serving_models import SERVABLE, write_run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return {name: write_run(name, root / name) for name in SERVABLE}


def _live(run, store=None) -> LiveModel:
    return LiveModel(load_model(run), store or MemoryStore(), checkpoint_digest(run))


@pytest.mark.parametrize("name", SERVABLE)
def test_trained_user_without_events_gets_what_recommend_gives(runs, name):
    live, rec = _live(runs[name]), Recommender.load(runs[name])
    for user in ["0", "5"]:
        ids, scores = rec.recommend([user], k=6)
        served = live.recommend(user, k=6)
        assert served.items == [str(i) for i in ids[0]]
        np.testing.assert_allclose(served.scores, scores[0], rtol=1e-5, atol=1e-5)
        assert not served.cold_start


@pytest.mark.parametrize("name", SERVABLE)
def test_new_user_after_events_gets_what_the_stateless_history_gets(runs, name):
    live = _live(runs[name])
    events = ["3", "7", "3", "11"]
    for item in events:                                       # one write per request
        live.observe([Event("newcomer", item)])
    served = live.recommend("newcomer", k=5, explain=True)
    stateless = live.recommend_history(events, k=5, explain=True)
    assert served.cold_start and stateless.cold_start
    assert served.items == stateless.items
    np.testing.assert_allclose(served.scores, stateless.scores, rtol=1e-5, atol=1e-5)
    for mine, theirs in zip(served.explanations, stateless.explanations):   # equal to float error
        assert {(e.kind, e.id): pytest.approx(e.weight, abs=1e-5) for e in mine} == \
            {(e.kind, e.id): e.weight for e in theirs}
    assert not set(served.items) & set(events)                 # seen items excluded


@pytest.mark.parametrize("name", [n for n in SERVABLE if n not in ("nmrn", "mars")])
def test_live_state_after_events_scores_like_the_whole_history(runs, name):
    live = _live(runs[name])
    saved, new = live.saved, ["2", "9", "4"]
    live.observe([Event("1", new[0])])
    live.observe([Event("1", new[1]), Event("0", "1"), Event("1", new[2])])
    served = live.recommend("1", k=15, exclude_seen=False)
    model = saved.model
    start, end = saved.seen_indptr[1], saved.seen_indptr[2]
    history = np.concatenate([saved.seen_items[start:end], [2, 9, 4]])
    times = np.concatenate([saved.seen_times[start:end], [np.nan] * 3])      # served without timestamps
    query = make_query(model, [1], np.array([0, len(history)]), history, rows=[0], times=times)
    with torch.no_grad():
        expected = model.score_all(query)[0]
    np.testing.assert_allclose(served.scores, expected[[int(i) for i in served.items]].numpy(),
                               rtol=1e-5, atol=1e-5)
    assert served.events_seen == len(history)


@pytest.mark.parametrize("name", SERVABLE)
def test_rebuild_replays_the_log_into_the_same_states(runs, name):
    store = MemoryStore()
    live = _live(runs[name], store)
    live.observe([Event("1", "2"), Event("new", "5")])
    live.observe([Event("3", "8"), Event("1", "6"), Event("new", "2")])
    before = {u: live.recommend(u, k=4) for u in ["1", "3", "new"]}
    store.replace_states({}, "another checkpoint")            # as if written by another model
    report = _live(runs[name], store).rebuild()
    assert report["events"] == 5 and report["skipped"] == 0
    after = {u: live.recommend(u, k=4) for u in ["1", "3", "new"]}
    for user in before:
        assert after[user].items == before[user].items
        np.testing.assert_allclose(after[user].scores, before[user].scores, rtol=1e-5, atol=1e-6)


def test_stateful_memory_changes_with_an_event_and_is_shown_with_labels(runs):
    live = _live(runs["rumf"])
    before = live.memory("4")
    live.observe([Event("4", "10")])
    after = live.memory("4")
    assert before.state == "FeatureMemory" and before.kind == "slot"
    assert [label for label, _ in after.rows] == [str(m) for m in range(4)]
    assert after.events_seen == before.events_seen + 1
    assert any(a != b for (_, a), (_, b) in zip(before.rows, after.rows))
    window = _live(runs["stamp"]).memory("4")
    assert window.kind == "click" and all(vector is None for _, vector in window.rows)


def test_nmrn_global_memory_is_one_shared_state_written_by_every_user(runs):
    live = _live(runs["nmrn"])
    other_before = live.recommend("2", k=15, exclude_seen=False)
    live.observe([Event("1", "3"), Event("1", "4")])
    other_after = live.recommend("2", k=15, exclude_seen=False)
    assert other_after.scores != other_before.scores        # user 2 reads what user 1 wrote


def test_bad_requests_name_the_problem(runs):
    live = _live(runs["stamp"])
    with pytest.raises(BadRequest, match="not in the catalogue: nope"):
        live.observe([Event("1", "3"), Event("1", "nope")])
    assert live.recommend("1", k=3).events_seen == live.recommend("1", k=3).events_seen
    assert list(live.store.log()) == []                       # the batch was refused whole
    for k in (0, 16):
        with pytest.raises(BadRequest, match="k must be"):
            live.recommend("1", k=k)
    with pytest.raises(UnknownUser):
        live.memory("stranger")


def test_forget_makes_a_user_new_again(runs):
    live = _live(runs["gru4rec"])
    fresh = live.recommend("someone", k=5)
    live.observe([Event("someone", "4")])
    assert live.recommend("someone", k=5).scores != fresh.scores
    assert live.forget("someone")
    again = live.recommend("someone", k=5)
    assert again.items == fresh.items and again.events_seen == 0


def test_cold_start_rule_per_model(runs):
    # anonymous scorers personalise from the first event; the others answer with popularity
    for name in SERVABLE:
        live = _live(runs[name])
        rec = live.recommend_history(["3"], k=3)
        if not isinstance(live.model, AnonymousScorer):
            assert rec.scores == sorted(rec.scores, reverse=True)
            popular = torch.bincount(torch.as_tensor(live.saved.seen_items), minlength=15).float()
            popular[3] = -1
            assert rec.scores == popular.topk(3).values.tolist(), name
        if isinstance(live.model, Explainer) and not isinstance(live.model, AnonymousScorer):
            assert live.recommend_history(["3"], k=2, explain=True).explanations == [[], []]


def test_facade_observe_and_history_use_the_serving_path(runs):
    rec = Recommender.load(runs["stamp"])
    before_ids, before_scores = rec.recommend(["2"], k=4)
    rec.observe("2", "5").observe("2", "6")
    ids, scores = rec.recommend(["2"], k=4)
    live = _live(runs["stamp"])
    live.observe([Event("2", "5"), Event("2", "6")])
    assert list(ids[0]) == live.recommend("2", k=4).items and list(ids[0]) != list(before_ids[0])
    anon_ids, anon_scores = rec.recommend(history=["5", "6"], k=4)
    assert list(anon_ids[0]) == live.recommend_history(["5", "6"], k=4).items
    rec.observe("stranger", "5")
    assert list(rec.recommend(["stranger"], k=3)[0][0]) == live.recommend_history(["5"], k=3).items


def test_a_user_written_beside_a_longer_history_stores_only_its_own_window(runs):
    alone, beside = MemoryStore(), MemoryStore()
    _live(runs["stamp"], alone).observe([Event("new", "3")])
    _live(runs["stamp"], beside).observe([Event("new", "3")] + [Event("other", str(i)) for i in range(9)])
    assert alone.read(["new"])["new"].state == beside.read(["new"])["new"].state
