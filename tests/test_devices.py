"""Devices and precision (``train.device``, ``train.precision``).

Every model must be device-clean: it creates tensors on its inputs' / parameters' device, never
on the default one. On a CPU-only machine that is checked by making ``meta`` the default device
while the model and its inputs stay on the CPU: a tensor created without a device lands on
``meta`` and the first operation mixing it with a CPU tensor fails. With
``MEMREC_TEST_DEVICE=cuda`` (or ``mps``) a second device is used for real.
"""

import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from memrec.cli import main
from memrec.data.splits import leave_one_out
from memrec.data.synthetic import SynthConfig, generate, write_csv
from memrec.devices import autocast, resolve_device, to_device
from memrec.errors import ConfigError
from memrec.models import REGISTRY, KnowledgeGraphEmbedding
from memrec.models.capabilities import StatefulScorer
from memrec.recommender import Recommender
from memrec.training.tasks import make_task

NAMES = sorted(n for n, s in REGISTRY.items() if not issubclass(s.cls, KnowledgeGraphEmbedding))
SMALL = {"cmn": {"dim": 8}, "ksr": {"hidden": 8, "out_dim": 8, "kg_dim": 8, "dim": 8, "kg": "none"},
         "stamp": {"dim": 8}, "stmp": {"dim": 8}, "sasrec": {"dim": 8, "max_len": 5}}
TRAIN = {"epochs": 1, "patience": 0, "batch_size": 128}
SECOND_DEVICE = os.environ.get("MEMREC_TEST_DEVICE")


@pytest.fixture(scope="module")
def split():
    return leave_one_out(generate(SynthConfig(n_users=40, n_items=60, mean_length=10, seed=3)))


def _fitted(name, split, **train):
    extra = {"pretrain_epochs": 0} if name == "ksr" else {}
    return Recommender(name, train={**TRAIN, **extra, **train}, **SMALL.get(name, {})).fit(split.train, split.valid)


@pytest.mark.parametrize("name", NAMES)
def test_scoring_training_and_state_create_no_tensor_on_the_default_device(name, split):
    rec = _fitted(name, split)
    model = rec.model_
    query = rec.query(np.array([0, 1, 2]))
    items = torch.tensor([[1, 2], [3, 4], [5, 6]])
    with torch.device("meta"):
        assert model.score_all(query).device.type == "cpu"
        assert model.score_items(query, items).device.type == "cpu"
        if isinstance(model, StatefulScorer):
            state = model.update(model.encode(query.users, query.history, query.mask), items[:, 0])
            assert model.score_state(state, query.users).device.type == "cpu"
    if model.trainable:
        task = make_task(model, split.train, rec.config.train)
        batch = next(task.batches(torch.Generator().manual_seed(0)))
        model.train()
        with torch.device("meta"):
            loss = task.loss(model, batch)
            loss.backward()
        assert loss.device.type == "cpu"


def test_device_names_are_checked():
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="choose auto, cpu, cuda, cuda:N or mps"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="this machine has no CUDA device"):
            resolve_device("cuda:0")


def test_batches_of_any_shape_move():
    from memrec.training.tasks import SequenceBatch
    batch = SequenceBatch(torch.zeros(2, 3, dtype=torch.long), torch.ones(2, 3, dtype=torch.bool),
                          torch.zeros(4, dtype=torch.long), torch.arange(2), None)
    moved = to_device(batch, torch.device("meta"))
    assert moved.history.device.type == "meta" and moved.negatives is None
    assert [t.device.type for t in to_device((batch.users, [batch.mask]), torch.device("meta"))[1]] == ["meta"]


def test_cli_device_option_and_bad_devices(tmp_path):
    data = tmp_path / "data.csv"
    write_csv(generate(SynthConfig(n_users=40, n_items=300, mean_length=8, seed=1)), data)
    ok = CliRunner().invoke(main, ["train", "bprmf", "--data", str(data), "--out", str(tmp_path / "cpu"),
                                   "--epochs", "1", "--device", "cpu"])
    assert ok.exit_code == 0, ok.output
    bad = CliRunner().invoke(main, ["train", "bprmf", "--data", str(data), "--out", str(tmp_path / "x"),
                                    "--device", "tpu"])
    assert bad.exit_code == 2 and "train.device = 'tpu'; choose auto, cpu, cuda, cuda:N or mps" in bad.output
    assert not (tmp_path / "x").exists()


def test_bf16_runs_the_products_in_bfloat16_and_keeps_float32_weights(split):
    linear = torch.nn.Linear(4, 4)
    with autocast(torch.device("cpu"), "bf16"):
        assert linear(torch.ones(2, 4)).dtype == torch.bfloat16
    with autocast(torch.device("cpu"), "fp32"):
        assert linear(torch.ones(2, 4)).dtype == torch.float32
    fp32 = _fitted("sasrec", split, seed=0)
    bf16 = _fitted("sasrec", split, seed=0, precision="bf16")
    weights32 = fp32.model_.item_embedding.weight
    weights16 = bf16.model_.item_embedding.weight
    assert weights16.dtype == torch.float32
    assert not torch.equal(weights32, weights16)                       # autocast did act
    assert torch.allclose(weights32, weights16, atol=0.05)             # and changed little


@pytest.mark.skipif(not SECOND_DEVICE, reason="set MEMREC_TEST_DEVICE=cuda (or mps) to run on a second device")
@pytest.mark.parametrize("name", NAMES)
def test_training_on_the_second_device_scores_like_the_cpu(name, split, tmp_path):
    on_device = _fitted(name, split, device=SECOND_DEVICE)
    assert on_device.model_.device.type == torch.device(SECOND_DEVICE).type
    ids, scores = on_device.recommend([0, 1, 2], k=5)
    assert np.isfinite(scores).all()
    on_device.save(tmp_path / name)
    loaded = Recommender.load(tmp_path / name)                          # checkpoints load on the CPU
    assert loaded.model_.device.type == "cpu"
    ids_cpu, scores_cpu = loaded.recommend([0, 1, 2], k=5)
    np.testing.assert_allclose(scores, scores_cpu, rtol=1e-3, atol=1e-4)
