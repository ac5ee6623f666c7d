"""Evaluation protocols on hand-checked splits, and Popularity on ml-100k against an
independent NumPy computation."""

import math

import numpy as np
import pytest
import torch

from memrec.data.interactions import IdMap, Interactions
from memrec.data.splits import Candidates, NextItemCases, Split
from memrec.evaluation import Evaluator
from memrec.models.baselines.pop import Popularity
from memrec.models.base import Query
from memrec.models.capabilities import AnonymousScorer, HistoryScorer

from .conftest import shared_path


def table(users, items, n_users=3, n_items=5):
    return Interactions(np.array(users, np.int32), np.array(items, np.int32),
                        IdMap.range(n_users), IdMap.range(n_items))


@pytest.fixture
def split():
    # train: u0 {0, 1}, u1 {0, 2}, u2 {1}; test: u0 → 2, u1 → 3, u2 → 0
    train = table([0, 0, 1, 1, 2], [0, 1, 0, 2, 1])
    test = table([0, 1, 2], [2, 3, 0])
    negatives = Candidates(np.array([0, 1, 2]), np.array([[3, 4], [1, 4], [3, 4]]))
    return Split("loo", train, test, test_negatives=negatives)


def fitted_pop(split):
    model = Popularity(3, 5)
    model.fit_closed_form(split.train)  # counts: item0 2, item1 2, item2 1, item3 0, item4 0
    return model


def test_full_ranking_popularity_hand_values(split):
    result = Evaluator(split, "test", protocols=("full",), ks=(1, 5)).evaluate(fitted_pop(split))
    full = result["full"]
    # u0: candidates {2,3,4} scores (1,0,0): target 2 rank 1
    # u1: candidates {1,3,4} scores (2,0,0): target 3 ties item 4 below item 1 → rank 2 or 3
    # u2: candidates {0,2,3,4} scores (2,1,0,0): target 0 rank 1
    assert full["HR@1"] == pytest.approx(2 / 3)
    assert full["MRR@5"] == pytest.approx((1 + (1 / 2 + 1 / 3) / 2 + 1) / 3)
    u1_ndcg = (1 / math.log2(3) + 1 / math.log2(4)) / 2
    assert full["NDCG@5"] == pytest.approx((1 + u1_ndcg + 1) / 3)
    # AUC: u0 beats 2/2, u1 beats 0.5/2 (one tie, one above), u2 beats 3/3
    assert full["AUC"] == pytest.approx((1 + 0.25 + 1) / 3)


class CachedScores(Popularity):
    """A scorer whose scores are a buffer of its own (not a view): keeps the last table."""

    def score_all(self, query: Query) -> torch.Tensor:
        self.table = self.counts.expand(len(query), -1).clone()
        return self.table


def test_masking_known_items_never_writes_into_the_models_tensors(split):
    """Full ranking sets known items to −inf in place: a view (popularity's expanded counts)
    or a buffer of the model is copied first, and a second evaluation gives the same metrics."""
    model = fitted_pop(split)
    counts = model.counts.clone()
    first = Evaluator(split, "test", protocols=("full",)).evaluate(model)
    assert torch.equal(model.counts, counts)
    assert Evaluator(split, "test", protocols=("full",)).evaluate(model) == first
    cached = CachedScores(3, 5)
    cached.fit_closed_form(split.train)
    cached.register_buffer("table", torch.zeros(0))
    assert Evaluator(split, "test", protocols=("full",)).evaluate(cached) == first
    assert torch.isfinite(cached.table).all()          # the buffer it returned was not masked


def test_full_ranking_reports_catalogue_metrics_of_the_lists_it_ranks(split):
    full = Evaluator(split, "test", protocols=("full",), ks=(1, 2)).evaluate(fitted_pop(split))["full"]
    # ranked lists (known items out, scores = training counts 2, 2, 1, 0, 0):
    # u0: 2, then 3 or 4 (tied); u1: 1, then 3 or 4; u2: 0, 2
    # top-1 exposure (1, 1, 1, 0, 0); top-2 expected exposure (1, 1, 2, 1, 1)
    assert full["Coverage@1"] == pytest.approx(3 / 5)
    # items 3 and 4 are each missed by both tied lists with probability 1/2 * 1/2
    assert full["Coverage@2"] == pytest.approx((3 + 2 * (1 - 1 / 4)) / 5)
    assert full["Gini@2"] == pytest.approx((-4 - 2 + 0 + 2 + 4 * 2) / (5 * 6))   # sorted 1,1,1,1,2
    popularity, n_users = np.array([2, 2, 1, 0, 0]), 3       # training users per item, users
    info = -np.log2(np.maximum(popularity, 1) / n_users)
    exposure = np.array([1, 1, 2, 1, 1])
    assert full["Novelty@2"] == pytest.approx(exposure @ info / 6)
    assert full["AvgPop@2"] == pytest.approx(exposure @ popularity / 6)


