"""DEMN (memrec.models.demn): its leakage rules, the buffers against brute force, and the CLI.

The stateful contract (encode == replay, prefix scores == scoring the prefix, bytes) runs in
tests/test_stateful.py, the registry-wide contract in tests/test_contract.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from memrec.cli import main
from memrec.data.interactions import IdMap, Interactions
from memrec.data.synthetic import SynthConfig, generate, write_csv
from memrec.errors import ConfigError
from memrec.models import build
from memrec.models.demn import event_ranks

SMALL = {"dim": 8, "slots": 2, "visitors": 3, "recent_items": 2, "history": 4, "top_r": 2}


def interactions(rows, n_users=4, n_items=6) -> Interactions:
    """rows: (user, item, timestamp) triples."""
    u, i, t = (np.array(c) for c in zip(*rows))
    return Interactions(u.astype(np.int32), i.astype(np.int32), IdMap.range(n_users), IdMap.range(n_items),
                        timestamp=t.astype(np.int64))


#: user 0 acts early; users 1 and 2 visit the same items before and after user 0
BASE = [(0, 0, 10), (0, 1, 11), (0, 2, 12), (0, 3, 13), (0, 4, 14),
        (1, 0, 1), (1, 1, 2), (1, 2, 3), (1, 3, 30), (1, 4, 31),
        (2, 5, 5), (2, 0, 6), (3, 5, 7), (3, 1, 8)]
#: later events (after all of user 0's) on user 0's items by users 2 and 3
FUTURE = [(2, 1, 40), (2, 2, 41), (2, 3, 42), (2, 4, 43), (3, 2, 44), (3, 3, 45), (3, 4, 46)]


def demn(data: Interactions, **params):
    torch.manual_seed(0)
    model = build("demn", data.n_users, data.n_items, {**SMALL, **params})
    model.prepare(data)
    return model


def user_zero_prefix_scores(model, data):
    indptr, items = data.sequences()
    history = torch.as_tensor(items[indptr[0]:indptr[1]])[None]
    mask = torch.ones_like(history, dtype=torch.bool)
    candidates = torch.arange(data.n_items).expand(1, history.shape[1], -1).contiguous()
    return model.prefix_scores(torch.tensor([0]), history, mask, candidates)


def test_visitor_buffers_hold_the_last_visits_strictly_before_the_cutoff():
    data = interactions(BASE + FUTURE)
    model = demn(data)
    ranks = event_ranks(data)
    for item in range(data.n_items):
        for cutoff in range(len(data) + 1):
            users, valid = model._visitors(torch.tensor([item]), torch.tensor([cutoff]))
            before = sorted((r, u) for u, i, r in zip(data.user, data.item, ranks) if i == item and r < cutoff)
            expected = [u for _, u in before][-model.visitors:]
            assert users[0][valid[0]].tolist() == expected, (item, cutoff)


def test_leakage_training_buffers_hold_only_events_before_the_prefix():
    # user 0's training prefixes read the visitors and neighbours of its items: other users'
    # *later* events on those items must change nothing
    with torch.no_grad():
        base = demn(interactions(BASE)).train()
        future = demn(interactions(BASE + FUTURE)).train()
        a = user_zero_prefix_scores(base, interactions(BASE))
        b = user_zero_prefix_scores(future, interactions(BASE + FUTURE))
        assert torch.equal(a, b)
        # the control: with the buffers frozen after training (inference), the later visits count
        a = user_zero_prefix_scores(base.eval(), interactions(BASE))
        b = user_zero_prefix_scores(future.eval(), interactions(BASE + FUTURE))
        assert not torch.allclose(a, b)


def test_static_neighbours_read_the_whole_training_log_as_cmn_does():
    # B.6's L2 control: CMN's static neighbourhood sees other users' later visits in training;
    # the item memory keeps its cutoff (only the neighbour read changes), and u stays out
    with torch.no_grad():
        base = demn(interactions(BASE), neighbours=True, static_neighbours=True, item_memory=False).train()
        future = demn(interactions(BASE + FUTURE), neighbours=True, static_neighbours=True,
                      item_memory=False).train()
        a = user_zero_prefix_scores(base, interactions(BASE))
        b = user_zero_prefix_scores(future, interactions(BASE + FUTURE))
        assert not torch.allclose(a, b)
        data = interactions(BASE + FUTURE)
        static = demn(data, static_neighbours=True)
        early = torch.tensor([1])                                             # before every visit
        ids, valid = static._neighbours(torch.tensor([0]), torch.tensor([[2, 3]]), torch.ones(1, 2, dtype=torch.bool),
                                        early)
        assert {2, 3} <= set(ids[valid].tolist()) and 0 not in ids[valid]
        assert not demn(data)._neighbours(torch.tensor([0]), torch.tensor([[2, 3]]),
                                          torch.ones(1, 2, dtype=torch.bool), early)[1].any()


def test_user_read_is_one_user_vector_queried_by_the_last_item():
    # read = "user", the item memory, neighbours and history read off: u = p_u + r, r the two-hop
    # slot read queried by the last item's q (B.2.2 with q_j → q_last), and ŷ = u·ẽ_j + b_j
    data = interactions(BASE)
    model = demn(data, read="user", item_memory=False, neighbours=False, history_read=False).eval()
    users, history = torch.tensor([0, 1]), torch.tensor([[0, 1, 2], [3, 4, 0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    with torch.no_grad():
        state = model.encode(users, history, mask)
        scores = model.score_state(state, users)
        last = model.item_embedding(torch.tensor([2, 4]))[:, None, :]                # [B, 1, d]
        M = state.values

        def hop(q):
            return torch.softmax(q @ M.transpose(1, 2) / SMALL["dim"] ** 0.5, -1) @ M

        r = hop(torch.relu(model.hop(last) + hop(last)))
        p = model.user_embedding(users)[:, None, :]
        g = torch.sigmoid(model.read_gates(torch.cat([p, r, torch.zeros_like(r), torch.zeros_like(r)], -1)))
        u = (p + r)[:, 0]
        assert g.shape[-1] == 2                                   # the gates scale reads that are off
        expected = u @ model.item_embedding.weight.T + model.item_bias.weight[:, 0]
        torch.testing.assert_close(scores, expected)
        torch.testing.assert_close(model.score_state(state, users, torch.tensor([[5, 1], [2, 2]])),
                                   expected.gather(1, torch.tensor([[5, 1], [2, 2]])))


def test_user_read_explains_every_item_by_the_last_items_retrieval():
    data = interactions(BASE)
    model = demn(data, read="user").eval()
    users, history = torch.tensor([0]), torch.tensor([[0, 1, 2, 3, 4]])
    with torch.no_grad():
        state = model.encode(users, history, torch.ones_like(history, dtype=torch.bool))
        first, second = model.explain_state(state, users, torch.tensor([5, 1]))
        candidate = demn(data).eval().explain_state(state, users, torch.tensor([5, 1]))
    assert first and first == second                              # one query: the same entries
    assert candidate[0] != candidate[1]                           # per-candidate reads differ


def test_an_unknown_read_is_a_config_error_naming_the_key():
    with pytest.raises(ConfigError, match="model.read must be one of candidate, user"):
        build("demn", 4, 6, {**SMALL, "read": "slot"})


def test_leakage_the_user_is_never_its_own_neighbour():
    data = interactions(BASE + FUTURE)
    model = demn(data).eval()
    history, mask = torch.tensor([[1, 2, 3]]), torch.ones(1, 3, dtype=torch.bool)
    users = torch.tensor([0])
    with torch.no_grad():
        ids, valid = model._neighbours(users, history[:, -2:], mask[:, -2:], torch.tensor([len(data)]))
        assert 0 in model._visitors(torch.tensor([2, 3]), torch.tensor([len(data)] * 2))[0]   # user 0 visited them
        assert 0 not in ids[valid] and {1, 2, 3} <= set(ids[valid].tolist())
        # the bank is read through the neighbours alone: user 0's own entry changes none of its
        # scores (state path and every training prefix), a neighbour's does
        state = model.encode(users, history, mask)
        before, prefix_before = model.score_state(state, users), user_zero_prefix_scores(model.train(), data)
        model.bank[0] += 5.0
        assert torch.equal(model.score_state(state, users), before)
        assert torch.equal(user_zero_prefix_scores(model, data), prefix_before)
        model.bank[1] += 5.0
        assert not torch.equal(model.score_state(state, users), before)


def test_the_user_is_left_out_of_the_visitors_its_writes_read():
    data = interactions(BASE)
    model = demn(data)
    item, everything = torch.tensor([0]), torch.tensor([len(data)])
    with torch.no_grad():
        kept = model._item_memory(item, everything, torch.tensor([0]))
        model.visitor_embedding.weight[0] += 1.0                       # user 0 visited item 0
        assert torch.equal(model._item_memory(item, everything, torch.tensor([0])), kept)
        assert not torch.equal(model._item_memory(item, everything, None), kept)


def test_training_refreshes_the_memory_bank_of_the_batch_users_only():
    data = interactions(BASE)
    model = demn(data).train()
    bank = model.bank.clone()
    user_zero_prefix_scores(model, data).sum().backward()
    assert not torch.equal(model.bank[0], bank[0]) and torch.equal(model.bank[1:], bank[1:])
    assert model.bank.grad is None and not model.bank.requires_grad


@pytest.mark.parametrize("part", ["item_memory", "neighbours", "history_read"])
def test_each_part_can_be_switched_off(part):
    data = interactions(BASE)
    with torch.no_grad():
        full, ablated = demn(data).eval(), demn(data, **{part: False}).eval()
        state = full.encode(torch.tensor([0]), torch.tensor([[0, 1, 2]]), torch.ones(1, 3, dtype=torch.bool))
        assert not torch.allclose(full.score_state(state, torch.tensor([0])),
                                  ablated.score_state(state, torch.tensor([0])))


def test_cli_trains_demn_on_a_tiny_dataset(tmp_path):
    path = tmp_path / "synth.csv"
    write_csv(generate(SynthConfig(n_users=40, n_items=200, mean_length=8, seed=2)), path)
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", "demn", "--data", str(path), "--out", str(out), "--epochs", "2",
                                       "--set", "model.dim=8", "--set", "model.visitors=5", "--no-progress"])
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert results["model"] == "demn" and results["params"]["dim"] == 8
    assert results["metrics"]
