"""STAMP / STMP: hand-computed oracles, padding invariance, the all-prefix pass, the next-item
task, session validation and live-session recommendations."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from memrec.data.interactions import IdMap, Interactions
from memrec.data.splits import carve_session_validation, session_split
from memrec.evaluation import Evaluator
from memrec.models import build
from memrec.errors import ConfigError
from memrec.models.base import Query
from memrec.models.stamp import STAMP, STMP, clip_norm
from memrec.training.config import TrainConfig
from memrec.training.tasks import NextItemTask, make_task
from memrec.training.trainer import Trainer

from .conftest import shared_path


def tiny(variant: str) -> STAMP:
    """d = 2; items E = [(1,0), (0,1), (1,1)]; attention W_1 = I, W_2 = W_3 = 0, w_0 = (1, 0);
    W_s = I, W_t = [[1,1],[0,1]], zero biases, no norm clip."""
    m = STAMP(1, 3, dim=2, variant=variant, max_norm=10.0).double()
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
        m.item_embedding.weight.copy_(torch.tensor([[1., 0.], [0., 1.], [1., 1.]]))
        m.attend.key_proj.weight.copy_(torch.eye(2))
        m.attend.out.weight.copy_(torch.tensor([[1., 0.]]))
        m.session_cell.weight.copy_(torch.eye(2))
        m.current_cell.weight.copy_(torch.tensor([[1., 1.], [0., 1.]]))
    return m


def session(*items, width=None):
    width = width or len(items)
    history = torch.zeros(1, width, dtype=torch.long)
    history[0, :len(items)] = torch.tensor(items)
    mask = torch.arange(width)[None] < len(items)
    return Query(torch.tensor([-1]), history, mask)


@pytest.mark.parametrize("variant, expected", [
    # session (item 0, item 1): α = (σ(1), σ(0)) = (0.731059, 0.5), m_a = (0.731059, 0.5),
    # m_s = (0.5, 0.5), h_t = tanh(W_t x_2) = (tanh 1, tanh 1);
    # official: h_s = tanh(m_a + m_s) = tanh(1.231059, 1.0); paper: h_s = tanh(m_a)
    ("official", [0.641937, 0.580026, 1.221963]),
    ("paper", [0.475016, 0.351946, 0.826962]),
])
def test_hand_computed_session(variant, expected):
    m = tiny(variant)
    q = session(0, 1)
    np.testing.assert_allclose(m.score_all(q)[0].detach().numpy(), expected, atol=1e-6)
    (entries,) = m.explain(q, torch.tensor([2]))
    assert [(e.kind, e.id) for e in entries] == [("click", 0), ("click", 1)]
    np.testing.assert_allclose([e.weight for e in entries], [0.731059, 0.5], atol=1e-6)


def test_single_click_stmp_equals_stamp_without_attention():
    """t = 1: m_s = m_t = x_1; with the attention output forced to 0, STAMP's code form
    (m_a = Σα x + m_s) is STMP."""
    stamp = tiny("official")
    with torch.no_grad():
        stamp.attend.out.weight.zero_()
    stmp = STMP(1, 3, dim=2, max_norm=10.0).double()
    stmp.load_state_dict(stamp.state_dict())
    for q in (session(2), session(0, 2, 1)):
        torch.testing.assert_close(stamp.score_all(q), stmp.score_all(q))


def test_score_is_the_trilinear_product():
    torch.manual_seed(0)
    m = STAMP(1, 7, dim=5).double()
    q = session(1, 4, 2)
    state, _ = m.session_state(q.history, q.mask)
    torch.testing.assert_close(m.score_all(q)[0], m.item_embedding.weight @ state[0])


@pytest.mark.parametrize("variant", ["official", "paper"])
def test_padding_never_changes_a_score(variant):
    torch.manual_seed(1)
    m = STAMP(1, 9, dim=6, variant=variant).double()
    for p in m.parameters():
        torch.nn.init.normal_(p, std=0.5)
    base = m.score_all(session(3, 5, 1))
    padded = session(3, 5, 1, width=7)
    padded.history[0, 3:] = torch.tensor([8, 2, 6, 4])  # garbage ids under the mask
    torch.testing.assert_close(m.score_all(padded), base)
    states = m.prefix_states(padded.history, padded.mask)[:, :3]
    plain = session(3, 5, 1)
    torch.testing.assert_close(states, m.prefix_states(plain.history, plain.mask))


@pytest.mark.parametrize("variant, window", [("official", None), ("paper", None), ("official", 2), ("paper", 3)])
def test_all_prefix_pass_equals_per_prefix_forwards(variant, window):
    torch.manual_seed(2)
    m = STAMP(1, 12, dim=5, variant=variant, max_history=window).double()
    for p in m.parameters():
        torch.nn.init.normal_(p, std=0.5)
    history = torch.randint(0, 12, (3, 6))
    mask = torch.arange(6)[None] < torch.tensor([[6], [4], [1]])
    states = m.prefix_states(history, mask)
    for b in range(3):
        for k in range(int(mask[b].sum())):
            start = 0 if window is None else max(0, k + 1 - window)
            one = history[b:b + 1, start:k + 1]
            state, _ = m.session_state(one, torch.ones_like(one, dtype=torch.bool))
            torch.testing.assert_close(states[b, k], state[0])


def test_norm_clip_is_on_the_lookup_not_the_table():
    x = torch.tensor([[3., 4.], [0.3, 0.4]])
    torch.testing.assert_close(clip_norm(x, 1.0), torch.tensor([[0.6, 0.8], [0.3, 0.4]]))
    m = STAMP(1, 2, dim=2, max_norm=1.0)
    with torch.no_grad():
        m.item_embedding.weight.copy_(torch.tensor([[3., 4.], [1., 0.]]))
    m.score_all(session(0, 1))
    assert m.item_embedding.weight[0].tolist() == [3.0, 4.0]


def test_empty_session_is_a_clear_error():
    m = STAMP(1, 3, dim=2)
    with pytest.raises(ValueError, match="at least one click"):
        m.session_state(torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, 2, dtype=torch.bool))


# -- training -------------------------------------------------------------------------------------
def sessions(lengths, n_items=30, seed=0) -> Interactions:
    """Sessions walking the item ring: start s, then s+1, s+2, … (mod n_items)."""
    rng = np.random.default_rng(seed)
    sess = np.repeat(np.arange(len(lengths)), lengths)
    offset = np.arange(len(sess)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    item = (np.repeat(rng.integers(0, n_items, len(lengths)), lengths) + offset) % n_items
    return Interactions(sess.astype(np.int32), item.astype(np.int32), IdMap.range(len(lengths)),
                        IdMap.range(n_items), timestamp=np.arange(len(sess), dtype=np.float64),
                        session=sess)


def test_next_item_task_covers_every_prefix_once_per_epoch():
    data = sessions([2, 5, 1, 3, 7, 4, 2] * 5)
    task = NextItemTask(data, TrainConfig(batch_size=8, loss="softmax"))
    indptr, items = data.sequences()
    expected = sorted(t for u in range(data.n_users) for t in items[indptr[u] + 1:indptr[u + 1]])
    batches = list(task.batches(torch.Generator().manual_seed(0)))
    assert task.n_examples == len(expected) == sum(b.size for b in batches)
    assert sorted(torch.cat([b.targets for b in batches]).tolist()) == expected
    for b in batches:  # a target is always the item right after its prefix
        nxt = b.history[:, 1:][b.mask[:, 1:]]
        assert torch.equal(nxt, b.targets)


def test_batches_start_afresh_in_every_length_window():
    """Targets 1, 1, 3 (window 0, sorted by length) then 1, 2 (window 1), 2 per batch: window
    0's longest sequence gets a batch of its own instead of sharing one (and its padding) with
    window 1's shortest, as one running count over both windows did."""
    from memrec.training.tasks import _batch_starts
    starts = _batch_starts(np.array([1, 1, 3, 1, 2]), np.array([0, 0, 0, 1, 1]), 2)
    assert starts.tolist() == [2, 3, 4]


