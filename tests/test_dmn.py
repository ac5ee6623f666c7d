"""Purchase DMN (reconstruction): the spec's §3(i) oracles — single-slot read, uniform read,
masked slots irrelevant, planted signal learned — the prefix pass, the leakage rule (in the
model, the training task and the evaluation cases), the typed generator, the temporal split."""

import math

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


# -- the copy read (model.repeat) -------------------------------------------------------------------
INF = float("inf")


def hand_copy(gate_bias: float, hops: int = 1) -> PurchaseDMN:
    """:func:`hand_model` with the copy read, its gate a constant g = σ(gate_bias)."""
    model = PurchaseDMN(1, 3, dim=2, hops=hops, event_types=2, repeat=True).eval()
    model.load_state_dict({**hand_model(hops).state_dict(), "copy.gate.weight": torch.zeros(1, 2),
                           "copy.gate.bias": torch.tensor([gate_bias])})
    return model


def test_copy_read_one_slot_by_hand():
    # session [item 1]: logits (0, 4, 4) (test_a_single_slot_memory_reads_its_value); the one
    # slot holds item 1 with weight 1; g = σ(ln 3) = 3/4: p = 1/4 · softmax(0, 4, 4) + 3/4 · (0, 1, 0)
    softmax = torch.softmax(torch.tensor([0.0, 4.0, 4.0]), 0)
    expected = 0.25 * softmax + 0.75 * torch.tensor([0.0, 1.0, 0.0])
    model = hand_copy(math.log(3.0))
    torch.testing.assert_close(model.score_all(query([[1]]))[0].exp(), expected)
    # item 1 owes 3/4 / p(1) of its probability to the copy: a repeat of slot 0; 0 and 2 are
    # explorations (the copy gave them nothing); the event attention follows the mode entry
    rows = model.explain(query([[1]]), torch.tensor([0, 1, 2]))
    assert [(r[0].kind, r[0].id) for r in rows] == [("explore", -1), ("repeat", 0), ("explore", -1)]
    assert rows[1][0].weight == pytest.approx(0.75 / float(expected[1]), abs=1e-6)
    assert rows[0][0].weight == pytest.approx(1.0) and [(e.kind, e.id) for e in rows[0][1:]] == [("click", 1)]


def test_copy_read_sums_an_item_over_its_typed_events_by_hand():
    # session [view item 0, cart item 0, view item 1] = tokens [0, 3, 1]; type tables are zero, so
    # the query q_1 = (0, 1) addresses keys (1, 0), (1, 0), (0, 1): p = (1, 1, e) / (2 + e), and
    # the copy puts c_0 = 2 / (2 + e) on item 0 (both its events), c_1 = e / (2 + e) on item 1
    e = math.e
    p = torch.tensor([1.0, 1.0, e]) / (2 + e)
    o = p[0] * torch.tensor([2.0, 0.0]) + p[1] * torch.tensor([2.0, 0.0]) + p[2] * torch.tensor([0.0, 3.0])
    state = o + torch.tensor([0.0, 1.0])
    logits = torch.stack([state[0], state[1], state.sum()])
    copy = torch.tensor([2 / (2 + e), e / (2 + e), 0.0])
    model = hand_copy(math.log(3.0))
    torch.testing.assert_close(model.score_all(query([[0, 3, 1]]))[0].exp(),
                               0.25 * torch.softmax(logits, 0) + 0.75 * copy)
    # item 0's latest event is slot 1 (the cart)
    rows = model.explain(query([[0, 3, 1]]), torch.tensor([0, 1, 2]))
    assert [(r[0].kind, r[0].id) for r in rows] == [("repeat", 1), ("repeat", 2), ("explore", -1)]
    # gate 0 and gate 1 are the pure cases: the DMN's softmax, and the copy alone
    torch.testing.assert_close(hand_copy(-INF).score_all(query([[0, 3, 1]]))[0], torch.log_softmax(logits, 0))
    assert [r[0].kind for r in hand_copy(-INF).explain(query([[0, 3, 1]]), torch.tensor([0, 1, 2]))] == ["explore"] * 3
    pure = hand_copy(INF).score_all(query([[0, 3, 1]]))[0]
    torch.testing.assert_close(pure[:2].exp(), copy[:2])
    assert torch.isneginf(pure[2])


