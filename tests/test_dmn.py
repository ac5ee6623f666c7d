"""Purchase DMN (reconstruction): the spec's §3(i) oracles — single-slot read, uniform read,
masked slots irrelevant, planted signal learned — the prefix pass, the leakage rule (in the
model, the training task and the evaluation cases), the typed generator, the temporal split."""

import numpy as np
import pytest
import torch

from memrec.data.interactions import IdMap, Interactions
from memrec.data.splits import Split
from memrec.data.typed_sessions import (CART, PURCHASE, VIEW, TypedSessionConfig,
                                        generate_typed_sessions)
from memrec.models import build
from memrec.errors import ConfigError
from memrec.models.base import Query

from .session_fixtures import ring_session_files
from memrec.models.dmn import PurchaseDMN, event_tokens
from memrec.purchases import evaluate_purchases, purchase_cases, split_sessions_by_time
from memrec.training.config import TrainConfig
from memrec.training.tasks import PurchaseTask, make_task
from memrec.training.trainer import Trainer


def _set(table, rows):
    with torch.no_grad():
        table.weight.copy_(torch.tensor(rows, dtype=torch.float32))


def hand_model(hops=1, **options):
    """d = 2, 3 items, 2 event types; output W = I-like rows so scores are the state's coords."""
    model = PurchaseDMN(1, 3, dim=2, hops=hops, event_types=2, **options).eval()
    _set(model.item_query, [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    _set(model.item_key, [[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    _set(model.item_value, [[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]])
    for table in (model.type_query, model.type_key, model.type_value):
        _set(table, [[0.0, 0.0], [0.0, 0.0]])
    _set(model.item_output, [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    return model


def query(tokens, lengths=None):
    tokens = torch.tensor(tokens)
    lengths = lengths or [tokens.shape[1]] * len(tokens)
    mask = torch.arange(tokens.shape[1])[None] < torch.tensor(lengths)[:, None]
    return Query(torch.full((len(tokens),), -1), tokens, mask)


# -- oracles ---------------------------------------------------------------------------------------
def test_a_single_slot_memory_reads_its_value():
    model = hand_model()
    # session = [item 1]: u¹ = q_1 = (0, 1); the only slot → o¹ = c_1 = (0, 3); state = (0, 4)
    torch.testing.assert_close(model.score_all(query([[1]])), torch.tensor([[0.0, 4.0, 4.0]]))


def test_identical_events_read_uniformly_and_two_hops_by_hand():
    model = hand_model(hops=2)
    state, weights = model.session_state(torch.tensor([[0, 0, 0]]), torch.ones(1, 3, dtype=torch.bool))
    torch.testing.assert_close(weights[0][0], torch.full((3,), 1 / 3))
    # hop 1: u = (1, 0), o = c_0 = (2, 0); hop 2: u = (3, 0), o = (2, 0) → state (5, 0)
    torch.testing.assert_close(state[0], torch.tensor([5.0, 0.0]))


def test_two_different_events_by_hand():
    model = hand_model()
    # session [0, 1], query = last event q_1 = (0, 1): logits ⟨q, a_0⟩ = 0, ⟨q, a_1⟩ = 1
    # p = (0.268941, 0.731059); o = (0.537883, 2.193177); state = o + (0, 1)
    p = torch.softmax(torch.tensor([0.0, 1.0]), 0)
    o = p[0] * torch.tensor([2.0, 0.0]) + p[1] * torch.tensor([0.0, 3.0])
    state = o + torch.tensor([0.0, 1.0])
    expected = torch.stack([state[0], state[1], state.sum()])
    torch.testing.assert_close(model.score_all(query([[0, 1]]))[0], expected)


def test_the_event_type_changes_the_memory():
    model = hand_model()
    _set(model.type_value, [[0.0, 0.0], [5.0, 0.0]])
    view, cart = event_tokens(torch.tensor([1]), torch.tensor([0]), 3), event_tokens(
        torch.tensor([1]), torch.tensor([1]), 3)
    assert cart.item() == 4
    assert not torch.allclose(model.score_all(query([[view.item()]])), model.score_all(query([[cart.item()]])))
    with pytest.raises(ValueError, match="out of range"):
        model.score_all(query([[6]]))


# -- the prefix pass, padding, leakage ------------------------------------------------------------
def random_model(seed=0, **options):
    torch.manual_seed(seed)
    return PurchaseDMN(1, 10, dim=6, event_types=3, init_std=0.5, **options).eval()


@pytest.mark.parametrize("options", [{}, {"hops": 3}, {"hop": "linear", "hops": 2}, {"max_history": 2}])
def test_prefix_pass_equals_one_forward_per_prefix_and_ignores_padding(options):
    model = random_model(**options)
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 30, (3, 5), generator=g)
    lengths = [5, 2, 4]
    q = query(tokens.tolist(), lengths)
    states = model.prefix_states(q.history, q.mask)
    padded = model.prefix_states(torch.cat([q.history, torch.full((3, 2), 29)], 1),
                                 torch.cat([q.mask, torch.zeros(3, 2, dtype=torch.bool)], 1))
    torch.testing.assert_close(padded[:, :5][q.mask], states[q.mask])
    for b, n in enumerate(lengths):
        for t in range(n):
            alone, _ = model.session_state(q.history[b:b + 1, :t + 1], q.mask[b:b + 1, :t + 1])
            torch.testing.assert_close(states[b, t], alone[0], atol=1e-6, rtol=1e-5)


def test_nothing_at_or_after_the_target_reaches_its_state():
    """Leakage rule in the model: the state that predicts event t + 1 is unchanged by any edit
    of events t + 1 … L − 1."""
    model = random_model()
    tokens = torch.tensor([[3, 14, 25, 7, 8]])
    mask = torch.ones(1, 5, dtype=torch.bool)
    before = model.prefix_states(tokens, mask)
    edited = tokens.clone()
    edited[0, 2:] = torch.tensor([29, 29, 0])
    after = model.prefix_states(edited, mask)
    torch.testing.assert_close(after[0, :2], before[0, :2])
    assert not torch.allclose(after[0, 2], before[0, 2])


def typed_log(sessions):
    """Interactions from [[(item, type), ...], ...]; one pseudo-user per session."""
    rows = [(s, i, k, t) for s, events in enumerate(sessions) for t, (i, k) in enumerate(events)]
    s, i, k, t = (np.array(c) for c in zip(*rows))
    return Interactions(s.astype(np.int32), i.astype(np.int32), IdMap.range(len(sessions)),
                        IdMap.range(6), timestamp=(s * 100 + t).astype(np.float64),
                        rating=k.astype(np.float32), session=s.astype(np.int64))


def test_the_purchase_task_targets_purchases_with_the_state_before_them():
    log = typed_log([[(0, VIEW), (1, CART), (2, PURCHASE), (2, VIEW)],
                     [(3, PURCHASE), (4, VIEW)],                        # a purchase with nothing before
                     [(5, VIEW), (5, VIEW)]])                           # no purchase
    task = PurchaseTask(log, TrainConfig(loss="softmax"), 6, 3, PURCHASE)
    assert task.n_examples == 1
    (batch,) = list(task.batches(torch.Generator().manual_seed(0)))
    assert batch.targets.tolist() == [2]
    # the target sits at position 2, so the state used is the one after event 1 (buys[:, 1])
    assert batch.buys.tolist() == [[False, True, False]]
    assert batch.history[0].tolist() == [0, 1 * 6 + 1, 2 * 6 + 2, 2]
    # the loss is the same whatever the purchase and the events after it are
    model = PurchaseDMN(1, 6, dim=4, event_types=3, target="purchase")
    loss = task.loss(model, batch)
    history = batch.history.clone()
    history[0, 2:] = torch.tensor([12 + 5, 5])
    changed = type(batch)(history, batch.mask, batch.buys, batch.targets, batch.users)
    torch.testing.assert_close(task.loss(model, changed), loss)


def test_purchase_cases_keep_only_events_before_the_first_purchase():
    log = typed_log([[(0, VIEW), (1, CART), (2, PURCHASE), (2, VIEW), (4, PURCHASE)],
                     [(3, PURCHASE), (4, VIEW)],
                     [(5, VIEW), (1, VIEW), (5, PURCHASE)]])
    cases = purchase_cases(log)
    assert cases.sessions.tolist() == [0, 2]
    memories = np.split(cases.memory_tokens, cases.memory_indptr[1:-1])
    assert [m.tolist() for m in memories] == [[0, 7], [5, 1]]
    bought = np.split(cases.bought_items, cases.bought_indptr[1:-1])
    assert [b.tolist() for b in bought] == [[2, 4], [5]]


def test_a_model_that_reads_the_future_would_be_caught():
    """The generator's post-purchase views of the bought item are a trap: a memory that let
    them in would rank the target first. The cases' memories never contain the bought item
    from after the purchase."""
    data, _ = generate_typed_sessions(TypedSessionConfig(n_sessions=400, seed=4))
    cases = purchase_cases(data)
    # rebuild every session and check memory == events strictly before the first purchase
    kinds = data.rating.astype(int)
    for c in range(0, len(cases), 37):
        rows = np.flatnonzero(data.session == cases.sessions[c])
        first = rows[np.argmax(kinds[rows] == PURCHASE)]
        expected = event_tokens(data.item[rows], kinds[rows], data.n_items)[rows < first]
        got = cases.memory_tokens[cases.memory_indptr[c]:cases.memory_indptr[c + 1]]
        assert got.tolist() == expected.tolist()


# -- data: generator, split --------------------------------------------------------------------------
def test_typed_generator_plants_the_cart_signal():
    data, truth = generate_typed_sessions(TypedSessionConfig(n_sessions=500, seed=2))
    assert set(np.unique(data.rating).astype(int)) == {VIEW, CART, PURCHASE}
    assert data.n_items == 200 and (data.user == data.session).all()
    kinds = data.rating.astype(int)
    decided = np.flatnonzero(truth.deciding_trigger >= 0)
    assert len(decided) > 50
    for s in decided[:40]:
        rows = np.flatnonzero(data.session == s)
        carted = rows[(kinds[rows] == CART) & (truth.partner[data.item[rows]] >= 0)]
        bought = data.item[rows][kinds[rows] == PURCHASE]
        assert data.item[carted[-1]] == truth.deciding_trigger[s]
        assert bought.tolist() == [truth.partner[truth.deciding_trigger[s]]]
    again, _ = generate_typed_sessions(TypedSessionConfig(n_sessions=500, seed=2))
    assert np.array_equal(again.item, data.item)


def test_temporal_split_keeps_sessions_whole_and_the_latest_for_test():
    data, _ = generate_typed_sessions(TypedSessionConfig(n_sessions=50, seed=0))
    train, test = split_sessions_by_time(data, 0.2)
    assert len(train) + len(test) == len(data)
    assert not set(train.session.tolist()) & set(test.session.tolist())
    assert len(set(test.session.tolist())) == 10
    assert train.timestamp.max() < test.timestamp.min()


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="hop"):
        PurchaseDMN(1, 3, hop="gru")
    with pytest.raises(ValueError, match="purchase_type"):
        PurchaseDMN(1, 3, event_types=1, target="purchase")
    untyped = typed_log([[(0, VIEW), (1, PURCHASE)]])
    untyped = Interactions(untyped.user, untyped.item, untyped.users, untyped.items)
    model = build("dmn", 1, 6, {"event_types": 3, "target": "purchase"})
    with pytest.raises(ConfigError, match="typed events"):
        make_task(model, untyped, TrainConfig(loss="softmax"))


# -- learning ---------------------------------------------------------------------------------------
def test_the_planted_cart_signal_is_learned_and_a_view_is_not_mistaken_for_it():
    torch.manual_seed(0)
    data, truth = generate_typed_sessions(TypedSessionConfig(n_sessions=1500, seed=1))
    train, test = split_sessions_by_time(data, 0.2)
    model = build("dmn", 1, data.n_items, {"dim": 24, "event_types": 3, "target": "purchase"})
    split = Split(kind="given", train=train, valid=None, test=test.take(np.arange(0)))
    Trainer(TrainConfig(epochs=12, lr=0.01, batch_size=128, loss="softmax", patience=0),
            progress=False, echo=lambda line: None).fit(model, split)
    cases = purchase_cases(test)
    decided = truth.deciding_trigger[cases.sessions]
    rows = np.flatnonzero(decided >= 0)
    q = Query.from_csr(np.full(len(rows), -1), rows, cases.memory_indptr, cases.memory_tokens)
    top = model.score_all(q).argmax(1).numpy()
    assert (top == truth.partner[decided[rows]]).mean() > 0.7
    # sessions that only *viewed* a trigger (no cart of any trigger): its partner is not top-1
    viewed = []
    for c in np.flatnonzero(decided < 0):
        memory = cases.memory_tokens[cases.memory_indptr[c]:cases.memory_indptr[c + 1]]
        items, kinds = memory % data.n_items, memory // data.n_items
        if (truth.partner[items] >= 0).any() and not ((kinds == CART) & (truth.partner[items] >= 0)).any():
            viewed.append((c, truth.partner[items[truth.partner[items] >= 0][-1]]))
    assert len(viewed) > 20
    q = Query.from_csr(np.full(len(viewed), -1), [c for c, _ in viewed], cases.memory_indptr,
                       cases.memory_tokens)
    top = model.score_all(q).argmax(1).numpy()
    assert (top == np.array([p for _, p in viewed])).mean() < 0.3
    metrics = evaluate_purchases(model, cases)
    assert metrics["Recall@10"] >= metrics["Recall@5"] and metrics["Precision@1"] > 0.2


# -- the command line -----------------------------------------------------------------------------
def test_dmn_trains_from_the_cli_on_session_files_and_explains_a_live_session(tmp_path):
    from click.testing import CliRunner

    from memrec.cli import main

    def run(*args):
        return CliRunner().invoke(main, [str(a) for a in args])

    folder = ring_session_files(tmp_path)
    config = __import__("pathlib").Path(__file__).resolve().parents[1] / "configs" / "dmn_yoochoose1_64.toml"
    out = tmp_path / "dmn"
    result = run("train", "dmn", "--data", folder, "--config", config, "--out", out, "--epochs", 3,
                 "--set", "model.dim=8", "--set", "train.lr=0.01", "--set", "train.batch_size=32",
                 "--no-progress")
    assert result.exit_code == 0, result.output
    results = __import__("json").loads((out / "results.json").read_text())
    # each click's successor is the next item id (mod 20): learnable, far above chance (5/20)
    assert results["metrics"]["session"]["HR@5"] > 0.6, results["metrics"]["session"]
    result = run("recommend", out, "--session", "1,2,3", "-k", 3, "--explain")
    assert result.exit_code == 0, result.output
    line = result.output.splitlines()[1]
    assert line.startswith("  attention per click, strongest first: ")
    assert {c.split(" ")[0] for c in line.split(": ")[1].split(", ")} == {"1", "2", "3"}


def test_without_type_embeddings_a_view_and_a_cart_are_the_same_memory():
    model = random_model(type_embeddings=False)
    view, cart = 4, 1 * 10 + 4
    torch.testing.assert_close(model.score_all(query([[1, view]])), model.score_all(query([[1, cart]])))
    model.type_embeddings = True
    assert not torch.allclose(model.score_all(query([[1, view]])), model.score_all(query([[1, cart]])))


def test_the_order_of_the_earlier_events_does_not_matter():
    """No position embeddings: the memory is a set; only which event is last (the query) counts."""
    model = random_model(hops=2)
    mask = torch.ones(1, 4, dtype=torch.bool)
    one = model.session_state(torch.tensor([[3, 14, 25, 7]]), mask)[0]
    other = model.session_state(torch.tensor([[25, 3, 14, 7]]), mask)[0]
    torch.testing.assert_close(one, other)
    moved = model.session_state(torch.tensor([[3, 14, 7, 25]]), mask)[0]
    assert not torch.allclose(one, moved)