def test_length_buckets_keep_padding_small():
    """Sessions of very unequal lengths: every batch's padded L² cells stay within 3× of its
    sequences' own (the straddling batches of before were 389× on Yoochoose 1/64)."""
    lengths = np.random.default_rng(0).geometric(0.3, 4_000) + 1
    data = sessions(lengths, n_items=50)
    task = NextItemTask(data, TrainConfig(batch_size=64, loss="softmax"))
    for batch in task.batches(torch.Generator().manual_seed(0)):
        length = batch.mask.sum(1)
        assert batch.mask.shape[0] * batch.mask.shape[1] ** 2 <= 3 * (length ** 2).sum()


def test_next_item_loss_equals_per_prefix_cross_entropy():
    torch.manual_seed(3)
    data = sessions([4, 3, 2], n_items=10)
    m = STAMP(data.n_users, 10, dim=4).double()
    task = NextItemTask(data, TrainConfig(batch_size=100, loss="softmax"))
    (batch,) = list(task.batches(torch.Generator().manual_seed(0)))
    losses = []
    for b in range(len(batch.history)):
        row = batch.history[b][batch.mask[b]]
        for k in range(1, len(row)):
            logits = m.score_all(Query(torch.tensor([-1]), row[None, :k], torch.ones(1, k, dtype=torch.bool)))
            losses.append(torch.nn.functional.cross_entropy(logits, row[k:k + 1]))
    torch.testing.assert_close(task.loss(m, batch), torch.stack(losses).mean())


