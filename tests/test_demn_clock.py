"""DEMN's clock (spec B.3: Δ = t − t_last(u)): Δ from timestamps in units of the training data's
mean gap, the step clock without them, and the times carried through training, evaluation,
replay and serving (``Query.times``, ``update(..., times)``, the checkpoint's ``seen_times``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from memrec.checkpoint import load_model, save_model
from memrec.cli import main
from memrec.data.interactions import IdMap, Interactions
from memrec.data.query import Query
from memrec.data.synthetic import SynthConfig, generate, write_csv
from memrec.errors import ConfigError
from memrec.models import build
from memrec.models.capabilities import make_query
from memrec.models.demn_log import elapsed_units, last_times, mean_gap
from memrec.serving.live import LiveModel
from memrec.serving.store import Event, MemoryStore
from memrec.training.config import TrainConfig
from memrec.training.tasks import NextItemTask

SMALL = {"dim": 8, "slots": 3, "visitors": 3, "recent_items": 2, "history": 4, "top_r": 2}
NAN = float("nan")


def interactions(rows, n_users=3, n_items=6, timed=True) -> Interactions:
    """rows: (user, item, time) triples."""
    u, i, t = (np.array(c) for c in zip(*rows))
    return Interactions(u.astype(np.int32), i.astype(np.int32), IdMap.range(n_users), IdMap.range(n_items),
                        timestamp=t.astype(np.float64) if timed else None)


#: every user's events exactly 100 s apart: the mean gap, Δ's unit, is 100 s and every Δ is 1
EVEN = [(0, 0, 1000), (0, 1, 1100), (0, 2, 1200), (0, 3, 1300),
        (1, 1, 50), (1, 2, 150), (1, 4, 250), (2, 5, 500), (2, 0, 600), (2, 2, 700)]


def demn(data: Interactions, **params):
    torch.manual_seed(0)
    model = build("demn", data.n_users, data.n_items, {**SMALL, **params})
    model.prepare(data)
    return model.eval()


def all_scores(model, data: Interactions, times: np.ndarray | None) -> torch.Tensor:
    indptr, items = data.sequences()
    with torch.no_grad():
        return model.score_all(make_query(model, np.arange(data.n_users), indptr, items, times=times))


# -- the unit and Δ (hand-computed) -----------------------------------------------------------------
def test_the_unit_is_the_mean_gap_between_a_users_consecutive_events():
    data = interactions([(0, 0, 0), (0, 1, 10), (0, 2, 40), (1, 3, 5), (1, 4, 5), (1, 5, 105), (2, 0, 7)])
    assert mean_gap(data) == pytest.approx((10 + 30 + 0 + 100) / 4)        # never across users
    assert mean_gap(interactions(EVEN)) == pytest.approx(100.0)
    assert mean_gap(interactions(EVEN, timed=False)) == 0.0
    assert mean_gap(interactions([(0, 0, 3), (0, 1, 3), (1, 2, 9)])) == 0.0   # no time passes


def test_elapsed_counts_units_since_the_previous_event_and_one_where_a_time_is_unknown():
    times = torch.tensor([[0.0, 50.0, 50.0, 200.0], [10.0, 5.0, NAN, 60.0]], dtype=torch.float64)
    delta = elapsed_units(times, torch.tensor([NAN, 0.0], dtype=torch.float64), 50.0)
    # row 0: no earlier event → 1; then 1, 0, 3.  row 1: 10/50; backwards → 0; unknown → 1, 1
    expected = torch.tensor([[1.0, 1.0, 0.0, 3.0], [0.2, 0.0, 1.0, 1.0]])
    assert delta.dtype == torch.float32
    torch.testing.assert_close(delta, expected)


def test_last_time_is_the_last_real_events_and_the_old_one_without_events():
    times = torch.tensor([[1.0, 2.0, 0.0], [4.0, 0.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    mask = torch.tensor([[True, True, False], [True, False, False], [False, False, False]])
    got = last_times(times, mask, torch.tensor([9.0, 9.0, 9.0], dtype=torch.float64))
    torch.testing.assert_close(got, torch.tensor([2.0, 4.0, 9.0], dtype=torch.float64))


# -- which clock ------------------------------------------------------------------------------------
def test_auto_reads_time_on_timestamped_data_and_counts_steps_otherwise():
    timed, untimed = demn(interactions(EVEN)), demn(interactions(EVEN, timed=False))
    assert timed.reads_times and float(timed.time_unit) == pytest.approx(100.0)
    assert not untimed.reads_times and float(untimed.time_unit) == 0.0
    assert not demn(interactions(EVEN), clock="steps").reads_times


def test_a_time_clock_without_timestamps_and_an_unknown_clock_are_errors():
    with pytest.raises(ConfigError, match='clock = "time" needs training events with timestamps'):
        demn(interactions(EVEN, timed=False), clock="time")
    with pytest.raises(ConfigError, match="model.clock must be one of auto, time, steps"):
        demn(interactions(EVEN), clock="hours")


def test_the_cli_names_a_bad_clock_in_one_line(tmp_path):
    path = tmp_path / "synth.csv"
    write_csv(generate(SynthConfig(n_users=20, n_items=30, mean_length=5, seed=2)), path)
    result = CliRunner().invoke(main, ["train", "demn", "--data", str(path), "--out", str(tmp_path / "run"),
                                       "--epochs", "1", "--set", 'model.clock="hours"', "--no-progress"])
    assert result.exit_code == 2
    assert "model.clock must be one of auto, time, steps" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


# -- what the clock changes -------------------------------------------------------------------------
def test_events_one_unit_apart_score_as_the_step_clock_does():
    data = interactions(EVEN)
    clocked, steps = demn(data), demn(data, clock="steps")
    torch.testing.assert_close(all_scores(clocked, data, data.sequence_times()), all_scores(steps, data, None))


def test_a_long_gap_changes_the_scores_and_steps_ignore_it():
    data = interactions(EVEN)
    times = data.sequence_times().copy()
    times[3] += 5000.0                          # user 0's last event after a pause of 51 units
    clocked, steps = demn(data), demn(data, clock="steps")
    before, after = all_scores(clocked, data, data.sequence_times()), all_scores(clocked, data, times)
    assert not torch.allclose(before[0], after[0])
    torch.testing.assert_close(before[1:], after[1:])                       # only user 0 moved
    torch.testing.assert_close(all_scores(steps, data, data.sequence_times()), all_scores(steps, data, times))


def test_the_write_decays_each_slot_by_exp_of_minus_the_elapsed_units_over_its_timescale(monkeypatch):
    """γ_s = exp(−Δ/τ_s) with Δ from the timestamps: 1000, 1100, 1300, 1300 s at a 100 s unit are
    Δ = 1 (no earlier event), 1, 2, 0; and φ(Δ)'s bucket is ⌊log2(1 + Δ)⌋ = 1, 1, 1, 0."""
    import memrec.models.demn as demn_module
    seen = {}

    def capture(values, keys, x, rest, gamma, cand_in, gate_in, weight, mask, beta, return_all):
        seen["gamma"], seen["gate_in"] = gamma, gate_in
        return scan(values, keys, x, rest, gamma, cand_in, gate_in, weight, mask, beta, return_all=return_all)

    scan = demn_module.time_gated_scan
    monkeypatch.setattr(demn_module, "time_gated_scan", capture)
    model = demn(interactions(EVEN))
    history = torch.tensor([[0, 1, 2, 3]])
    times = torch.tensor([[1000.0, 1100.0, 1300.0, 1300.0]], dtype=torch.float64)
    with torch.no_grad():
        model.encode(torch.tensor([0]), history, torch.ones_like(history, dtype=torch.bool), times)
        delta = torch.tensor([1.0, 1.0, 2.0, 0.0])
        torch.testing.assert_close(seen["gamma"][0], torch.exp(-delta[:, None] / model._timescales()))
        assert torch.equal(seen["gamma"][0, 3], torch.ones(SMALL["slots"]))    # Δ = 0: no decay
        bucket = torch.tensor([1, 1, 1, 0])
        first = seen["gate_in"][0]
        x = model._write_inputs(torch.tensor([0]), history, torch.ones_like(history, dtype=torch.bool),
                                torch.full_like(history, model.n_events))
        phi = model.delta_embedding(bucket)[None]
        expected = model.gate_in(torch.cat([x[0], x[1], phi], -1))[0, :, 0]
        torch.testing.assert_close(first, expected)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_encode_with_times_equals_replaying_update_event_by_event(seed):
    data = generate(SynthConfig(n_users=10, n_items=20, mean_length=6, seed=seed))
    model = demn(data)
    g = torch.Generator().manual_seed(seed)
    B, T = 5, 7
    users = torch.randint(0, data.n_users, (B,), generator=g)
    history = torch.randint(0, data.n_items, (B, T), generator=g)
    lengths = torch.randint(0, T + 1, (B,), generator=g)
    mask = torch.arange(T)[None] < lengths[:, None]
    steps = torch.rand(B, T, generator=g, dtype=torch.float64) * 3 * float(model.time_unit)
    times = 1.6e9 + steps.cumsum(1)
    times[torch.rand(B, T, generator=g) < 0.2] = NAN                         # some events unstamped
    with torch.no_grad():
        batch = model.encode(users, history, mask, times)
        state = model.init_state(users)
        for t in range(T):
            state = model.update(state, history[:, t], times[:, t]).where(mask[:, t], state)
    batch, state = batch.trimmed(), state.trimmed()                         # the windows' padding
    torch.testing.assert_close(batch.values, state.values, atol=1e-5, rtol=1e-5)
    assert torch.equal(batch.items, state.items) and torch.equal(batch.mask, state.mask)
    assert torch.equal(torch.isnan(batch.last_time), torch.isnan(state.last_time))
    known = ~torch.isnan(batch.last_time)
    assert torch.equal(batch.last_time[known], state.last_time[known])


