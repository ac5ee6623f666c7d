"""DEMN's copy read (``model.repeat``, issue 22): the history store's items as a distribution.

Oracles: the scores against the equations written out (w over the store by h = p_u + mean_s M_u,s
and the recency penalty, summed over repeated items, mixed with the plain model's scores by
g = σ(b)); gate → 0 gives the plain scores, gate → 1 ranks the remembered items first in order
of their copy mass; the default (repeat = False) draws the same weights as before; training
reaches the gate. The stateful contract (encode == replay, bytes, prefix scores == the prefix
alone, one sparse write) runs on ``demn+repeat`` in tests/test_stateful.py.
"""

from __future__ import annotations

import math

import pytest
import torch

from memrec.models import build

from .test_demn import BASE, SMALL, demn, interactions, user_zero_prefix_scores


def pair(gate_bias: float):
    """(DEMN with the copy read and a constant gate g = σ(gate_bias), the same model without it)."""
    data = interactions(BASE)
    copy, plain = demn(data, repeat=True).eval(), demn(data).eval()
    with torch.no_grad():
        copy.copy.gate.weight.zero_()
        copy.copy.gate.bias.fill_(gate_bias)
    return copy, plain


HISTORY = torch.tensor([[3, 5, 3]])          # item 3 twice: its copy mass is the sum of both entries
MASK = torch.ones(1, 3, dtype=torch.bool)


def test_the_copy_read_by_its_equations():
    copy, plain = pair(math.log(3.0))                                        # g = 3/4
    users = torch.tensor([1])
    with torch.no_grad():
        state = copy.encode(users, HISTORY, MASK)
        y = plain.score_state(plain.encode(users, HISTORY, MASK), users)[0]
        got = copy.score_state(state, users)[0]
        h = copy.user_embedding.weight[1] + state.values[0].mean(0)          # p_u + mean slot
        q = copy.item_embedding.weight[HISTORY[0]]
        age = torch.tensor([2.0, 1.0, 0.0])                                  # oldest first
        w = torch.softmax(q @ h / math.sqrt(SMALL["dim"]) - copy.history_recency * torch.log1p(age), 0)
        c = torch.zeros(copy.n_items)
        c[3], c[5] = w[0] + w[2], w[1]
        expected = torch.log(0.25 * y.exp() + 0.75 * c)
        assert torch.allclose(got, expected, atol=1e-5)
        # candidates score as the full ranking does at them
        items = torch.tensor([[5, 0, 3]])
        assert torch.allclose(copy.score_state(state, users, items)[0], expected[items[0]], atol=1e-5)


def test_gate_zero_is_the_plain_model_and_gate_one_ranks_the_store_first():
    users = torch.tensor([0])
    with torch.no_grad():
        closed, plain = pair(-60.0)
        y = plain.score_state(plain.encode(users, HISTORY, MASK), users)
        assert torch.allclose(closed.score_state(closed.encode(users, HISTORY, MASK), users), y, atol=1e-5)
        open_, _ = pair(60.0)
        scores = open_.score_state(open_.encode(users, HISTORY, MASK), users)[0]
        assert set(scores.topk(2).indices.tolist()) == {3, 5}
        assert scores[3] > scores[5]                                         # two entries beat one


def test_an_empty_store_has_nothing_to_copy():
    copy, plain = pair(60.0)                                                  # even a gate of 1
    users = torch.tensor([2])
    with torch.no_grad():
        empty = copy.init_state(users)
        assert torch.allclose(copy.score_state(empty, users), plain.score_state(plain.init_state(users), users),
                              atol=1e-5)


def test_the_default_draws_the_weights_of_a_demn_without_the_copy_read():
    torch.manual_seed(0)
    a = build("demn", 4, 6, SMALL).state_dict()
    torch.manual_seed(0)
    b = build("demn", 4, 6, {**SMALL, "repeat": True}).state_dict()
    assert set(b) - set(a) == {"copy.gate.weight", "copy.gate.bias"}
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_training_reaches_the_gate_and_the_prefix_reads_only_its_past():
    data = interactions(BASE)
    model = demn(data, repeat=True).train()
    user_zero_prefix_scores(model, data).square().mean().backward()
    assert model.copy.gate.weight.grad.abs().sum() > 0 and model.copy.gate.bias.grad.abs() > 0
    # user 0's sequence is 0, 1, 2, 3, 4, all distinct: the copy mass of the prefix t's next
    # item is 0 (it is not yet in the store), so a gate of 1 cannot lift it
    with torch.no_grad():
        model.eval().copy.gate.bias.fill_(60.0)
        model.copy.gate.weight.zero_()
        scores = user_zero_prefix_scores(model, data)[0]                     # [T, n_items]
        for t in range(4):
            store = set(range(t + 1))
            assert set(scores[t].topk(t + 1).indices.tolist()) == store
            assert scores[t, t + 1] < scores[t, list(store)].min()


def test_explanations_name_the_retrieved_entries_and_the_copy_mode():
    copy, _ = pair(60.0)                                                      # the copy decides
    users = torch.tensor([1])
    with torch.no_grad():
        state = copy.encode(users, HISTORY, MASK)
        explained = copy.explain_state(state, users, torch.tensor([3, 0]))
        # item 3: a repeat of the store's latest entry holding it (slot 2), then the entries its
        # top-r read (r = 2) retrieved: by ⟨q_3, q_m⟩ the two copies of item 3 tie above item 5,
        # read with softmax(⟨q_3, q_m⟩ − λ_h log(1 + age)) over ages 2 and 0
        mode, *entries = explained[0]
        assert (mode.kind, mode.id) == ("repeat", 2) and mode.weight > 0.99
        q = copy.item_embedding.weight
        s = float(q[3] @ q[3])
        assert s > float(q[3] @ q[5])                                        # the premise
        w = torch.softmax(torch.tensor([s, s]) - copy.history_recency * torch.log1p(torch.tensor([2.0, 0.0])), 0)
        assert [e.id for e in entries] == [3, 3]
        assert sorted(e.weight for e in entries) == pytest.approx(sorted(w.tolist()), abs=1e-6)
        # item 0 is not in the store: an exploration
        assert explained[1][0].kind == "explore" and explained[1][0].id == -1
        # distinct items (5, then 3), both within r: each entry's weight by the same softmax
        two = copy.encode(users, torch.tensor([[5, 3]]), torch.ones(1, 2, dtype=torch.bool))
        _, *entries = copy.explain_state(two, users, torch.tensor([0]))[0]
        logits = torch.stack([q[0] @ q[5], q[0] @ q[3]]) - copy.history_recency * torch.log1p(torch.tensor([1.0, 0.0]))
        w = torch.softmax(logits, 0)
        assert {e.id: e.weight for e in entries} == pytest.approx({5: float(w[0]), 3: float(w[1])}, abs=1e-6)