def test_loss_must_fit_the_task():
    data = sessions([3, 3])
    with pytest.raises(ConfigError, match="copy read.*softmax"):   # log-probabilities: their NLL only
        make_task(build("stamp", data.n_users, data.n_items, {"repeat": True}), data,
                  TrainConfig(loss="sampled_softmax"))
    with pytest.raises(ConfigError, match="next-item model"):
        make_task(build("bprmf", data.n_users, data.n_items), data, TrainConfig(loss="softmax"))


@pytest.mark.parametrize("cls", [STAMP, STMP])
def test_sampled_candidates_score_as_the_full_output_does(cls):
    """A sampled softmax trains on eq. (10) for its candidates only: the same numbers as the
    catalogue-wide output at those columns, for every prefix."""
    torch.manual_seed(0)
    m = cls(1, 9, dim=4)
    history, mask = torch.tensor([[1, 4, 2, 0], [3, 5, 0, 0]]), torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]]).bool()
    candidates = torch.randint(9, (2, 4, 3))
    full = m.output(m.prefix_states(history, mask))
    torch.testing.assert_close(m.prefix_scores(None, history, mask, candidates), full.gather(2, candidates))
    data = sessions([3, 3])                          # and it trains with a sampled loss
    task = make_task(build("stamp", data.n_users, data.n_items), data, TrainConfig(loss="sampled_softmax"))
    assert isinstance(task, NextItemTask) and not task.softmax


@pytest.mark.parametrize("name", ["stamp", "stmp"])
def test_learns_planted_transitions(name):
    split = session_split(sessions(np.full(400, 6), n_items=40, seed=4), test_frac=0.1)
    torch.manual_seed(0)
    model = build(name, split.train.n_users, split.train.n_items, {"dim": 32})
    cfg = TrainConfig(epochs=15, batch_size=256, lr=0.01, loss="softmax", patience=0)
    Trainer(cfg, progress=False, echo=lambda *_: None).fit(model, split)
    hr = Evaluator(split, "test", ks=(1,)).evaluate(model)["session"]["HR@1"]
    assert hr > 0.8, f"{name} HR@1 {hr:.3f} on a deterministic item ring"


def test_session_validation_is_carved_from_the_latest_training_sessions():
    data = sessions([3, 4, 2, 5, 3, 3, 4, 2, 3, 6], n_items=50)
    split = session_split(data, test_frac=0.2)
    carved = carve_session_validation(split, valid_frac=0.25)
    assert carved.test_cases is split.test_cases
    valid_sessions = set(carved.valid.session.tolist())
    train_sessions = set(carved.train.session.tolist())
    assert not valid_sessions & train_sessions
    assert min(valid_sessions) > max(train_sessions)   # the most recent ones
    # cases are cleaned of items never seen in the remaining training sessions
    train_items = set(carved.train.item.tolist())
    assert set(carved.valid_cases.items.tolist()) | set(carved.valid_cases.targets.tolist()) <= train_items
    assert 0 < len(carved.valid_cases) <= len(carved.valid) - len(valid_sessions)
    assert len(carved.train) + len(carved.valid) == len(split.train)   # refit sees all of it
    assert carve_session_validation(carved) is carved
    assert (carved.valid_cases.users >= 0).all()            # the test sessions have users: so do these