def test_catalogue_metrics_only_where_the_whole_catalogue_is_ranked(split):
    result = Evaluator(split, "test", ks=(1,)).evaluate(fitted_pop(split))
    assert "Coverage@1" in result["full"] and not any("Coverage" in m for m in result["sampled"])
    skipped = Evaluator(split, "test", protocols=("full",), ks=(1,), beyond_accuracy=False)
    assert not any("Gini" in m for m in skipped.evaluate(fitted_pop(split))["full"])


def test_catalogue_metrics_do_not_depend_on_the_batch_size(split):
    one = Evaluator(split, "test", protocols=("full",), ks=(2,), batch_size=1).evaluate(fitted_pop(split))
    all_ = Evaluator(split, "test", protocols=("full",), ks=(2,)).evaluate(fitted_pop(split))
    assert one["full"] == pytest.approx(all_["full"])


def test_evaluation_progress_bar_is_shown_only_when_asked(split, capsys):
    Evaluator(split, "test", protocols=("full",), ks=(1,), progress=True).evaluate(fitted_pop(split))
    assert "full ranking (test)" in capsys.readouterr().err
    Evaluator(split, "test", protocols=("full",), ks=(1,), progress=False).evaluate(fitted_pop(split))
    assert capsys.readouterr().err == ""


def test_sampled_ranking_uses_stored_negatives(split):
    result = Evaluator(split, "test", protocols=("sampled",), ks=(1,)).evaluate(fitted_pop(split))
    # u0: {2:1, 3:0, 4:0} → rank 1; u1: {3:0, 1:2, 4:0} → rank 2..3; u2: {0:2, 3:0, 4:0} → 1
    assert result["sampled"]["HR@1"] == pytest.approx(2 / 3)


def test_valid_items_are_excluded_when_testing():
    train = table([0, 0], [0, 1])
    valid = table([0], [2])
    test = table([0], [3])
    split = Split("loo", train, test, valid=valid)
    model = Popularity(3, 5)
    model.fit_closed_form(table([1, 1, 1, 2, 2, 2], [2, 2, 3, 2, 3, 4]))  # counts 2:3, 3:2, 4:1
    full = Evaluator(split, "test", protocols=("full",), ks=(1,)).evaluate(model)["full"]
    assert full["HR@1"] == 1.0  # item 2 (valid) is excluded, so item 3 ranks first


def test_a_repeated_test_item_is_still_a_target():
    train = table([0, 0], [0, 1])
    test = table([0], [1])  # the user consumes item 1 again
    split = Split("loo", train, test)
    model = Popularity(3, 5)
    model.fit_closed_form(train)
    full = Evaluator(split, "test", protocols=("full",), ks=(1,)).evaluate(model)["full"]
    assert full["HR@1"] == 1.0  # item 0 excluded, item 1 ranked and first


class LastItemEcho(HistoryScorer, AnonymousScorer):
    """Scores 1 for the request's last history item: a probe for the session protocol."""
    trainable = False

    def score_all(self, query: Query) -> torch.Tensor:
        scores = torch.zeros(len(query), self.n_items)
        last = query.history.gather(1, (query.mask.sum(1, keepdim=True) - 1).clamp(min=0))
        return scores.scatter(1, last, 1.0)


class HistoryWidths(LastItemEcho):
    """Records the padded history width of every batch it scores."""

    def score_all(self, query: Query) -> torch.Tensor:
        self.widths.append((query.history.shape[1], int(query.mask.sum(1).min())))
        return super().score_all(query)


def test_batches_hold_users_of_similar_history_length_and_metrics_do_not_change():
    """Users are scored shortest history first, so a history encoder pads little: with
    histories of 1..6 events in mixed order and batches of 2, every batch is as wide as its
    longest history and no batch mixes the shortest with the longest."""
    lengths = [5, 1, 6, 2, 4, 3]
    users = np.repeat(np.arange(6), lengths)
    items = np.concatenate([np.arange(n) for n in lengths])
    train = table(users, items, n_users=6, n_items=8)
    test = table(np.arange(6), np.full(6, 7), n_users=6, n_items=8)
    split = Split("loo", train, test)
    model = HistoryWidths(6, 8)
    model.widths = []
    by_two = Evaluator(split, "test", protocols=("full",), batch_size=2).evaluate(model)
    assert [w for w, _ in model.widths] == [2, 4, 6]
    assert [shortest for _, shortest in model.widths] == [1, 3, 5]
    whole = Evaluator(split, "test", protocols=("full",), batch_size=6).evaluate(model)
    assert whole["full"] == pytest.approx(by_two["full"])


