"""DEMN's options: the L3 ablations (spec B.6, third row), ``model.write`` = time_gated (B.3) |
erase_add | gated | fifo and ``model.learn_timescales``; L2's ``static_neighbours``; and
``model.read = "user"`` (the reads queried by the last item: full ranking as one product).

Every variant trains a step with finite gradients and keeps the stateful contract (the
registry-wide tests of tests/test_stateful.py, run here on each variant); the new wiring has
oracles: the FIFO's slots by hand, erase-add against its equations written out, the gated write
as the time-gated one with the time term removed by hand, and fixed τ receiving no gradient.
"""

from __future__ import annotations

import pytest
import torch

from memrec.errors import ConfigError
from memrec.models import build
from memrec.models.demn import WRITES

from . import test_stateful as contract
from .test_demn import BASE, SMALL, demn, interactions, user_zero_prefix_scores

#: (write, learn_timescales) of every variant
VARIANTS = [pytest.param({"write": w}, id=w) for w in WRITES] + \
    [pytest.param({"learn_timescales": False}, id="fixed-tau"),
     pytest.param({"static_neighbours": True}, id="static-neighbours"),
     pytest.param({"read": "user"}, id="user-read"),
     pytest.param({"read": "user", "repeat": True}, id="user-read+repeat")]
CONTRACT = {"dim": 8, "slots": 3, "visitors": 4, "history": 5, "top_r": 3}


@pytest.mark.parametrize("params", VARIANTS)
def test_each_variant_trains_a_step_with_finite_gradients(params):
    data = interactions(BASE)
    model = demn(data, **params).train()
    user_zero_prefix_scores(model, data).square().mean().backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is None or torch.isfinite(g).all() for g in grads.values())
    assert grads["user_embedding.weight"].abs().sum() > 0 and grads["item_embedding.weight"].abs().sum() > 0


def test_an_unknown_write_is_a_config_error_naming_the_key():
    with pytest.raises(ConfigError, match="model.write"):
        build("demn", 4, 6, {**SMALL, "write": "lstm"})
    with pytest.raises(ConfigError, match="learn_timescales"):
        build("demn", 4, 6, {**SMALL, "learn_timescales": "yes"})


@pytest.mark.parametrize("params", VARIANTS)
@pytest.mark.parametrize("seed", [0, 1])
def test_contract_encode_equals_replay(params, seed):
    contract.test_encode_equals_event_by_event_replay("demn", {**CONTRACT, **params}, seed)


@pytest.mark.parametrize("params", VARIANTS)
def test_contract_scores_state_bytes_and_prefixes(params):
    params = {**CONTRACT, **params}
    contract.test_scores_from_the_state_equal_score_all("demn", params)
    contract.test_state_round_trips_through_bytes("demn", params)
    contract.test_a_new_event_changes_the_scores("demn", params)
    contract.test_prefix_scores_score_like_the_prefix_alone("demn", params)


def _inputs(model, users, history):
    """x = ẽ_i (the user left out) and n̄ of each event, as the model writes them (eval)."""
    mask = torch.ones_like(history, dtype=torch.bool)
    cutoff = torch.full_like(history, model.n_events)
    x, _, _, (_, _, context) = model._history_inputs(users, users, history, mask, cutoff)
    return x, context


@torch.no_grad()
def test_fifo_slots_by_hand():
    # S = 3 slots start at r_s = k_s + p_u; pushing x1, x2 gives [r3, x1, x2] (oldest first)
    data = interactions(BASE)
    model = demn(data, write="fifo", slots=3).eval()
    users, history = torch.tensor([0]), torch.tensor([[2, 4]])
    x, _ = _inputs(model, users, history)
    rest = model.slot_keys + model.user_embedding.weight[0]
    state = model.encode(users, history, torch.ones(1, 2, dtype=torch.bool))
    assert torch.allclose(state.values[0], torch.stack([rest[2], x[0, 0], x[0, 1]]), atol=1e-6)


@torch.no_grad()
def test_erase_add_one_write_by_its_equations():
    data = interactions(BASE)
    model = demn(data, write="erase_add").eval()
    users, history = torch.tensor([1]), torch.tensor([[3]])
    x, context = _inputs(model, users, history)
    x, n = x[0, 0], context[0, 0]
    m = model.slot_keys + model.user_embedding.weight[1]                     # M⁰ = K + p_u
    cos = torch.stack([k @ x / (k.norm() * x.norm()) for k in model.slot_keys])
    w = torch.softmax(model.beta * cos, 0)[:, None]
    e = torch.sigmoid(model.erase_vector.weight @ torch.cat([x, n]) + model.erase_vector.bias)
    a = torch.tanh(model.add_vector.weight @ torch.cat([x, n]) + model.add_vector.bias)
    state = model.encode(users, history, torch.ones(1, 1, dtype=torch.bool))
    assert torch.allclose(state.values[0], m * (1 - w * e) + w * a, atol=1e-6)


@torch.no_grad()
def test_gated_is_the_time_gated_write_without_its_time_term():
    # the time-gated write with τ → ∞ (γ = 1: no decay) and φ(Δ) = 0 is the gated write
    data = interactions(BASE)
    gated, timed = demn(data, write="gated").eval(), demn(data).eval()
    timed.timescale_logit.fill_(1e9)
    timed.delta_embedding.weight.zero_()
    users, history = torch.tensor([0, 2]), torch.tensor([[0, 1, 2, 3], [5, 0, 0, 0]])
    mask = torch.tensor([[True] * 4, [True, True, False, False]])
    assert torch.allclose(gated.encode(users, history, mask).values, timed.encode(users, history, mask).values,
                          atol=1e-6)
    # and the gated write ignores both: changing them changes nothing
    before = gated.encode(users, history, mask).values
    gated.timescale_logit.fill_(-3.0)
    gated.delta_embedding.weight.normal_()
    assert torch.equal(gated.encode(users, history, mask).values, before)


def test_fixed_timescales_get_no_gradient_and_stay_put():
    data = interactions(BASE)
    for learn in (True, False):
        model = demn(data, learn_timescales=learn).train()
        user_zero_prefix_scores(model, data).sum().backward()
        assert (model.timescale_logit.grad is not None) == learn
    tau = torch.nn.functional.softplus(model.timescale_logit)
    assert torch.allclose(tau, 4.0 ** torch.arange(SMALL["slots"], dtype=torch.float32))
