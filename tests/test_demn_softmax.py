"""DEMN trained with a full softmax (``NextItemUserSoftmax``): with the last-item read and
without the item memory, every prefix's scores of all items are one product u·qᵀ + b; the
other configurations say why they cannot, as a one-line config error."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from memrec.cli import main
from memrec.data.synthetic import SynthConfig, generate, write_csv
from memrec.errors import ConfigError
from memrec.models import build
from memrec.training.config import TrainConfig
from memrec.training.tasks import NextItemTask, make_task

from .test_demn import BASE, SMALL, demn, interactions

SOFTMAX_READY = {"read": "user", "item_memory": False}


def prefixes():
    users = torch.tensor([0, 1, 2])
    history = torch.tensor([[0, 1, 2, 3, 4], [0, 1, 2, 3, 4], [5, 0, 0, 0, 0]])
    mask = torch.tensor([[True] * 5, [True] * 4 + [False], [True, True, False, False, False]])
    return users, history, mask


@pytest.mark.parametrize("repeat", [False, True])
def test_all_item_scores_equal_the_candidate_scores_of_every_item(repeat):
    # the oracle: the pairwise path scoring every item as a candidate after every prefix (with
    # the copy read: its mixture of every item, gathered at candidates by copy_candidate_scores)
    data = interactions(BASE)
    model = demn(data, **SOFTMAX_READY, repeat=repeat).eval()
    torch.nn.init.normal_(model.item_bias.weight)                # b_j starts at zero: make it count
    users, history, mask = prefixes()
    candidates = torch.arange(data.n_items).expand(*history.shape, -1).contiguous()
    with torch.no_grad():
        expected = model.prefix_scores(users, history, mask, candidates)[mask]
        scores = model.prefix_user_outputs(users, history, mask, mask)
    assert scores.shape == (int(mask.sum()), data.n_items)
    torch.testing.assert_close(scores, expected)


@pytest.mark.parametrize("repeat", [False, True])
def test_all_item_scores_after_a_prefix_equal_serving_its_replayed_state(repeat):
    # what training ranks after a prefix is what a server holding that prefix's state ranks
    data = interactions(BASE)
    model = demn(data, **SOFTMAX_READY, repeat=repeat).eval()
    users, history, mask = prefixes()
    last = torch.zeros_like(mask)
    last[0, 2] = True                                             # user 0 after its third event
    with torch.no_grad():
        state = model.encode(users[:1], history[:1, :3], mask[:1, :3])
        torch.testing.assert_close(model.prefix_user_outputs(users, history, mask, last),
                                   model.score_state(state, users[:1]))


def test_the_softmax_trains_the_user_side_and_refreshes_the_bank():
    data = interactions(BASE)
    model = demn(data, **SOFTMAX_READY).train()
    users, history, mask = prefixes()
    before = model.bank.clone()
    scores = model.prefix_user_outputs(users, history, mask, mask)
    torch.nn.functional.cross_entropy(scores, history[mask]).backward()
    assert model.slot_keys.grad is not None and model.slot_keys.grad.abs().sum() > 0
    assert model.user_embedding.weight.grad[:3].abs().sum() > 0
    assert not torch.equal(model.bank[:3], before[:3]) and torch.equal(model.bank[3], before[3])


@pytest.mark.parametrize("params, named", [({"read": "candidate", "item_memory": False}, 'model.read = "user"'),
                                          ({"read": "user", "item_memory": True}, "model.item_memory = false")])
def test_a_configuration_that_cannot_is_a_config_error_naming_the_setting(params, named):
    data = interactions(BASE)
    model = demn(data, **params)
    assert model.softmax_unavailable is not None and named in model.softmax_unavailable
    with pytest.raises(ConfigError, match=named) as error:
        make_task(model, data, TrainConfig(loss="softmax"))
    assert "\n" not in str(error.value)
    with pytest.raises(ConfigError, match=named):
        model.prefix_user_outputs(*prefixes(), prefixes()[2])


def test_the_copy_read_moves_probability_onto_the_prefix_items_and_trains_its_gate():
    # a softmax of ŷ' = log((1 − g)·exp(ŷ) + g·c) is (1 − g')·softmax(ŷ) + g'·c: the copy adds
    # mass only on items the prefix holds, so every other item's probability ratio is unchanged
    data = interactions(BASE)
    plain = demn(data, **SOFTMAX_READY).eval()
    copying = demn(data, **SOFTMAX_READY, repeat=True).eval()
    copying.load_state_dict(plain.state_dict(), strict=False)            # the same ŷ, plus the gate
    users, history, mask = prefixes()
    last = torch.zeros_like(mask)
    last[0, 2] = True                                                     # user 0 after items 0, 1, 2
    with torch.no_grad():
        p = torch.softmax(plain.prefix_user_outputs(users, history, mask, last), -1)[0]
        q = torch.softmax(copying.prefix_user_outputs(users, history, mask, last), -1)[0]
    seen = torch.zeros(data.n_items, dtype=torch.bool)
    seen[[0, 1, 2]] = True
    torch.testing.assert_close(q.sum(), torch.tensor(1.0))
    assert (q[seen] > p[seen]).all()
    ratio = q[~seen] / p[~seen]                                           # 1 − g', the same for all
    torch.testing.assert_close(ratio, ratio[:1].expand_as(ratio))
    copying.train()
    scores = copying.prefix_user_outputs(users, history, mask, mask)
    torch.nn.functional.cross_entropy(scores, history[mask]).backward()
    assert copying.copy.gate.weight.grad.abs().sum() > 0


def test_the_ready_configuration_gets_the_softmax_task():
    data = interactions(BASE)
    task = make_task(demn(data, **SOFTMAX_READY), data, TrainConfig(loss="softmax"))
    assert isinstance(task, NextItemTask) and task.softmax


def test_cli_trains_demn_with_the_softmax(tmp_path):
    path = tmp_path / "synth.csv"
    write_csv(generate(SynthConfig(n_users=40, n_items=200, mean_length=8, seed=2)), path)
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", "demn", "--data", str(path), "--out", str(out), "--epochs", "2",
                                       "--set", "model.dim=8", "--set", "model.visitors=5",
                                       "--set", 'model.read="user"', "--set", "model.item_memory=false",
                                       "--set", 'train.loss="softmax"', "--no-progress"])
    assert result.exit_code == 0, result.output
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert log[-1]["loss"] < log[0]["loss"]                      # the cross-entropy went down


def test_cli_names_the_setting_when_the_softmax_cannot_train(tmp_path):
    path = tmp_path / "synth.csv"
    write_csv(generate(SynthConfig(n_users=40, n_items=200, mean_length=8, seed=2)), path)
    result = CliRunner().invoke(main, ["train", "demn", "--data", str(path), "--out", str(tmp_path / "run"),
                                       "--set", 'train.loss="softmax"', "--no-progress"])
    assert result.exit_code == 2
    assert 'model.read = "user"' in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run" / "model.pt").exists()


def test_build_declares_the_capability_per_configuration():
    assert build("demn", 4, 6, {**SMALL, **SOFTMAX_READY}).softmax_unavailable is None
    assert build("demn", 4, 6, SMALL).softmax_unavailable is not None        # the spec's default
