"""Trainer, losses, samplers, config: hand-checked values and the resume guarantee."""

import json
import math

import numpy as np
import pytest
import torch

from memrec import losses
from memrec.data.interactions import IdMap, Interactions
from memrec.data.splits import leave_one_out
from memrec.data.synthetic import SynthConfig, generate
from memrec.models import build
from memrec.errors import ConfigError
from memrec.sampling import NegativeSampler
from memrec.training.config import TrainConfig, load_config, parse_override
from memrec.training.trainer import Trainer, seed_everything


# -- losses ------------------------------------------------------------------------------------
def test_bpr_hand_value():
    pos, neg = torch.tensor([2.0]), torch.tensor([[0.0, 1.0]])
    expected = -(math.log(1 / (1 + math.exp(-2))) + math.log(1 / (1 + math.exp(-1)))) / 2
    assert losses.bpr(pos, neg).item() == pytest.approx(expected)


def test_bce_hand_value():
    pos, neg = torch.tensor([0.0]), torch.tensor([[0.0, 0.0]])
    assert losses.bce(pos, neg).item() == pytest.approx(3 * math.log(2))


def test_hinge_hand_value():
    pos, neg = torch.tensor([1.0]), torch.tensor([[0.5, -1.0]])
    # max(0, 1 - 1 + 0.5) = 0.5 ; max(0, 1 - 1 - 1) = 0
    assert losses.hinge(pos, neg).item() == pytest.approx(0.25)


def test_sampled_softmax_hand_value_and_correction():
    pos, neg = torch.tensor([1.0]), torch.tensor([[0.0, 0.0]])
    expected = -math.log(math.e / (math.e + 2))
    assert losses.sampled_softmax(pos, neg).item() == pytest.approx(expected)
    # a uniform log q is a constant shift: no change
    lq = torch.full((1,), -3.0)
    assert losses.sampled_softmax(pos, neg, lq, lq[:, None].expand(1, 2)).item() == pytest.approx(expected)
    # a frequently sampled negative (high q) is discounted
    corrected = losses.sampled_softmax(pos, neg, torch.tensor([0.0]), torch.tensor([[math.log(2.0), 0.0]]))
    assert corrected.item() == pytest.approx(-math.log(math.e / (math.e + 0.5 + 1)))


def test_sampled_softmax_in_a_task_subtracts_the_samplers_log_q():
    """Items 0, 0, 0, 1 in training: popularity q = (3/4, 1/4); the positive item 1 against the
    negatives 0 and 0 with equal scores: −log(e^{−log ¼} / (e^{−log ¼} + 2 e^{−log ¾}))."""
    from memrec.training.tasks import CandidateLoss
    train = Interactions(np.array([0, 1, 2, 3], np.int32), np.array([0, 0, 0, 1], np.int32),
                         IdMap.range(4), IdMap.range(2))
    scores, candidates = torch.zeros(1, 3), torch.tensor([[1, 0, 0]])
    popular = NegativeSampler(train, distribution="popularity")
    config = TrainConfig(loss="sampled_softmax")
    expected = -math.log(4 / (4 + 2 * 4 / 3))
    assert CandidateLoss(config, popular)(scores, candidates).item() == pytest.approx(expected)
    uniform = NegativeSampler(train)                      # a constant correction: none
    assert CandidateLoss(config, uniform)(scores, candidates).item() == pytest.approx(math.log(3))
    bpr = TrainConfig(loss="bpr")                         # other losses take the scores as they are
    assert CandidateLoss(bpr, popular)(scores, candidates).item() == pytest.approx(math.log(2))


def test_full_softmax_hand_value():
    scores = torch.tensor([[0.0, math.log(3.0)]])
    assert losses.softmax_cross_entropy(scores, torch.tensor([1])).item() == pytest.approx(-math.log(0.75))


# -- samplers ----------------------------------------------------------------------------------
def tiny():
    return Interactions(np.array([0, 0, 0, 1], np.int32), np.array([0, 1, 2, 3], np.int32),
                        IdMap.range(2), IdMap.range(5))


def test_uniform_sampler_never_returns_positives():
    sampler = NegativeSampler(tiny())
    g = torch.Generator().manual_seed(0)
    draws = sampler.sample(torch.tensor([0] * 200 + [1] * 200), 3, g)
    assert set(draws[:200].flatten().tolist()) == {3, 4}
    assert set(draws[200:].flatten().tolist()) == {0, 1, 2, 4}