def test_carved_validation_sessions_are_anonymous_when_the_test_sessions_are():
    # the SR-GNN pickles' test sessions are unseen (users -1): a model reading a user vector
    # (DEMN's p_u) must be validated on the anonymous one it is tested with, not on the never
    # trained vectors of the held-out sessions
    split = session_split(sessions([3, 4, 2, 5, 3, 3, 4, 2, 3, 6], n_items=50), test_frac=0.2)
    split = replace(split, test_cases=replace(split.test_cases, users=np.full_like(split.test_cases.users, -1)))
    carved = carve_session_validation(split, valid_frac=0.25)
    assert len(carved.valid_cases) and (carved.valid_cases.users == -1).all()
    assert carved.test_cases is split.test_cases


# -- raw session preprocessing ------------------------------------------------------------------
def srgnn_reference(rows, test_days):
    """SR-GNN's preprocess.py logic for Diginetica, restated with plain dicts and loops:
    (session, item, timeframe, day) rows in file order → (train sessions, test sessions)."""
    clicks, date = {}, {}
    for sess, item, frame, day in rows:
        clicks.setdefault(sess, []).append((item, frame))
        date[sess] = day
    clicks = {s: [i for i, _ in sorted(c, key=lambda x: x[1])] for s, c in clicks.items()}
    clicks = {s: c for s, c in clicks.items() if len(c) > 1}
    counts = {}
    for c in clicks.values():
        for i in c:
            counts[i] = counts.get(i, 0) + 1
    clicks = {s: [i for i in c if counts[i] >= 5] for s, c in clicks.items()}
    clicks = {s: c for s, c in clicks.items() if len(c) >= 2}
    split = max(date[s] for s in clicks) - test_days * 86400
    train = sorted((s for s in clicks if date[s] < split), key=lambda s: date[s])
    test = sorted((s for s in clicks if date[s] > split), key=lambda s: date[s])
    ids = {}
    out_train = []
    for s in train:
        out_train.append([ids.setdefault(i, len(ids) + 1) for i in clicks[s]])
    out_test = [[ids[i] for i in clicks[s] if i in ids] for s in test]
    return out_train, [t for t in out_test if len(t) >= 2]


def test_diginetica_raw_sample_matches_the_reference_pipeline(tmp_path):
    import pandas as pd
    from memrec.data.session_prep import preprocess_sessions, read_raw_clicks
    path = shared_path("diginetica", "raw_sample", "sample_train-item-views.csv")
    raw = pd.read_csv(path, sep=";")
    day = (pd.to_datetime(raw["eventdate"]) - pd.Timestamp(0)).dt.total_seconds()
    ref_train, ref_test = srgnn_reference(
        zip(raw["session_id"], raw["item_id"], raw["timeframe"], day), test_days=7)
    ours = preprocess_sessions(read_raw_clicks(path, "diginetica"), test_days=7)
    assert ours.train == ref_train
    expected_prefixes = [(s[:-i], s[-i]) for s in ref_test for i in range(1, len(s))]
    assert list(zip(ours.test_prefixes, ours.test_targets)) == expected_prefixes
    # within a session, clicks follow timeframe, not file order (the original STAMP flaw)
    ours.write(tmp_path / "digi")
    from memrec.data.readers import load
    loaded = load(tmp_path / "digi").given_split
    assert len(loaded.test_cases) == len(expected_prefixes)


def test_clicks_are_ordered_by_timeframe_and_rare_items_dropped(tmp_path):
    from memrec.data.session_prep import preprocess_sessions, read_raw_clicks
    lines = ["session_id;user_id;item_id;timeframe;eventdate"]
    # session 1 (training day) lists its clicks out of order; item 9 is rare
    lines += [f"1;NA;{i};{t};2016-05-01" for i, t in [(20, 300), (10, 100), (9, 150), (30, 200)]]
    for s in range(2, 8):   # items 10, 20, 30 reach 5 occurrences
        lines += [f"{s};NA;{i};{t};2016-05-0{1 + s % 2}" for i, t in [(10, 1), (20, 2), (30, 3)]]
    lines += ["8;NA;30;1;2016-05-20", "8;NA;10;2;2016-05-20", "8;NA;9;3;2016-05-20"]
    (tmp_path / "views.csv").write_text("\n".join(lines) + "\n")
    out = preprocess_sessions(read_raw_clicks(tmp_path / "views.csv", "diginetica"), test_days=7)
    first = out.train[0]
    assert first == [1, 2, 3]                       # 10 (t=100), 30 (t=200), 20 (t=300)
    assert out.test_prefixes == [[2]] and out.test_targets == [1]   # session 8: 30, 10 (9 dropped)