def test_copy_read_uses_the_last_hop_attention():
    # two hops over [0, 0, 0] (test_identical_events_read_uniformly_and_two_hops_by_hand): every hop
    # attends uniformly; over [0, 1] the second hop's query (u + o) differs from the first's
    model = hand_copy(math.log(3.0), hops=2)
    tokens, mask = torch.tensor([[0, 1]]), torch.ones(1, 2, dtype=torch.bool)
    state, weights = model.session_state(tokens, mask)
    assert not torch.allclose(weights[0], weights[1])
    copy = torch.cat([weights[1], torch.zeros(1, 1)], 1)            # slots 0, 1 hold items 0, 1
    expected = 0.25 * torch.softmax(model.output(state), 1) + 0.75 * copy
    torch.testing.assert_close(model.score_all(query([[0, 1]])).exp(), expected)


@pytest.mark.parametrize("options", [{}, {"hops": 3}, {"hop": "linear", "hops": 2}, {"max_history": 2}])
def test_copy_read_is_a_distribution_per_prefix_and_padding_is_inert(options):
    model = random_model(repeat=True, **options)
    g = torch.Generator().manual_seed(3)
    tokens = torch.randint(0, 30, (3, 5), generator=g)
    lengths = [5, 2, 4]
    q = query(tokens.tolist(), lengths)
    positions = q.mask
    outputs = model.prefix_outputs(q.history, q.mask, positions)
    torch.testing.assert_close(outputs.exp().sum(1), torch.ones(len(outputs)))
    # garbage tokens under the mask change nothing, neither in the prefix pass nor in a score
    junk = torch.where(q.mask, q.history, torch.full_like(q.history, 29))
    junk_positions = torch.cat([positions, torch.zeros(3, 2, dtype=torch.bool)], 1)
    padded = model.prefix_outputs(torch.cat([junk, torch.full((3, 2), 17)], 1),
                                  torch.cat([q.mask, torch.zeros(3, 2, dtype=torch.bool)], 1), junk_positions)
    torch.testing.assert_close(padded, outputs)
    torch.testing.assert_close(model.score_all(Query(q.users, junk, q.mask)), model.score_all(q))
    # every prefix scores what scoring it alone does
    k = 0
    for b, n in enumerate(lengths):
        for t in range(n):
            alone = model.score_all(query([tokens[b, :t + 1].tolist()]))[0]
            torch.testing.assert_close(outputs[k], alone, atol=1e-6, rtol=1e-5)
            k += 1


def test_copy_read_is_off_by_default_and_changes_no_initial_weight():
    torch.manual_seed(5)
    plain = PurchaseDMN(1, 20, dim=6, hops=2, hop="linear", event_types=3)
    torch.manual_seed(5)
    copying = PurchaseDMN(1, 20, dim=6, hops=2, hop="linear", event_types=3, repeat=True)
    assert not plain.repeat and not plain.outputs_log_probabilities and copying.outputs_log_probabilities
    assert not any(k.startswith("copy.") for k in plain.state_dict())
    for key, value in plain.state_dict().items():
        assert torch.equal(value, copying.state_dict()[key]), key