def test_popularity_sampler_follows_counts():
    data = Interactions(np.array([0, 1, 2, 3, 4, 5], np.int32), np.array([0, 0, 0, 1, 2, 2], np.int32),
                        IdMap.range(7), IdMap.range(3))
    sampler = NegativeSampler(data, distribution="popularity", alpha=1.0)
    assert sampler.probabilities.tolist() == pytest.approx([0.5, 1 / 6, 1 / 3])
    draws = sampler.sample(torch.tensor([6] * 30000), 1, torch.Generator().manual_seed(1))
    freq = np.bincount(draws.flatten().numpy(), minlength=3) / 30000
    assert freq == pytest.approx([0.5, 1 / 6, 1 / 3], abs=0.02)
    flat = NegativeSampler(data, distribution="popularity", alpha=0.0)
    assert flat.probabilities.tolist() == pytest.approx([1 / 3] * 3)


def test_only_seen_items_sampler_skips_items_nobody_has():
    sampler = NegativeSampler(tiny(), only_seen_items=True)
    draws = sampler.sample(torch.tensor([1] * 300), 2, torch.Generator().manual_seed(0))
    assert set(draws.flatten().tolist()) == {0, 1, 2}  # item 4 has no interactions


def test_sampler_gives_up_clearly_when_user_has_everything():
    data = Interactions(np.array([0, 0], np.int32), np.array([0, 1], np.int32), IdMap.range(1), IdMap.range(2))
    with pytest.raises(ValueError, match="almost every item"):
        NegativeSampler(data, max_rounds=5).sample(torch.tensor([0]), 1, torch.Generator())


# -- config ------------------------------------------------------------------------------------
def test_override_parsing():
    assert parse_override("train.lr=0.01") == ("train", "lr", 0.01)
    assert parse_override("data.split=loo") == ("data", "split", "loo")
    assert parse_override("model.item_bias=true") == ("model", "item_bias", True)
    with pytest.raises(ConfigError):
        parse_override("lr=0.1")


