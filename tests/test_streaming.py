"""The streaming protocol: time order, the cut into parts, recommend-then-update with a scorer
whose ranks are known, every update mode, and the ``memrec stream`` command."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from memrec.cli import main
from memrec.data.interactions import IdMap, Interactions
from memrec.data.synthetic import SynthConfig, generate, write_csv
from memrec.evaluation import concat_parts
from memrec.models import build
from memrec.errors import ConfigError
from memrec.models.base import Model, Query
from memrec.streaming import StreamConfig, evaluate_events, run_stream, stream_parts
from memrec.training.config import load_config
from memrec.training.stream import stream_order


def events(users, items, timestamp=None, n_users=None, n_items=None) -> Interactions:
    users, items = np.asarray(users, np.int32), np.asarray(items, np.int32)
    return Interactions(users, items, IdMap.range(n_users or users.max() + 1),
                        IdMap.range(n_items or items.max() + 1),
                        timestamp=None if timestamp is None else np.asarray(timestamp, np.float64))


class FixedScores(Model):
    """Scores from a fixed [n_users, n_items] table: ranks known by construction."""

    trainable = False

    def __init__(self, table):
        super().__init__(*table.shape)
        self.table = torch.as_tensor(table, dtype=torch.float32)

    def score_all(self, query: Query) -> torch.Tensor:
        return self.table[query.users]


# -- time order and the parts ------------------------------------------------------------------------
def test_stream_order_by_timestamp_keeps_file_order_on_ties():
    data = events([0, 1, 0, 2], [0, 1, 2, 3], timestamp=[5, 1, 5, 0])
    assert stream_order(data).tolist() == [3, 1, 0, 2]


def test_order_only_data_interleaves_users_by_relative_position():
    # user 0 has 4 events (positions 1/4 .. 4/4), user 1 has 2 (1/2, 2/2)
    data = events([0, 0, 0, 0, 1, 1], [0, 1, 2, 3, 4, 5])
    # pseudo-times: .25 .5 .75 1 | .5 1 → u0e0, u0e1, u1e0, u0e2, u0e3, u1e1 (ties: file order)
    assert stream_order(data).tolist() == [0, 1, 4, 2, 3, 5]


def test_stream_parts_are_consecutive_disjoint_and_cover_the_stream():
    n = 103
    data = events(np.arange(n) % 7, np.arange(n) % 11, timestamp=np.arange(n)[::-1])
    parts = stream_parts(data, StreamConfig(train_frac=0.5, valid_frac=0.2, n_slices=4))
    times = [p.timestamp for p in (parts.train, parts.valid, *parts.slices)]
    assert sum(map(len, times)) == n and len(parts.train) + len(parts.valid) == 52
    assert len(parts.valid) == 10 and [len(t) for t in times[2:]] == [13, 13, 13, 12]
    for earlier, later in zip(times, times[1:]):       # every part strictly after the one before
        assert earlier.max() < later.min()


@pytest.mark.parametrize("kwargs", [{"train_frac": 1.0}, {"n_slices": 0}, {"update": "sometimes"},
                                    {"valid_frac": -0.1}])
def test_bad_stream_settings_are_config_errors(kwargs):
    with pytest.raises(ConfigError):
        StreamConfig(**kwargs)


def test_a_stream_too_short_for_its_slices_is_a_config_error():
    with pytest.raises(ConfigError, match="too short"):
        stream_parts(events([0, 1, 0], [0, 1, 2], timestamp=[0, 1, 2]), StreamConfig(n_slices=3))


# -- recommend: ranks known by construction ----------------------------------------------------------
def test_evaluate_events_ranks_every_event_with_known_items_excluded():
    # 2 users, 6 items; scores decreasing in item index for both users
    table = np.tile(np.arange(6, 0, -1, dtype=np.float32), (2, 1))
    model = FixedScores(table)
    known = events([0, 0, 1], [0, 1, 5], n_users=2, n_items=6)      # user 0 knows 0, 1; user 1 knows 5
    stream = events([0, 0, 1], [2, 1, 3], n_users=2, n_items=6)
    # u0 → item 2: items 0, 1 excluded, so rank 1; u0 → item 1: a repeat, ranked: 0 is excluded,
    # 1 is first → rank 1; u1 → item 3: items 0, 1, 2 outrank it → rank 4
    metrics = evaluate_events(model, stream, known, ks=(1, 5))
    assert metrics["HR@1"] == pytest.approx(2 / 3)
    assert metrics["HR@5"] == pytest.approx(1.0)
    assert metrics["NDCG@5"] == pytest.approx((1 + 1 + 1 / np.log2(5)) / 3)


def test_warm_metrics_cover_only_users_with_known_items():
    table = np.tile(np.arange(6, 0, -1, dtype=np.float32), (3, 1))
    known = events([0, 0], [0, 1], n_users=3, n_items=6)             # user 2 is new
    stream = events([0, 2], [2, 5], n_users=3, n_items=6)             # u0: rank 1; u2: rank 6
    metrics = evaluate_events(FixedScores(table), stream, known, ks=(1,))
    assert metrics["HR@1"] == pytest.approx(0.5) and metrics["warm_HR@1"] == pytest.approx(1.0)
    assert metrics["warm_share"] == pytest.approx(0.5)


def test_evaluate_events_is_the_same_in_any_batch_size():
    rng = np.random.default_rng(0)
    model = FixedScores(rng.normal(size=(9, 20)))
    known = events(rng.integers(0, 9, 30), rng.integers(0, 20, 30), n_users=9, n_items=20)
    stream = events(rng.integers(0, 9, 40), rng.integers(0, 20, 40), n_users=9, n_items=20)
    one = evaluate_events(model, stream, known, batch_size=1)
    many = evaluate_events(model, stream, known, batch_size=1000)
    assert one == pytest.approx(many)


# -- recommend, then update ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def synthetic():
    return generate(SynthConfig(n_users=40, n_items=60, mean_length=12, seed=3))


def test_retrained_popularity_is_scored_on_what_was_known_before_each_slice(synthetic):
    cfg = StreamConfig(n_slices=3, update="retrain", ks=(10,))
    result = run_stream(load_config("pop"), synthetic, cfg)
    parts = stream_parts(synthetic, cfg)
    known = concat_parts([parts.train, parts.valid])
    for row, part in zip(result["slices"], parts.slices):
        model = build("pop", synthetic.n_users, synthetic.n_items)
        model.fit_closed_form(known)
        expected = evaluate_events(model, part, known, ks=(10,))
        assert row["HR@10"] == pytest.approx(expected["HR@10"])
        assert row["NDCG@10"] == pytest.approx(expected["NDCG@10"])
        known = concat_parts([known, part])
    assert result["mean"]["HR@10"] == pytest.approx(np.mean([r["HR@10"] for r in result["slices"]]))


def test_frozen_popularity_never_changes(synthetic):
    cfg = StreamConfig(n_slices=2, update="frozen", ks=(10,))
    result = run_stream(load_config("pop"), synthetic, cfg)
    parts = stream_parts(synthetic, cfg)
    model = build("pop", synthetic.n_users, synthetic.n_items)
    model.fit_closed_form(parts.train)
    known = concat_parts([parts.train, parts.valid, parts.slices[0]])
    expected = evaluate_events(model, parts.slices[1], known, ks=(10,))
    assert result["slices"][1]["HR@10"] == pytest.approx(expected["HR@10"])


NMRN_SMALL = ["model.dim=8", "model.slots=4", "train.epochs=2", "train.batch_size=64",
              "train.gan_pool=10", "train.gan_pretrain_epochs=1"]


@pytest.mark.parametrize("update", ["frozen", "online", "retrain"])
def test_nmrn_streams_in_every_update_mode(synthetic, update):
    cfg = StreamConfig(n_slices=2, update=update, ks=(10,))
    result = run_stream(load_config("nmrn", overrides=NMRN_SMALL), synthetic, cfg)
    assert [r["slice"] for r in result["slices"]] == [1, 2]
    assert all(0 <= r["HR@10"] <= 1 and r["update_events_per_s"] > 0 for r in result["slices"])
    assert result["offline"]["best_epoch"] >= 1


def test_online_updates_change_what_nmrn_recommends_and_frozen_only_writes_memory(synthetic):
    config = load_config("nmrn", overrides=NMRN_SMALL)
    # no validation part, so nothing is fed before slice 1: the same offline model scores it
    cfg = dict(n_slices=2, valid_frac=0.0, ks=(10,))
    frozen = run_stream(config, synthetic, StreamConfig(update="frozen", **cfg))
    online = run_stream(config, synthetic, StreamConfig(update="online", **cfg))
    assert frozen["slices"][0]["AUC"] == pytest.approx(online["slices"][0]["AUC"])
    assert frozen["slices"][1]["AUC"] != pytest.approx(online["slices"][1]["AUC"])


def test_online_update_of_a_model_without_one_is_a_config_error(synthetic):
    with pytest.raises(ConfigError, match="no online update"):
        run_stream(load_config("bprmf"), synthetic, StreamConfig(update="online"))


# -- the command line ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data_file(tmp_path_factory, synthetic):
    path = tmp_path_factory.mktemp("stream") / "synth.csv"
    write_csv(synthetic, path)
    return path


def test_memrec_stream_prints_slices_and_writes_json(data_file, tmp_path):
    out = tmp_path / "stream.json"
    result = CliRunner().invoke(main, ["stream", "nmrn", "--data", str(data_file), "--slices", "2",
                                       "--out", str(out), "--no-progress",
                                       *sum((["--set", s] for s in NMRN_SMALL), [])])
    assert result.exit_code == 0, result.output
    assert "update online" in result.output and "mean" in result.output
    saved = json.loads(out.read_text())
    assert len(saved["slices"]) == 2 and saved["update"] == "online"


@pytest.mark.parametrize("args,fragment", [
    (["stream", "bprmf", "--update", "online"], "no online update"),
    (["stream", "nmrn", "--set", "model.scope=\"team\""], "scope"),
    (["stream", "pop", "--data", "/nonexistent/x.csv"], "no such file"),
])
def test_memrec_stream_bad_input_exits_2(args, fragment, data_file):
    if "--data" not in args:
        args = [*args, "--data", str(data_file)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert fragment in result.stderr and "Traceback" not in result.output


def test_memrec_train_nmrn_with_a_shipped_config(data_file, tmp_path):
    from pathlib import Path
    config = Path(__file__).resolve().parents[1] / "configs" / "nmrn_ml-100k.toml"
    result = CliRunner().invoke(main, ["train", "nmrn", "--data", str(data_file), "--config", str(config),
                                       "--out", str(tmp_path / "run"), "--no-progress",
                                       "--set", "data.n_negatives=20",
                                       *sum((["--set", s] for s in NMRN_SMALL), [])])
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["model"] == "nmrn" and 0 <= results["metrics"]["full"]["HR@10"] <= 1