# -- times through training, evaluation, checkpoints and serving -------------------------------------
def test_training_batches_carry_each_sequences_times():
    data = generate(SynthConfig(n_users=10, n_items=20, mean_length=6, seed=3))
    indptr, _ = data.sequences()
    times = data.sequence_times()
    task = NextItemTask(data, TrainConfig(batch_size=8, loss="bpr"), with_times=True)
    assert next(NextItemTask(data, TrainConfig(batch_size=8, loss="bpr")).batches(torch.Generator())).times is None
    for batch in task.batches(torch.Generator().manual_seed(0)):
        for row, user in enumerate(batch.users.tolist()):
            n = int(batch.mask[row].sum())
            assert batch.times[row, :n].tolist() == times[indptr[user]:indptr[user + 1]].tolist()
            assert torch.isnan(batch.times[row, n:]).all()


def test_the_training_loss_reads_the_times():
    data = interactions(EVEN)
    times = data.sequence_times()
    indptr, items = data.sequences()
    model = demn(data).train()
    q = Query.from_csr([0], [0], indptr, items, times=times)
    candidates = torch.arange(data.n_items).expand(1, q.history.shape[1], -1).contiguous()
    torch.manual_seed(1)
    even = model.prefix_scores(q.users, q.history, q.mask, candidates, times=q.times)
    stretched = q.times.clone()
    stretched[0, 2:] += 10_000.0
    paused = model.prefix_scores(q.users, q.history, q.mask, candidates, times=stretched)
    torch.testing.assert_close(even[:, :2], paused[:, :2])                  # before the pause: equal
    assert not torch.allclose(even[:, 2:], paused[:, 2:])


