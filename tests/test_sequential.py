"""RUM-I, RUM-F, FPMC, GRU4Rec: oracles, streaming == batch, prefix pass, training, CLI."""

import math

import numpy as np
import pytest
import torch

from memrec.data.interactions import IdMap, Interactions
from memrec.data.splits import leave_one_out
from memrec.evaluation import Evaluator
from memrec.losses import bpr_max
from memrec.memory.state import MemoryState
from memrec.memory.write import (erase_add_final, erase_add_unroll, erase_add_write, fifo_append,
                                 fifo_positions, fifo_states, unroll)
from memrec.models import build
from memrec.errors import ConfigError
from memrec.models.base import Query
from memrec.models.rum import RUMFeature, RUMItem
from memrec.training.config import TrainConfig
from memrec.training.tasks import NextItemTask, make_task
from memrec.training.trainer import Trainer

SEQUENTIAL = [("rumi", {}), ("rumi", {"query": "last"}), ("rumf", {}), ("rumf", {"query": "last"}),
              ("rumf", {"memory_init": "zeros"}), ("fpmc", {}), ("gru4rec", {"layers": 2}),
              ("rumi", {"repeat": True}), ("rumi", {"query": "last", "repeat": True})]


def random_histories(B=5, L=8, n_items=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([L, 3, 1, 0, 5][:B])
    mask = torch.arange(L)[None] < lengths[:, None]
    history = torch.randint(0, n_items, (B, L), generator=g) * mask
    return torch.arange(B), history, mask, lengths


def replay(model, users, history, mask):
    state = model.init_state(users)
    for t in range(history.shape[1]):
        state = model.update(state, history[:, t]).where(mask[:, t], state)
    return state


# -- the FIFO write for every prefix -----------------------------------------------------------
@pytest.mark.parametrize("seed", range(3))
def test_fifo_states_equal_the_unrolled_fifo_for_any_padding(seed):
    g = torch.Generator().manual_seed(seed)
    values, mask = torch.randn(4, 9, 3, generator=g), torch.rand(4, 9, generator=g) > 0.4
    fast = fifo_states(values, mask, 3)
    slow = unroll(fifo_append, MemoryState.empty(4, 3, 3), (values,), mask, return_all=True)
    assert torch.equal(fast.mask, slow.mask)
    torch.testing.assert_close(fast.values, slow.values)


def test_fifo_positions_by_hand():
    positions, filled = fifo_positions(torch.tensor([[True, False, True, True]]), 2)
    # after event 0: [∅, 0]; step 1 is padding: unchanged; then [0, 2]; then [2, 3]
    assert filled[0].tolist() == [[False, True], [False, True], [True, True], [True, True]]
    assert (positions[0] * filled[0]).tolist() == [[0, 0], [0, 0], [0, 2], [2, 3]]


# -- streaming == batch, prefix pass == per-prefix forwards --------------------------------------
@pytest.mark.parametrize("name,params", SEQUENTIAL)
def test_encode_equals_replaying_events_one_by_one(name, params):
    torch.manual_seed(0)
    model = build(name, 5, 30, params).eval()
    users, history, mask, _ = random_histories()
    with torch.no_grad():
        batch = model.score_all(Query(users, history, mask))
        streamed = model.score_state(replay(model, users, history, mask), users)
    torch.testing.assert_close(batch, streamed, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name,params", SEQUENTIAL)
def test_prefix_pass_equals_one_forward_per_prefix(name, params):
    torch.manual_seed(1)
    model = build(name, 5, 30, params).eval()
    users, history, mask, lengths = random_histories(seed=1)
    candidates = torch.randint(0, 30, (*history.shape, 4))
    with torch.no_grad():
        together = model.prefix_scores(users, history, mask, candidates)
        for b in range(len(users)):
            for t in range(int(lengths[b])):
                q = Query(users[b:b + 1], history[b:b + 1, :t + 1], mask[b:b + 1, :t + 1])
                alone = model.score_items(q, candidates[b:b + 1, t])
                torch.testing.assert_close(together[b, t], alone[0], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name,params", SEQUENTIAL)
def test_padding_never_changes_a_score(name, params):
    torch.manual_seed(2)
    model = build(name, 5, 30, params).eval()
    users, history, mask, _ = random_histories(seed=2)
    pad = torch.zeros(len(users), 4, dtype=torch.long)
    with torch.no_grad():
        short = model.score_all(Query(users, history, mask))
        padded = model.score_all(Query(users, torch.cat([history, pad + 7], 1),
                                       torch.cat([mask, pad.bool()], 1)))
        items = torch.randint(0, 30, (len(users), 6))
        some = model.score_items(Query(users, history, mask), items)
    torch.testing.assert_close(short, padded)
    torch.testing.assert_close(short.gather(1, items), some, atol=1e-6, rtol=1e-5)


# -- hand-computed oracles -------------------------------------------------------------------------
def _set(table, rows):
    with torch.no_grad():
        table.weight.copy_(torch.tensor(rows, dtype=torch.float32))


def test_rum_item_by_hand():
    m = RUMItem(1, 3, dim=2, slots=2, alpha=0.5, beta=2.0).eval()
    _set(m.user_embedding, [[1.0, 0.0]])
    _set(m.item_embedding, [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    q = Query(torch.tensor([0]), torch.tensor([[0, 1, 1]]), torch.ones(1, 3, dtype=torch.bool))
    # memory = last 2 items = [q1, q1]; candidate q2 = (1, 1): w = [1, 1], z = [.5, .5], read = q1
    # score = p·q2 + α Σ z w = 1 + 0.5 · 1 = 1.5; candidate q0: w = [0, 0] → 1 + 0 = 1;
    # candidate q1: w = [1, 1] → 0 + 0.5 · 1 = 0.5
    torch.testing.assert_close(m.score_all(q), torch.tensor([[1.0, 0.5, 1.5]]))
    # with a mixed memory [q0, q1] and candidate q0: w = [1, 0], z = softmax(2·w) = [e²/(e²+1), 1/(e²+1)]
    q = Query(torch.tensor([0]), torch.tensor([[0, 1]]), torch.ones(1, 2, dtype=torch.bool))
    z0 = math.exp(2) / (math.exp(2) + 1)
    torch.testing.assert_close(m.score_items(q, torch.tensor([[0]])), torch.tensor([[1.0 + 0.5 * z0]]))
    # the explanation is that attention: item 0 first, with z0
    (entries,) = m.explain(q, torch.tensor([0]))
    assert entries[0].kind == "item" and entries[0].id == 0 and entries[0].weight == pytest.approx(z0)
    assert sum(e.weight for e in entries) == pytest.approx(1.0)


def test_rum_feature_write_and_read_by_hand():
    m = RUMFeature(1, 2, dim=2, slots=2, alpha=1.0, beta=1.0, memory_init="zeros").eval()
    _set(m.user_embedding, [[0.0, 0.0]])
    _set(m.item_embedding, [[1.0, 0.0], [0.0, 1.0]])
    with torch.no_grad():
        m.feature_keys.copy_(torch.tensor([[10.0, 0.0], [0.0, 10.0]]))   # item 0 ↦ slot 0, item 1 ↦ slot 1
        for layer in (m.erase, m.add):
            layer.weight.copy_(torch.eye(2))
            layer.bias.zero_()
    z = torch.softmax(torch.tensor([10.0, 0.0]), 0)                     # address of item 0
    a = torch.tanh(torch.tensor([1.0, 0.0]))                            # add vector of item 0
    memory = z[:, None] * a[None, :]                                    # zeros erased, then added
    state = m.update(m.init_state(torch.tensor([0])), torch.tensor([0]))
    torch.testing.assert_close(state.values[0], memory)
    # a second write of item 0 erases e = σ(q0) per slot in proportion to z, then adds again
    e = torch.sigmoid(torch.tensor([1.0, 0.0]))
    memory2 = memory * (1 - z[:, None] * e[None, :]) + z[:, None] * a[None, :]
    state = m.update(state, torch.tensor([0]))
    torch.testing.assert_close(state.values[0], memory2)
    # read for candidate 0: Σ_k z_k (m_k · q0), p_u = 0, α = 1
    expected = (z * (memory2 @ torch.tensor([1.0, 0.0]))).sum()
    torch.testing.assert_close(m.score_state(state, torch.tensor([0]), torch.tensor([[0]]))[0, 0], expected)


def test_fpmc_by_hand():
    m = build("fpmc", 1, 3, {"dim": 2}).eval()
    _set(m.user_item, [[1.0, 2.0]])
    _set(m.item_user, [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    _set(m.item_last, [[0.0, 1.0], [2.0, 0.0], [0.0, 0.0]])
    _set(m.last_item, [[3.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    q = Query(torch.tensor([0]), torch.tensor([[2, 0]]), torch.ones(1, 2, dtype=torch.bool))
    # MF: u·v_i = [1, 2, 3]; last item 0: v^{LI}_0 = (3, 0); ⟨v^{IL}_i, (3, 0)⟩ = [0, 6, 0]
    torch.testing.assert_close(m.score_all(q), torch.tensor([[1.0, 8.0, 3.0]]))
    empty = Query(torch.tensor([0]), torch.zeros(1, 0, dtype=torch.long), torch.zeros(1, 0, dtype=torch.bool))
    torch.testing.assert_close(m.score_all(empty), torch.tensor([[1.0, 2.0, 3.0]]))


def test_bpr_max_by_hand():
    pos, neg = torch.tensor([1.0]), torch.tensor([[0.0, 2.0]])
    s = torch.softmax(neg[0], 0)
    expected = -torch.log((s * torch.sigmoid(1.0 - neg[0])).sum()) + 0.5 * (s * neg[0] ** 2).sum()
    torch.testing.assert_close(bpr_max(pos, neg, regularization=0.5), expected)


# -- training --------------------------------------------------------------------------------------
def ring_users(n_users=150, length=12, n_items=40, seed=0) -> Interactions:
    """Each user walks the item ring from a random start: s, s+1, s+2, … (mod n_items)."""
    rng = np.random.default_rng(seed)
    user = np.repeat(np.arange(n_users), length)
    step = np.tile(np.arange(length), n_users)
    item = (np.repeat(rng.integers(0, n_items, n_users), length) + step) % n_items
    return Interactions(user.astype(np.int32), item.astype(np.int32), IdMap.range(n_users),
                        IdMap.range(n_items), timestamp=step.astype(np.float64))


def test_pairwise_next_item_task_negatives_and_loss():
    data = ring_users(20, 6, 40)
    task = NextItemTask(data, TrainConfig(batch_size=16, loss="bpr", n_negatives=3))
    seen = data.user_items()
    batches = list(task.batches(torch.Generator().manual_seed(0)))
    assert sum(b.size for b in batches) == task.n_examples == 20 * 5
    for b in batches:
        owners = b.users.repeat_interleave(b.mask[:, 1:].sum(1))
        assert b.negatives.shape == (b.size, 3)
        hits = np.asarray(seen[owners.numpy().copy()[:, None], b.negatives.numpy().copy()].todense())
        assert not hits.any(), "a negative is one of the user's training items"
    # the loss equals BPR over per-prefix scores computed one prefix at a time
    torch.manual_seed(0)
    model = build("rumi", data.n_users, data.n_items, {"dim": 4, "slots": 3}).double()
    b = batches[0]
    pos, neg, k = [], [], 0
    for r in range(len(b.users)):
        row = b.history[r][b.mask[r]]
        for t in range(1, len(row)):
            q = Query(b.users[r:r + 1], row[None, :t], torch.ones(1, t, dtype=torch.bool))
            s = model.score_items(q, torch.cat([row[t:t + 1], b.negatives[k]])[None])[0]
            pos.append(s[0]), neg.append(s[1:])
            k += 1
    expected = -torch.nn.functional.logsigmoid(torch.stack(pos)[:, None] - torch.stack(neg)).mean()
    torch.testing.assert_close(task.loss(model, b), expected)


def test_loss_must_fit_the_sequential_model():
    data = ring_users(5, 4)
    with pytest.raises(ConfigError, match="full softmax"):
        make_task(build("rumi", data.n_users, data.n_items), data, TrainConfig(loss="softmax"))
    make_task(build("gru4rec", data.n_users, data.n_items), data, TrainConfig(loss="bpr_max"))


@pytest.mark.parametrize("name,params,loss", [("rumi", {"slots": 5}, "bce"), ("rumf", {"slots": 8}, "bce"),
                                              ("fpmc", {}, "bpr"), ("gru4rec", {}, "softmax")])
def test_learns_planted_transitions(name, params, loss):
    split = leave_one_out(ring_users())
    torch.manual_seed(0)
    model = build(name, split.train.n_users, split.train.n_items, {"dim": 32, **params})
    cfg = TrainConfig(epochs=25, batch_size=128, lr=0.01, loss=loss, n_negatives=4, patience=0)
    Trainer(cfg, progress=False, echo=lambda *_: None).fit(model, split)
    hr = Evaluator(split, "test", ks=(1,), protocols=("full",)).evaluate(model)["full"]["HR@1"]
    assert hr > 0.6, f"{name} HR@1 {hr:.3f} on a deterministic item ring"


def test_erase_add_unroll_equals_the_stepwise_unroll_with_gradients():
    g = torch.Generator().manual_seed(5)
    B, T, M, D = 3, 6, 4, 5
    mask = torch.rand(B, T, generator=g) > 0.3
    leaves = [torch.randn(B, M, D, generator=g, dtype=torch.float64).requires_grad_(),
              torch.softmax(torch.randn(B, T, M, generator=g, dtype=torch.float64), -1).requires_grad_(),
              torch.rand(B, T, D, generator=g, dtype=torch.float64).requires_grad_(),
              torch.randn(B, T, D, generator=g, dtype=torch.float64).requires_grad_()]
    init, w, e, a = leaves
    state = MemoryState(init, torch.ones(B, M, dtype=torch.bool))
    fast = erase_add_unroll(state, w, e, a, mask).values
    slow = unroll(erase_add_write, state, (w, e, a), mask, return_all=True).values
    torch.testing.assert_close(fast, slow)
    probe = torch.randn(fast.shape, generator=g, dtype=torch.float64)
    grads_fast = torch.autograd.grad((fast * probe).sum(), leaves)
    grads_slow = torch.autograd.grad((slow * probe).sum(), leaves, retain_graph=True)
    for f, s in zip(grads_fast, grads_slow):
        torch.testing.assert_close(f, s)
    # the final-state path (rows without an event at a step are not touched)
    final = erase_add_final(state, w, e, a, mask).values
    torch.testing.assert_close(final, slow[:, -1])
    grads_final = torch.autograd.grad((final * probe[:, -1]).sum(), leaves)
    grads_slow = torch.autograd.grad((slow[:, -1] * probe[:, -1]).sum(), leaves)
    for f, s in zip(grads_final, grads_slow):
        torch.testing.assert_close(f, s)


@pytest.mark.parametrize("name", ["rumi", "rumf", "fpmc", "gru4rec"])
def test_global_temporal_split_trains_and_ranks(name):
    from memrec.data.splits import temporal
    data = ring_users(60, 10, 30)
    split = temporal(data, test_frac=0.1, valid_frac=0.1)
    torch.manual_seed(0)
    model = build(name, split.train.n_users, split.train.n_items, {"dim": 8})
    loss = "softmax" if name == "gru4rec" else "bpr"
    Trainer(TrainConfig(epochs=1, batch_size=64, loss=loss), progress=False,
            echo=lambda *_: None).fit(model, split)
    metrics = Evaluator(split, "test", protocols=("full",)).evaluate(model)["full"]
    assert 0.0 <= metrics["NDCG@10"] <= 1.0 and metrics["AUC"] > 0.0


# -- RUM-I's copy read (model.repeat) ---------------------------------------------------------------
INF = float("inf")


def hand_rumi(gate_bias: float) -> RUMItem:
    """test_rum_item_by_hand's RUM-I with the copy read, its gate a constant g = σ(gate_bias)."""
    m = RUMItem(1, 3, dim=2, slots=2, alpha=0.5, beta=2.0, repeat=True).eval()
    _set(m.user_embedding, [[1.0, 0.0]])
    _set(m.item_embedding, [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    with torch.no_grad():
        m.copy.gate.weight.zero_()
        m.copy.gate.bias.fill_(gate_bias)
    return m


def test_rumi_copy_read_one_slot_by_hand():
    # history [0]: memory [∅, q0]; the last item's read puts all its weight on slot 1 (item 0):
    # c = (1, 0, 0). ŷ (candidate query, one valid slot, z = 1): q0: 1 + 0.5·1 = 1.5,
    # q1: 0 + 0.5·0 = 0, q2: 1 + 0.5·1 = 1.5. g = 3/4: exp(ŷ') = 1/4 · exp(ŷ) + 3/4 · c
    m = hand_rumi(math.log(3.0))
    q = Query(torch.tensor([0]), torch.tensor([[0]]), torch.ones(1, 1, dtype=torch.bool))
    y = torch.tensor([1.5, 0.0, 1.5])
    expected = torch.log(0.25 * y.exp() + 0.75 * torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(m.score_all(q)[0], expected)
    torch.testing.assert_close(m.score_items(q, torch.tensor([[2, 0]]))[0], expected[[2, 0]])


def test_rumi_copy_read_sums_a_repeated_item_and_its_pure_cases_by_hand():
    # history [0, 1, 1]: memory [q1, q1] (test_rum_item_by_hand: ŷ = (1, 0.5, 1.5)); the last
    # item q1 reads both slots alike, and the copy sums them: c = (0, 1, 0)
    q = Query(torch.tensor([0]), torch.tensor([[0, 1, 1]]), torch.ones(1, 3, dtype=torch.bool))
    y = torch.tensor([1.0, 0.5, 1.5])
    copy = torch.tensor([0.0, 1.0, 0.0])
    m = hand_rumi(math.log(3.0))
    scores = m.score_all(q)[0]
    torch.testing.assert_close(scores, torch.log(0.25 * y.exp() + 0.75 * copy))
    # its softmax over the catalogue is a repeat/explore mixture, g' = g / (g + (1 − g) Σ exp ŷ)
    g = 0.75 / (0.75 + 0.25 * y.exp().sum())
    torch.testing.assert_close(torch.softmax(scores, 0), (1 - g) * torch.softmax(y, 0) + g * copy)
    # gate 0: RUM-I's own scores; gate 1: the copy alone
    torch.testing.assert_close(hand_rumi(-INF).score_all(q)[0], y)
    pure = hand_rumi(INF).score_all(q)[0]
    assert pure[1].item() == pytest.approx(0.0, abs=1e-6) and torch.isneginf(pure[[0, 2]]).all()
    # the explanation: item 1 owes 3/4 / exp(ŷ'_1) of its score to the copy, a repeat of slot 1
    # (the newest slot holding it); items 0 and 2 are explorations; the read attention follows
    rows = m.explain(q, torch.tensor([0, 1, 2]))
    assert [(r[0].kind, r[0].id) for r in rows] == [("explore", -1), ("repeat", 1), ("explore", -1)]
    assert rows[1][0].weight == pytest.approx(0.75 / (0.25 * math.exp(0.5) + 0.75), abs=1e-6)
    assert rows[0][0].weight == pytest.approx(1.0) and {e.kind for e in rows[0][1:]} == {"item"}
    assert [r[0].kind for r in hand_rumi(-INF).explain(q, torch.tensor([0, 1, 2]))] == ["explore"] * 3


def test_rumi_copy_read_state_keeps_the_slots_items_and_round_trips():
    m = hand_rumi(0.0)
    users = torch.tensor([0, 0])
    history, mask = torch.tensor([[2, 0, 1, 1], [2, 0, 0, 0]]), torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0]]).bool()
    state = m.encode(users, history, mask)
    assert state.items.tolist() == [[1, 1], [0, 2]] and state.mask.tolist() == [[True, True], [False, True]]
    assert state.entries().tolist() == [1, 1]
    back = m.state_from_bytes(state.index(torch.tensor([1])).to_bytes())
    assert back.items.tolist() == [[0, 2]]
    # an empty memory has nothing to copy: the scores are RUM-I's, whatever the gate
    empty = Query(torch.tensor([0]), torch.zeros(1, 0, dtype=torch.long), torch.zeros(1, 0, dtype=torch.bool))
    torch.testing.assert_close(hand_rumi(5.0).score_all(empty), hand_rumi(-INF).score_all(empty))


def test_rumi_copy_read_is_off_by_default_and_changes_no_initial_weight():
    torch.manual_seed(5)
    plain = RUMItem(4, 20, dim=6)
    torch.manual_seed(5)
    copying = RUMItem(4, 20, dim=6, repeat=True)
    assert not plain.repeat and plain.state_type is MemoryState and copying.state_type is not MemoryState
    assert not any(k.startswith("copy.") for k in plain.state_dict())
    for key, value in plain.state_dict().items():
        assert torch.equal(value, copying.state_dict()[key]), key


def test_rumi_copy_read_trains_from_the_cli_and_says_repeat_or_explore(tmp_path):
    from click.testing import CliRunner

    from memrec.cli import main

    def run(*args):
        return CliRunner().invoke(main, [str(a) for a in args])

    described = run("models", "rumi")
    assert any(line.split()[:1] == ["repeat"] for line in described.output.splitlines()), described.output
    rng = np.random.default_rng(0)          # users who keep returning to a favourite item
    lines = ["user,item,rating,timestamp"]
    for u in range(40):
        favourite = rng.integers(0, 10)
        items = [favourite if k % 2 else 10 + rng.integers(0, 200) for k in range(10)]
        lines += [f"u{u},i{i},1,{k}" for k, i in enumerate(items)]
    (tmp_path / "log.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "rumi"
    result = run("train", "rumi", "--data", tmp_path / "log.csv", "--out", out, "--epochs", 1,
                 "--set", "model.dim=8", "--set", "model.slots=4", "--set", "model.repeat=true", "--no-progress")
    assert result.exit_code == 0, result.output
    result = run("recommend", out, "--user", "u3", "-k", "40", "--explain", "--include-seen")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if "attended:" in line]
    assert len(lines) == 40
    firsts = [line.split("attended: ")[1].split(",")[0] for line in lines]
    assert all(f.startswith(("repeat slot ", "explore catalogue (")) for f in firsts), firsts
    assert sum(f.startswith("repeat slot ") for f in firsts) <= 4            # at most one per slot