def test_purchase_task_loss_is_the_mixture_nll_of_each_purchase():
    log = typed_log([[(0, VIEW), (1, CART), (2, PURCHASE), (2, VIEW), (1, PURCHASE)],
                     [(3, VIEW), (3, CART), (3, PURCHASE)],
                     [(5, VIEW), (4, PURCHASE)]])
    task = PurchaseTask(log, TrainConfig(loss="softmax", batch_size=100), 6, 3, PURCHASE)
    (batch,) = list(task.batches(torch.Generator().manual_seed(0)))
    torch.manual_seed(0)
    model = PurchaseDMN(1, 6, dim=4, event_types=3, target="purchase", init_std=0.5, repeat=True).double()
    plain = PurchaseDMN(1, 6, dim=4, event_types=3, target="purchase", init_std=0.5).double()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("copy.")})
    losses, cross_entropies = [], []
    for b in range(len(batch.history)):
        row = batch.history[b][batch.mask[b]]
        for t in torch.nonzero(batch.buys[b][:len(row) - 1])[:, 0].tolist():   # event t + 1 is bought
            prefix = Query(torch.tensor([-1]), row[None, :t + 1], torch.ones(1, t + 1, dtype=torch.bool))
            target = row[t + 1] % 6
            losses.append(-model.score_all(prefix)[0, target])
            cross_entropies.append(-torch.log_softmax(plain.score_all(prefix)[0], 0)[target])
    assert len(losses) == 4
    torch.testing.assert_close(task.loss(model, batch), torch.stack(losses).mean())
    # without the copy read the task's loss is the softmax cross-entropy it always was
    torch.testing.assert_close(task.loss(plain, batch), torch.stack(cross_entropies).mean())
    # the sampled losses rank candidates without the catalogue, which the mixture needs
    with pytest.raises(ConfigError, match="train.loss = \"softmax\""):
        make_task(model, log, TrainConfig(loss="bpr"))
    make_task(plain, log, TrainConfig(loss="bpr"))


def test_copy_read_learns_returns_to_an_earlier_item():
    # sessions a r₁ a r₂ a r₃ a: every return to the anchor a (one of 100) is predictable from the
    # session's own events, from no catalogue row
    from memrec.data.splits import session_split
    from memrec.evaluation import Evaluator
    rng = np.random.default_rng(2)
    n_sessions, n_items = 400, 300
    anchor = rng.integers(0, 100, n_sessions)
    other = rng.integers(100, n_items, (n_sessions, 3))
    item = np.stack([anchor, other[:, 0], anchor, other[:, 1], anchor, other[:, 2], anchor], 1).reshape(-1)
    sess = np.repeat(np.arange(n_sessions), 7)
    data = Interactions(sess.astype(np.int32), item.astype(np.int32), IdMap.range(n_sessions),
                        IdMap.range(n_items), timestamp=np.arange(len(sess), dtype=np.float64), session=sess)
    split = session_split(data, test_frac=0.1)
    hits = {}
    for repeat in (False, True):
        torch.manual_seed(0)
        model = build("dmn", split.train.n_users, split.train.n_items, {"dim": 16, "repeat": repeat})
        cfg = TrainConfig(epochs=8, batch_size=256, lr=0.01, loss="softmax", patience=0)
        Trainer(cfg, progress=False, echo=lambda *_: None).fit(model, split)
        hits[repeat] = Evaluator(split, "test", ks=(1,)).evaluate(model)["session"]["HR@1"]
    # half the cases return to the anchor: the copy finds it among the events (at most 0.5); the
    # DMN alone gets part of the way (the read value of the anchor's events can point at its row)
    assert hits[True] > 0.45 and hits[True] > hits[False] + 0.1, hits


def test_copy_read_from_the_cli_says_repeat_or_explore(tmp_path):
    from click.testing import CliRunner

    from memrec.cli import main

    def run(*args):
        return CliRunner().invoke(main, [str(a) for a in args])

    described = run("models", "dmn")
    assert described.exit_code == 0 and any(line.split()[:1] == ["repeat"] and "False" in line
                                            for line in described.output.splitlines()), described.output
    folder, out = ring_session_files(tmp_path), tmp_path / "dmn"
    result = run("train", "dmn", "--data", folder, "--out", out, "--epochs", 1, "--set", "model.dim=8",
                 "--set", "model.repeat=true", "--set", "train.batch_size=64", "--no-progress")
    assert result.exit_code == 0, result.output
    result = run("recommend", out, "--session", "1,2,3", "-k", 20, "--explain")
    assert result.exit_code == 0, result.output
    ranked = result.output.splitlines()[2:]
    assert len(ranked) == 20
    for line in ranked:       # the session's own items may be repeats of their slot, the others not
        item, mode = line.split("\t")[0].split()[1], line.split("\t")[2]
        slot = {"1": 0, "2": 1, "3": 2}.get(item)
        assert mode.startswith("explore catalogue (") or (slot is not None and mode.startswith(f"repeat slot {slot} (")), line