def test_config_file_and_errors(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[model]\nname = "bprmf"\ndim = 16\n[train]\nepochs = 3\n')
    cfg = load_config(None, path, ["train.lr=0.05"])
    assert cfg.model == "bprmf" and cfg.model_params == {"dim": 16}
    assert cfg.train.epochs == 3 and cfg.train.lr == 0.05
    with pytest.raises(ConfigError, match="unknown key train.learning_rate"):
        load_config("bprmf", overrides=["train.learning_rate=1"])
    with pytest.raises(ConfigError, match="has no parameter 'dims'"):
        load_config("bprmf", overrides=["model.dims=3"])
    with pytest.raises(ConfigError, match="must be an integer"):
        load_config("bprmf", overrides=["model.dim=2.5"])
    with pytest.raises(ConfigError, match="unknown model 'cmn2'"):
        load_config("cmn2")
    with pytest.raises(ConfigError, match="choose from"):
        TrainConfig(optimizer="adamw")
    path.write_text("[model\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config("bprmf", path)


# -- trainer -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def split():
    return leave_one_out(generate(SynthConfig(n_users=120, n_items=150, mean_length=20, seed=5)))


def train_bprmf(split, run_dir, epochs, resume=False, **overrides):
    config = TrainConfig(epochs=epochs, batch_size=256, lr=0.02, patience=0, **overrides)
    seed_everything(config.seed)
    model = build("bprmf", split.train.n_users, split.train.n_items, {"dim": 8})
    result = Trainer(config, run_dir=run_dir, progress=False, echo=lambda _: None).fit(
        model, split, resume=resume)
    return model, result


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop", "adagrad", "sgd"])
def test_resume_reaches_the_same_weights(split, tmp_path, optimizer):
    full, full_result = train_bprmf(split, tmp_path / "a", 6, optimizer=optimizer)
    # an interrupted run: 3 epochs, then resumed to 6 in the same folder
    train_bprmf(split, tmp_path / "b", 3, optimizer=optimizer)
    resumed, resumed_result = train_bprmf(split, tmp_path / "b", 6, resume=True, optimizer=optimizer)
    for name, tensor in full.state_dict().items():
        assert torch.equal(tensor, resumed.state_dict()[name]), name
    assert resumed_result.best_epoch == full_result.best_epoch
    assert [r["valid"] for r in resumed_result.history] == [r["valid"] for r in full_result.history]
    log = [json.loads(line) for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2, 3, 4, 5, 6]


def test_training_reduces_the_loss_and_logs_every_epoch(split, tmp_path):
    _, result = train_bprmf(split, tmp_path, 5)
    losses_ = [r["loss"] for r in result.history]
    assert losses_[-1] < losses_[0] < math.log(2) + 0.05
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 5


def test_early_stopping_restores_best_weights(split):
    # a huge learning rate makes validation worse after the first epochs
    config = TrainConfig(epochs=30, batch_size=256, lr=0.05, patience=2, optimizer="sgd")
    seed_everything(0)
    model = build("bprmf", split.train.n_users, split.train.n_items, {"dim": 8})
    captured = {}

    class Spy(Trainer):
        def _checkpoint(self, model, optimizer, generator, state, task=None):
            if state["best_epoch"] == state["epoch"]:
                captured["best"] = {k: v.clone() for k, v in model.state_dict().items()}

    result = Spy(config, progress=False, echo=lambda _: None).fit(model, split)
    assert result.stopped_early or result.best_epoch == 30
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, captured["best"][name])
    scores = [r["valid"]["full"]["NDCG@10"] for r in result.history]
    assert scores[result.best_epoch - 1] == max(scores)


def test_resume_without_checkpoint_is_a_clear_error(split, tmp_path):
    from memrec.errors import CheckpointError
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        train_bprmf(split, tmp_path, 2, resume=True)


def test_corrupt_checkpoint_is_a_clear_error(split, tmp_path):
    from memrec.errors import CheckpointError
    train_bprmf(split, tmp_path, 1)
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        train_bprmf(split, tmp_path, 2, resume=True)


def test_refit_retrains_on_train_plus_valid_for_the_chosen_epochs():
    """train.refit: epochs are chosen on validation, then a fresh model learns from train +
    valid for that many epochs — it must know the validation interactions."""
    from memrec.data.splits import leave_one_out
    from memrec.data.synthetic import SynthConfig, generate
    from memrec.recommender import Recommender
    split = leave_one_out(generate(SynthConfig(n_users=60, n_items=80, mean_length=10, seed=1)))
    plain = Recommender("bprmf", dim=8, train={"epochs": 3, "patience": 0}).fit_split(split, echo=lambda _: None)
    lines = []
    refit = Recommender("bprmf", dim=8, train={"epochs": 3, "patience": 0, "refit": True}
                        ).fit_split(split, echo=lines.append)
    assert refit.result_.best_epoch == plain.result_.best_epoch
    assert refit.result_.refit_epochs == plain.result_.best_epoch
    assert any(line.startswith("refit: a fresh model on train + valid") for line in lines)
    # the refit model saw the validation pairs: its item embeddings differ from the plain model's
    assert not torch.equal(refit.model_.item_embedding.weight, plain.model_.item_embedding.weight)


def test_max_seconds_stops_after_the_epoch_that_passes_it_and_keeps_the_best(split):
    model, result = train_bprmf(split, None, 5, max_seconds=1e-9)
    assert result.stopped_by_time and result.epochs_run == 1 and len(result.history) == 1
    assert result.best_epoch == 1
    _, unlimited = train_bprmf(split, None, 3, max_seconds=1e6)
    assert not unlimited.stopped_by_time and unlimited.epochs_run == 3
    with pytest.raises(ConfigError, match="train.max_seconds"):
        TrainConfig(max_seconds=-1.0)


def test_max_seconds_counts_the_time_before_a_resume(split, tmp_path):
    # the clock a checkpoint records carries over: a resumed run does not get a fresh budget
    train_bprmf(split, tmp_path, 2)
    blob = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    counters = json.loads(blob["counters"])
    assert counters["elapsed"] > 0
    blob["counters"] = json.dumps({**counters, "elapsed": 1e9})
    torch.save(blob, tmp_path / "checkpoint.pt")
    _, result = train_bprmf(split, tmp_path, 5, resume=True, max_seconds=1e6)
    assert result.stopped_by_time and result.epochs_run == 3


class _SlowValidator:
    """Validation that sleeps: wall seconds pass, this process's CPU seconds hardly do."""

    protocols = ("full",)

    def evaluate(self, model):
        import time
        time.sleep(2.6)
        return {"full": {"NDCG@10": 0.5}}


@pytest.mark.parametrize("clock, epochs_run", [("wall", 1), ("cpu", 3)])
def test_the_clock_a_budget_counts(split, clock, epochs_run):
    # each validation sleeps past the budget; three tiny epochs take well under 2.5 CPU seconds
    # (all threads: CI does not cap them), so only the wall clock runs out
    config = TrainConfig(epochs=3, batch_size=256, patience=0, max_seconds=2.5, clock=clock)
    model = build("bprmf", split.train.n_users, split.train.n_items, {"dim": 8})
    result = Trainer(config, progress=False, echo=lambda _: None).fit(model, split, validator=_SlowValidator())
    assert result.epochs_run == epochs_run
    with pytest.raises(ConfigError, match="train.clock"):
        TrainConfig(clock="gpu")