def test_session_protocol_reads_case_histories():
    train = table([0, 0], [0, 1])
    cases = NextItemCases(indptr=np.array([0, 1, 3]), items=np.array([3, 0, 2]),
                          targets=np.array([3, 4]), users=np.array([-1, -1]))
    split = Split("session", train, train.take(np.arange(0)), test_cases=cases)
    result = Evaluator(split, "test", ks=(1, 5)).evaluate(LastItemEcho(3, 5))
    # case 0: last item 3 = target → hit; case 1: last item 2, target 4 ties with 3 others at 0
    assert result["session"]["HR@1"] == pytest.approx((1 + 0) / 2)
    assert result["session"]["MRR@5"] == pytest.approx((1 + (1 / 2 + 1 / 3 + 1 / 4 + 1 / 5) / 4) / 2)
    # the cases' top-1 are items 3 and 2; a top-5 of five items holds the whole catalogue
    assert result["session"]["Coverage@1"] == pytest.approx(2 / 5)
    assert result["session"]["Coverage@5"] == 1.0


def test_session_protocol_refuses_user_models():
    from memrec.models.baselines.bprmf import BPRMF
    train = table([0], [0])
    cases = NextItemCases(np.array([0, 1]), np.array([0]), np.array([1]), np.array([-1]))
    split = Split("session", train, train.take(np.arange(0)), test_cases=cases)
    with pytest.raises(ValueError, match="anonymous"):
        Evaluator(split, "test").evaluate(BPRMF(1, 5, dim=2))


def test_popularity_on_ml100k_matches_independent_numpy():
    """Issue 2's acceptance check: Pop, leave-one-out, full protocol, on raw u.data."""
    from memrec.data.readers import load
    from memrec.data.splits import leave_one_out
    path = shared_path("ml-100k", "raw", "u.data")
    split = leave_one_out(load(path).interactions)
    got = Evaluator(split, "test", protocols=("full",), ks=(10,)).evaluate(
        fitted_pop_on(split))["full"]

    raw = np.loadtxt(path, dtype=np.int64)  # user item rating timestamp, file order
    users, items, ts = raw[:, 0], raw[:, 1], raw[:, 3]
    order = np.lexsort((np.arange(len(raw)), ts, users))
    hr, ndcg = [], []
    train_rows, test_of, known_of = [], {}, {}
    starts = np.flatnonzero(np.r_[True, users[order][1:] != users[order][:-1]])
    bounds = list(starts) + [len(order)]
    for a, b in zip(bounds[:-1], bounds[1:]):
        rows = order[a:b]
        u = users[rows[0]]
        if len(rows) >= 3:
            train_rows.extend(rows[:-2])
            test_of[u] = items[rows[-1]]
            known_of[u] = set(items[rows[:-1]])
        else:
            train_rows.extend(rows)
    counts = np.bincount(items[train_rows], minlength=items.max() + 1).astype(float)
    all_items = np.unique(items)
    for u, target in test_of.items():
        candidates = np.array([i for i in all_items if i not in known_of[u] or i == target])
        s = counts[candidates]
        t = counts[target]
        p = int((s > t).sum())
        g = int((s == t).sum())
        ranks = np.arange(p + 1, p + g + 1)
        hr.append(np.mean(ranks <= 10))
        ndcg.append(np.mean(np.where(ranks <= 10, 1 / np.log2(ranks + 1), 0.0)))
    assert got["HR@10"] == pytest.approx(np.mean(hr), abs=1e-12)
    assert got["NDCG@10"] == pytest.approx(np.mean(ndcg), abs=1e-12)


def fitted_pop_on(split):
    model = Popularity(split.train.n_users, split.train.n_items)
    model.fit_closed_form(split.train)
    return model