def test_raw_click_errors_are_clear(tmp_path):
    from memrec.errors import DataError
    from memrec.data.session_prep import read_raw_clicks
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="not a diginetica click file"):
        read_raw_clicks(tmp_path / "bad.csv", "diginetica")
    with pytest.raises(DataError, match="no such file"):
        read_raw_clicks(tmp_path / "missing.dat", "yoochoose")


# -- the copy read (model.repeat) -----------------------------------------------------------------
def tiny_copy(gate_bias: float) -> STAMP:
    """:func:`tiny` ("official") with the copy read, its gate a constant g = σ(gate_bias)."""
    m = STAMP(1, 3, dim=2, max_norm=10.0, repeat=True).double()
    m.load_state_dict({**tiny("official").state_dict(), "copy.gate.weight": torch.zeros(1, 2, dtype=torch.float64),
                       "copy.gate.bias": torch.tensor([gate_bias], dtype=torch.float64)})
    return m


def test_copy_read_hand_computed_session():
    import math
    # session (item 0, item 1): α = (0.731059, 0.5) and z = (0.641937, 0.580026, 1.221963) as in
    # test_hand_computed_session; the copy weighs the clicks by softmax(α); g = σ(ln 3) = 3/4
    alpha, z = (0.731059, 0.5), (0.641937, 0.580026, 1.221963)
    copy = [math.exp(a) / sum(math.exp(b) for b in alpha) for a in alpha] + [0.0]
    softmax = [math.exp(v) / sum(math.exp(w) for w in z) for v in z]
    expected = [0.25 * s + 0.75 * c for s, c in zip(softmax, copy)]      # ≈ (0.4852, 0.3949, 0.1198)
    m = tiny_copy(math.log(3.0))
    log_p = m.score_all(session(0, 1))[0]
    np.testing.assert_allclose(log_p.exp().detach().numpy(), expected, atol=1e-6)
    # items 0 and 1 owe most of their probability to the copy: repeats of their slots; item 2 is
    # an exploration (the copy gave it nothing); the click attention follows the mode entry
    rows = m.explain(session(0, 1), torch.tensor([0, 1, 2]))
    assert [(r[0].kind, r[0].id) for r in rows] == [("repeat", 0), ("repeat", 1), ("explore", -1)]
    assert rows[0][0].weight == pytest.approx(0.75 * copy[0] / expected[0], abs=1e-6)
    assert rows[2][0].weight == pytest.approx(1.0)
    assert [(e.kind, e.id) for e in rows[2][1:]] == [("click", 0), ("click", 1)]
    # a closed gate recommends everything as an exploration, and the scores are STAMP's softmax
    shut = tiny_copy(-60.0)
    assert [r[0].kind for r in shut.explain(session(0, 1), torch.tensor([0, 1, 2]))] == ["explore"] * 3
    np.testing.assert_allclose(shut.score_all(session(0, 1))[0].exp().detach().numpy(), softmax, atol=1e-6)


def test_copy_read_is_off_by_default_and_changes_no_initial_weight():
    torch.manual_seed(5)
    plain = STAMP(1, 20, dim=6)
    torch.manual_seed(5)
    copying = STAMP(1, 20, dim=6, repeat=True)
    assert not plain.repeat and not plain.outputs_log_probabilities and copying.outputs_log_probabilities
    assert not any(k.startswith("copy.") for k in plain.state_dict())
    for key, value in plain.state_dict().items():
        assert torch.equal(value, copying.state_dict()[key]), key