def test_queries_carry_times_only_to_a_model_that_reads_them():
    data = interactions(EVEN)
    indptr, items = data.sequences()
    times = data.sequence_times()
    q = make_query(demn(data), [0, 2], indptr, items, times=times)
    torch.testing.assert_close(q.times[0], torch.tensor([1000.0, 1100.0, 1200.0, 1300.0], dtype=torch.float64))
    assert torch.isnan(q.times[1, 3])                                       # user 2's padding
    assert make_query(demn(data, clock="steps"), [0], indptr, items, times=times).times is None


def saved_run(tmp_path, data):
    model = demn(data)
    indptr, items = data.sequences()
    save_model(tmp_path, name="demn", params=SMALL, model=model, users=data.users, items=data.items,
               seen_indptr=indptr, seen_items=items, seen_times=data.sequence_times())
    return load_model(tmp_path)


def test_a_checkpoint_keeps_the_training_times_and_the_unit(tmp_path):
    data = interactions(EVEN)
    saved = saved_run(tmp_path, data)
    np.testing.assert_array_equal(saved.seen_times, data.sequence_times())
    assert saved.model.reads_times and float(saved.model.time_unit) == pytest.approx(100.0)
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["params"] == SMALL


def test_served_events_write_with_their_timestamps_as_the_batch_encoding_does(tmp_path):
    data = interactions(EVEN)
    saved = saved_run(tmp_path, data)
    live = LiveModel(saved, MemoryStore(), checkpoint="test")
    live.observe([Event("1", "0", 260), Event("1", "3", 9_000)])
    served = live.recommend("1", k=data.n_items, exclude_seen=False)
    indptr, items = data.sequences()
    history = torch.as_tensor(np.r_[items[indptr[1]:indptr[2]], [0, 3]])[None]
    times = torch.as_tensor(np.r_[data.sequence_times()[indptr[1]:indptr[2]], [260.0, 9000.0]])[None]
    with torch.no_grad():
        state = saved.model.encode(torch.tensor([1]), history, torch.ones_like(history, dtype=torch.bool), times)
        expected = saved.model.score_state(state, torch.tensor([1]))[0]
    got = dict(zip(served.items, served.scores))
    for item, score in enumerate(expected.tolist()):
        assert got[str(item)] == pytest.approx(score, abs=1e-5)
    other = LiveModel(saved, MemoryStore(), checkpoint="test")
    other.observe([Event("1", "0", 260), Event("1", "3", 270)])              # the same, without the pause
    unpaused = other.recommend("1", k=data.n_items, exclude_seen=False)
    assert not np.allclose([got[i] for i in unpaused.items], unpaused.scores, atol=1e-5)


def test_mps_refuses_the_time_clock_with_a_clear_error_and_keeps_the_step_clock():
    from memrec.devices import check_event_times
    from memrec.models.demn_log import time_dtype
    data = interactions(EVEN)
    with pytest.raises(ConfigError, match='MPS does not support: use train.device = "cpu"'):
        check_event_times(demn(data), torch.device("mps"))
    check_event_times(demn(data, clock="steps"), torch.device("mps"))          # steps: no float64 needed
    assert time_dtype(torch.device("mps")) == torch.float32 and time_dtype("cpu") == torch.float64
    assert demn(data).time_unit.dtype == torch.float32                        # a buffer MPS can hold


def test_the_trainer_gives_a_clocked_model_its_times_and_others_none():
    from memrec.training.tasks import make_task
    data = generate(SynthConfig(n_users=10, n_items=20, mean_length=6, seed=3))
    config = TrainConfig(batch_size=8, loss="bpr")
    assert make_task(demn(data), data, config).times is not None
    assert make_task(demn(data, clock="steps"), data, config).times is None
    torch.manual_seed(0)
    rum = build("rumi", data.n_users, data.n_items, {"dim": 8})
    assert make_task(rum, data, config).times is None