def test_sampled_negatives_the_user_already_has_are_not_ranked():
    # u0 has item 0 in train; the file's negatives for u0 include it (CMN's npz does this)
    train = table([0, 0, 1], [0, 1, 1])
    test = table([0], [2])
    split = Split("given", train, test,
                  test_negatives=Candidates(np.array([0]), np.array([[0, 3]])))
    model = Popularity(3, 5)
    model.fit_closed_form(table([1, 1, 1, 2], [0, 0, 0, 2]))  # item 0 outscores the target 2
    sampled = Evaluator(split, "test", protocols=("sampled",), ks=(1,)).evaluate(model)["sampled"]
    assert sampled["HR@1"] == 1.0  # item 0 is known to u0, so only item 3 competes


# -- regressions: protocols asked for must run or fail loudly; undefined metrics are not zeros -----
def test_regression_requested_protocol_that_cannot_run_is_an_error(split):
    from memrec.errors import ConfigError
    no_negatives = Split("loo", split.train, split.test)
    with pytest.raises(ConfigError, match="protocol 'sampled' cannot run: the split stores no sampled negatives"):
        Evaluator(no_negatives, "test", protocols=("sampled",))
    with pytest.raises(ConfigError, match="protocol 'session' cannot run"):
        Evaluator(split, "test", protocols=("session",))
    sessions = Split("session", split.train, split.test.take(np.arange(0)),
                     test_cases=NextItemCases(indptr=np.array([0, 1]), items=np.array([1]),
                                              targets=np.array([2]), users=np.array([-1])))
    with pytest.raises(ConfigError, match="protocol 'full' cannot run: this is a session split"):
        Evaluator(sessions, "test", protocols=("full",))
    # named nothing: every protocol the split can run, and nothing else
    assert Evaluator(no_negatives, "test").protocols == ("full",)
    assert Evaluator(split, "test").protocols == ("full", "sampled")
    assert Evaluator(sessions, "test").protocols == ("session",)


def test_regression_trainer_validates_on_the_asked_protocol_or_fails(split):
    from memrec.errors import ConfigError
    from memrec.training.config import TrainConfig
    from memrec.training.trainer import Trainer
    valid = table([0], [3])
    no_negatives = Split("loo", split.train, split.test, valid=valid)
    trainer = Trainer(TrainConfig(valid_protocol="sampled", epochs=1), progress=False, echo=lambda s: None)
    with pytest.raises(ConfigError, match="train.valid_protocol: protocol 'sampled' cannot run"):
        trainer.fit(Popularity(3, 5), no_negatives)
    auto = Trainer(TrainConfig(epochs=1), progress=False, echo=lambda s: None)
    result = auto.fit(Popularity(3, 5), no_negatives)
    assert list(result.history[0]["valid"]) == ["full"]


def test_regression_undefined_auc_is_left_out_of_the_mean_and_counted():
    # u0 knows items 0 and 1 of 3, so its held-out item 2 is the only candidate: no negative,
    # AUC undefined. Averaging it as 0 (the old behaviour) halved the AUC of the other user.
    train = table([0, 0, 1], [0, 1, 0], n_users=2, n_items=3)
    test = table([0, 1], [2, 1], n_users=2, n_items=3)
    model = Popularity(2, 3)
    model.fit_closed_form(train)       # counts 2, 1, 0: u1's held-out item 1 ranks above item 2
    metrics = Evaluator(Split("loo", train, test), "test", protocols=("full",), ks=(1,)).evaluate(model)["full"]
    assert metrics["AUC"] == pytest.approx(1.0)
    assert metrics["AUC_undefined"] == 1.0
    assert metrics["HR@1"] == pytest.approx(1.0)    # defined for both requests
    assert "HR@1_undefined" not in metrics


def test_regression_cli_evaluate_sampled_without_negatives_is_a_one_line_error(tmp_path):
    # it printed "Empty DataFrame" (the protocol was dropped silently)
    from click.testing import CliRunner

    from memrec.cli import main
    from memrec.data.synthetic import SynthConfig, generate, write_csv
    path = tmp_path / "data.csv"
    write_csv(generate(SynthConfig(n_users=30, n_items=20, mean_length=6, seed=0)), path)
    out = tmp_path / "pop"
    runner = CliRunner()
    trained = runner.invoke(main, ["train", "pop", "--data", str(path), "--out", str(out),
                                   "--set", "data.n_negatives=0"])
    assert trained.exit_code == 0, trained.output
    result = runner.invoke(main, ["evaluate", str(out), "--protocol", "sampled"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "protocol 'sampled' cannot run" in lines[0] and "Traceback" not in result.output
    assert runner.invoke(main, ["evaluate", str(out)]).exit_code == 0      # none named: what runs