@pytest.mark.parametrize("cls", [STAMP, STMP])
def test_copy_read_loss_is_the_mixture_nll_of_every_prefix(cls):
    torch.manual_seed(3)
    data = sessions([4, 3, 2], n_items=10)
    m = cls(data.n_users, 10, dim=4, repeat=True).double()
    task = NextItemTask(data, TrainConfig(batch_size=100, loss="softmax"))
    (batch,) = list(task.batches(torch.Generator().manual_seed(0)))
    losses = []
    for b in range(len(batch.history)):
        row = batch.history[b][batch.mask[b]]
        for k in range(1, len(row)):
            log_p = m.score_all(Query(torch.tensor([-1]), row[None, :k], torch.ones(1, k, dtype=torch.bool)))
            torch.testing.assert_close(log_p.exp().sum(), torch.tensor(1.0, dtype=torch.float64))
            losses.append(-log_p[0, row[k]])
    torch.testing.assert_close(task.loss(m, batch), torch.stack(losses).mean())


def returning_sessions(n_sessions: int, n_items: int, n_anchors: int, seed: int = 0) -> Interactions:
    """Sessions a r₁ a r₂ a r₃ a: an anchor item a (one of the first ``n_anchors``, drawn afresh
    each session) the session returns to after every other click r (drawn from the rest). Every
    return to a is predictable from the session's own clicks, and from no catalogue embedding."""
    rng = np.random.default_rng(seed)
    anchor = rng.integers(0, n_anchors, n_sessions)
    other = rng.integers(n_anchors, n_items, (n_sessions, 3))
    item = np.stack([anchor, other[:, 0], anchor, other[:, 1], anchor, other[:, 2], anchor], 1).reshape(-1)
    sess = np.repeat(np.arange(n_sessions), 7)
    return Interactions(sess.astype(np.int32), item.astype(np.int32), IdMap.range(n_sessions),
                        IdMap.range(n_items), timestamp=np.arange(len(sess), dtype=np.float64), session=sess)


def test_copy_read_learns_the_repeats_the_catalogue_cannot():
    split = session_split(returning_sessions(400, 300, 100, seed=2), test_frac=0.1)
    hits = {}
    for repeat in (False, True):
        torch.manual_seed(0)
        model = build("stamp", split.train.n_users, split.train.n_items, {"dim": 16, "repeat": repeat})
        cfg = TrainConfig(epochs=8, batch_size=256, lr=0.01, loss="softmax", patience=0)
        Trainer(cfg, progress=False, echo=lambda *_: None).fit(model, split)
        hits[repeat] = Evaluator(split, "test", ks=(1,)).evaluate(model)["session"]["HR@1"]
    # half the cases return to the anchor: the copy read finds it among the clicks (at most 0.5),
    # the catalogue alone guesses one of 100 anchors
    assert hits[True] > 0.4 and hits[False] < 0.1, hits


def test_copy_read_trains_from_the_cli_and_says_repeat_or_explore(tmp_path):
    from click.testing import CliRunner

    from memrec.cli import main

    def run(*args):
        return CliRunner().invoke(main, [str(a) for a in args])

    rng = np.random.default_rng(0)
    lines = ["session_id;user_id;item_id;timeframe;eventdate"]
    for s in range(1, 121):               # each session returns to its first item: a b a c a
        a, b, c = 100 + rng.integers(0, 10), 200 + rng.integers(0, 10), 200 + rng.integers(0, 10)
        lines += [f"{s};NA;{i};{k * 10};2016-05-{1 + s * 27 // 120:02d}" for k, i in enumerate([a, b, a, c, a])]
    (tmp_path / "views.csv").write_text("\n".join(lines) + "\n")
    folder, out = tmp_path / "digi", tmp_path / "stamp"
    assert run("data", "sessions", tmp_path / "views.csv", folder, "--format", "diginetica").exit_code == 0
    result = run("train", "stamp", "--data", folder, "--out", out, "--epochs", 2, "--set", "model.dim=8",
                 "--set", "model.repeat=true", "--set", "train.batch_size=64", "--no-progress")
    assert result.exit_code == 0, result.output
    result = run("recommend", out, "--session", "1,2", "-k", 4, "--explain")
    assert result.exit_code == 0, result.output
    ranked = result.output.splitlines()[2:]
    assert len(ranked) == 4
    modes = [line.split("\t")[2] for line in ranked]
    # the session's own items can only be repeats of their slots, the others explorations
    for line, mode in zip(ranked, modes):
        item = line.split("\t")[0].split()[1]
        assert mode.startswith(f"repeat slot {['1', '2'].index(item)} (") if item in ("1", "2") \
            else mode.startswith("explore catalogue ("), line
