"""DEMN on sessions: the anonymous user (row n_users of p) and ``model.anonymous_rate``.

What is pinned here: a request with users == -1 reads the anonymous row wherever p_u is read (a
hand-computed score); training with anonymous_rate = 1 reads no real user's row as p_u (by
gradients), and an anonymised prefix still leaves its user's own visits out of every buffer;
the draw is seeded and per sequence; encode == replay for anonymous states; the default
(anonymous_rate = 0) trains exactly as the code before the anonymous user did; and
``memrec train demn`` evaluates the session protocol on SR-GNN session files.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from memrec.cli import main
from memrec.data.synthetic import SynthConfig, generate
from memrec.errors import ConfigError
from memrec.models import build
from memrec.models.base import Query
from memrec.recommender import Recommender
from memrec.training.config import load_config

from .session_fixtures import ring_session_files
from .test_demn import BASE, SMALL, demn, interactions, user_zero_prefix_scores


def tiny(**params):
    """d = 2, one slot, no item memory: from an empty state r = M = k + p (a softmax over one
    slot is 1 at both hops), n = h = 0 (no neighbours, no history), so ŷ_j = (2p + k)·q_j + b_j."""
    model = demn(interactions(BASE), dim=2, slots=1, item_memory=False, **params).double().eval()
    with torch.no_grad():
        model.slot_keys.copy_(torch.tensor([[0.5, 0.5]]))
        model.user_embedding.weight[0] = torch.tensor([3.0, 1.0])
        model.user_embedding.weight[model.n_users] = torch.tensor([1.0, -2.0])     # the anonymous user
        model.item_embedding.weight[:3] = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
        model.item_bias.weight.zero_()
    return model


@torch.no_grad()
def test_anonymous_requests_read_the_anonymous_row_hand_computed():
    model = tiny()
    users = torch.tensor([-1, 0])
    state = model.init_state(users)
    # M⁰ = k + p: the anonymous row for -1, user 0's own row for 0
    assert torch.equal(state.values[:, 0], torch.tensor([[1.5, -1.5], [3.5, 1.5]], dtype=torch.float64))
    scores = model.score_state(state, users, torch.tensor([[0, 1, 2]] * 2))
    # 2p + k = (2.5, −3.5) anonymous, (6.5, 2.5) user 0; dotted with q_0, q_1, q_2
    expected = torch.tensor([[2.5, -3.5, -1.0], [6.5, 2.5, 9.0]], dtype=torch.float64)
    assert torch.allclose(scores, expected, atol=1e-12)


#: BASE with user 0 back on item 1 last: its earlier visit is in V_1 before the repeat's cutoff
REPEAT = BASE + [(0, 1, 15)]


def _own_row_gradient(rate: float, **params) -> tuple[torch.Tensor, torch.Tensor]:
    """One training forward + backward of user 0's whole sequence (REPEAT) → the gradient of p's
    rows [n_users + 1, d] and the one of the anonymous row alone."""
    data = interactions(REPEAT)
    model = demn(data, anonymous_rate=rate, **params).train()
    with torch.no_grad():          # not its initial zero, which would hide p_u·p_v's gradient to p_v
        model.user_embedding.weight[-1] = torch.linspace(-1, 1, model.dim)
    user_zero_prefix_scores(model, data).sum().backward()
    grad = model.user_embedding.weight.grad
    return grad, grad[model.n_users]


def test_anonymous_rate_one_reads_no_real_user_row_as_p_u():
    # every part that reads another user's p_v off: p is read only as the querying user's p_u
    grad, anonymous = _own_row_gradient(1.0, item_memory=False, neighbours=False)
    assert torch.count_nonzero(grad[:-1]) == 0 and torch.count_nonzero(anonymous) > 0
    own, _ = _own_row_gradient(0.0, item_memory=False, neighbours=False)
    assert torch.count_nonzero(own[0]) > 0 and torch.count_nonzero(own[-1]) == 0     # the control


def test_an_anonymised_prefix_still_leaves_its_users_own_visits_out():
    # with every part on, user 0's row reaches its scores only through its own visits (as a
    # visitor of the item it repeats, of its candidates, a neighbour of itself): the leakage rule
    # keeps them out by identity, each part alone too
    for params in ({}, {"neighbours": False}, {"neighbours": False, "history_read": False}):
        grad, anonymous = _own_row_gradient(1.0, **params)
        assert torch.count_nonzero(grad[0]) == 0 and torch.count_nonzero(anonymous) > 0, params
    assert torch.count_nonzero(grad[1:-1]) > 0            # other users are read, as visitors


def test_the_anonymous_draw_is_per_sequence_seeded_and_absent_at_rate_zero():
    model = build("demn", 2000, 5, {**SMALL, "anonymous_rate": 0.3}).train()
    users = torch.arange(2000)
    torch.manual_seed(7)
    first = model._training_rows(users)
    torch.manual_seed(7)
    assert torch.equal(model._training_rows(users), first)
    hidden = first == model.n_users
    assert 0.25 < hidden.float().mean() < 0.35 and torch.equal(first[~hidden], users[~hidden])
    assert torch.equal(model.eval()._training_rows(users), users)            # inference: own rows
    default = build("demn", 2000, 5, SMALL).train()
    rng = torch.get_rng_state()
    assert torch.equal(default._training_rows(users), users)
    assert torch.equal(torch.get_rng_state(), rng)                           # rate 0 draws nothing
    assert torch.equal(model._training_rows(torch.tensor([-1, 3])), torch.tensor([2000, 3]))


@pytest.mark.parametrize("rate", [-0.1, 1.5, float("nan")])
def test_anonymous_rate_outside_the_unit_interval_is_a_config_error(rate):
    with pytest.raises(ConfigError, match="anonymous_rate"):
        build("demn", 4, 6, {**SMALL, "anonymous_rate": rate})


@torch.no_grad()
def test_anonymous_states_replay_as_they_encode_and_batch_beside_known_users():
    data = generate(SynthConfig(n_users=12, n_items=15, mean_length=6, seed=1))
    torch.manual_seed(0)
    model = build("demn", data.n_users, data.n_items, {**SMALL, "anonymous_rate": 1.0})
    model.prepare(data)
    with torch.no_grad():
        model.user_embedding.weight[-1].normal_()                            # a trained-looking row
    model.eval()
    history = torch.tensor([[3, 7, 7, 1, 9], [2, 5, 0, 0, 0]])
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    users = torch.tensor([-1, 4])
    encoded = model.encode(users, history, mask)
    for b in range(2):
        state = model.init_state(users[b:b + 1])
        for item in history[b][mask[b]]:
            state = model.update(state, item.reshape(1))
        assert torch.allclose(state.values, encoded.values[b:b + 1], atol=1e-5)
        alone = model.score_state(state, users[b:b + 1])
        assert torch.allclose(alone, model.score_state(encoded, users)[b:b + 1], atol=1e-5)
        again = model.state_from_bytes(state.to_bytes())
        assert torch.equal(model.score_state(again, users[b:b + 1]), alone)
    scores = model.score_all(Query(users[:1], history[:1], mask[:1]))
    assert torch.isfinite(scores).all() and scores.shape == (1, data.n_items)
    known = model.score_all(Query(torch.tensor([4]), history[:1], mask[:1]))
    assert not torch.allclose(scores, known)                                # p_4 is not the anonymous row


@torch.no_grad()
def test_a_checkpoint_from_before_the_anonymous_user_loads_with_the_row_at_zero():
    data = interactions(BASE)
    old = demn(data).eval()
    state = old.state_dict()
    state["user_embedding.weight"] = state["user_embedding.weight"][:data.n_users]     # as 9c68492 saved it
    with torch.no_grad():
        old.user_embedding.weight[-1] = 5.0                                  # not what a load should keep
    fresh = build("demn", data.n_users, data.n_items, SMALL)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.user_embedding.weight[-1], torch.zeros(SMALL["dim"]))
    assert torch.equal(fresh.user_embedding.weight[:-1], old.user_embedding.weight[:-1])


# -- the default is unchanged -----------------------------------------------------------------------
def seeded_training_outputs():
    """Two seeded epochs through the real trainer, then every user's scores and every weight's sum
    (p: its known users' rows). The step clock, as every DEMN counted then (the time clock, a
    later change, is tested in tests/test_demn_clock.py); its unit is 0 and not in the record."""
    data = generate(SynthConfig(n_users=12, n_items=15, mean_length=6, seed=1))
    rec = Recommender("demn", train={"epochs": 2, "batch_size": 16, "lr": 0.01, "patience": 0, "seed": 0},
                      dim=8, slots=3, visitors=4, history=5, top_r=3, clock="steps").fit(data)
    model = rec.model_.eval()
    with torch.no_grad():
        scores = model.score_all(rec.query(np.arange(data.n_users)))
    state = model.state_dict()
    state["user_embedding.weight"] = state["user_embedding.weight"][:data.n_users]
    assert float(state.pop("time_unit")) == 0.0
    return scores, {n: float(p.double().sum()) for n, p in state.items() if p.is_floating_point()}


def test_the_default_rate_trains_exactly_as_before_the_anonymous_user():
    # recorded from the code before the anonymous user (9c68492): same draws, same steps
    scores, sums = seeded_training_outputs()
    expected = np.frombuffer(base64.b64decode(PRE_ANONYMOUS_SCORES), dtype=np.float32).reshape(12, 15)
    np.testing.assert_allclose(scores.numpy(), expected, atol=1e-6, rtol=0)
    assert sums.keys() == PRE_ANONYMOUS_SUMS.keys()
    for name, value in PRE_ANONYMOUS_SUMS.items():
        assert sums[name] == pytest.approx(value, abs=2e-6), name


# -- the command line, on session files --------------------------------------------------------------
def test_demn_trains_on_session_files_and_scores_anonymous_sessions(tmp_path):
    folder, out = ring_session_files(tmp_path), tmp_path / "demn"
    settings = ["model.dim=16", "model.slots=2", "model.visitors=4", "model.history=5", "model.top_r=2",
                "model.anonymous_rate=1.0", "data.valid_from_train=true", "train.lr=0.01", "train.patience=0"]
    result = CliRunner().invoke(main, ["train", "demn", "--data", str(folder), "--out", str(out), "--epochs", "20",
                                       "--no-progress", *sum((["--set", s] for s in settings), [])])
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert results["split"] == "session" and set(results["metrics"]) == {"session"}
    metrics = results["metrics"]["session"]
    assert all(np.isfinite(v) for v in metrics.values())
    # the next item on the ring follows the session's last click: popularity gets 0.22 here
    assert metrics["HR@5"] > 0.85, metrics
    rec = Recommender.load(out)
    query = Query(torch.tensor([-1, -1]), torch.tensor([[1, 2], [3, 0]]), torch.tensor([[True, True], [True, False]]))
    assert torch.isfinite(rec.model_.eval().score_all(query)).all()
    result = CliRunner().invoke(main, ["recommend", str(out), "--session", "1,2", "-k", "3"])
    assert result.exit_code == 0, result.output
    assert len(result.output.splitlines()) == 4                              # "session 1,2" and 3 items


def test_the_yoochoose_recipe_loads_and_builds():
    config = load_config("demn", Path(__file__).parents[1] / "configs" / "demn_yoochoose1_64.toml", [])
    assert config.model_params["anonymous_rate"] == 1.0 and config.data.split == "given"
    assert config.data.valid_from_train and config.train.valid_protocol == "session"
    model = build("demn", 10, 20, config.model_params)
    assert model.anonymous_rate == 1.0 and model.read == "user"          # ranking every item: one product


PRE_ANONYMOUS_SUMS = {
    "bank": 4.922022, "candidate_in.bias": 0.3961855, "candidate_in.weight": 0.7834868,
    "candidate_slot.weight": 1.5858315, "delta_embedding.weight": -16.418805, "gate_in.bias": -0.1811433,
    "gate_in.weight": -0.6939717, "gate_slot.weight": -0.3656369, "history_recency": 0.4902311,
    "hop.bias": -0.0723905, "hop.weight": -5.3557584, "item_bias.weight": -0.0088308,
    "item_embedding.weight": 1.2588299, "read_gates.bias": -0.0979421, "read_gates.weight": -1.7070583,
    "slot_keys": 1.0523757, "timescale_logit": 20.3835882, "user_embedding.weight": 0.5822964,
    "visitor_embedding.weight": 0.476062, "visitor_recency": 0.5229506}
PRE_ANONYMOUS_SCORES = (
    "ICthuqgpNT2GYVs+QJ8PPiJ5NT7yEI29nSsmPnroFj50Svu9k/coPm4kuD17/e697i5xvAqb+L0PmBs9xxX/PQFJAT5tFK89"
    "6/3qPRIoUj4NoWq9ajSXPQ9pLj7QHve9PskZPiRZsz2mmSm+LXnQPNilyDunSEe9GDAkPqjD/7z9w3Q+pHk7PknQAD6u/Ri9"
    "e73nPaaORj7G4i++7PEqPj/hgL0U75a8IbSFPPT3MLzGL5g8LEo9vrSRLT48DRO8iEifPMd+Bj5+dJg9ATUMPurT4jz45kg8"
    "oYCkPRd8DD7+k1q+lkuBPSMwBD1PXfa9VPHfvM9ji73o+Jc9UExBPC6A0z2CzSu+UWM7PtVQAj4+Y4W+xoAhPpqV3T3cZV++"
    "KjVtvTpKxr0vHaS8/W3YPWuNa70hRmc+KCMCPundoz2V5hO+gGDoupqP6j1e/Vm+ABbQPVuezrwQ6uW7d/T5PLbddL2dcWc9"
    "OmhBPd7HIr6kfUc+xKrSPem5nT27TDi+PjmmPTB12j1xN6a+gEUFPi4gOjyStgC9qTwQvXzUtL1OwOI8+Sq8PQ466LtWDXM+"
    "WE4XPvUULD5uP8i9VqmxPTKHJz5wAmC+wI4nPrCnLz1xlca9nghuPKaIBb3wtTc93jsdPs8OIL3hgt49eFTLPfFlGT5QUgW+"
    "kMTZPX54Fz4tm5G+KG8wPh+HtT30vzG+wIGou/KbhTwatQs90A17uz/mFTzCQQ8+MIYhvZSqcD0pyku+c6mGPb8cMD4jyQK+"
    "GbnrPa/vZTwYqW++x93tPCiI1L0cCqK6WqucvRQR2D0eFw4+wg6+vNSJmD0e6Oq9Dw1oPX7G5z14ZQo8yBq5PfrRWT1E9WW+"
    "fUWOPVGlpb0GRLA8SX6JPfpNtz0cB909FjI/Pptn2T3g+L883LzgPJAw3jwaX9q8RLaSPfSEKT16Egw9RhZXPYS2CjxnFxI9"
)
