"""Resume == uninterrupted, for every registered recommender: 2 epochs into a run folder, then
``resume=True`` to 3, must end with the same weights, bit for bit, as 3 epochs straight.

Regression tests for "NMRN --resume is not a resume" (the checkpoint held neither the
adversarial generator nor the stream task's epoch counter, which decides the GAN warm-up).
"""

import pytest
import torch

from memrec.data.splits import leave_one_out
from memrec.data.synthetic import SynthConfig, generate
from memrec.models import REGISTRY, Model
from memrec.recommender import Recommender

TRAIN = {"batch_size": 64, "patience": 0, "lr": 0.01}
#: small sizes so each model trains in well under a second an epoch
SMALL = {"bprmf": {"dim": 8}, "gmf": {"dim": 8}, "cmn": {"dim": 8}, "fpmc": {"dim": 8},
         "gru4rec": {"dim": 8, "hidden": 8}, "sasrec": {"dim": 8, "max_len": 5}, "rumi": {"dim": 8, "slots": 4},
         "rumf": {"dim": 8, "slots": 4}, "stamp": {"dim": 8}, "stmp": {"dim": 8},
         "mars": {"dim": 8, "max_history": 10}, "dmn": {"dim": 8},
         "nmrn": {"dim": 8, "slots": 4}, "demn": {"dim": 8, "slots": 2, "visitors": 5},
         "ksr": {"hidden": 16, "out_dim": 8, "kg_dim": 8, "dim": 8, "kg": None}}   # no KG: the ablation
SMALL_TRAIN = {"ksr": {"pretrain_epochs": 0},
               "nmrn": {"gan_pool": 10, "gan_dim": 4, "gan_pretrain_epochs": 1}}
#: the registry's recommenders (a knowledge-graph embedding model such as TransE, should one be
#: registered, is not a memrec Model: it trains on triples with its own loop)
NAMES = sorted(name for name, spec in REGISTRY.items() if issubclass(spec.cls, Model))


@pytest.fixture(scope="module")
def split():
    return leave_one_out(generate(SynthConfig(n_users=40, n_items=60, mean_length=10, seed=3)))


def fit(name, split, epochs, run_dir=None, resume=False, train=None) -> Recommender:
    rec = Recommender(name, train={**TRAIN, **SMALL_TRAIN.get(name, {}), **(train or {}),
                                   "epochs": epochs}, **SMALL.get(name, {}))
    return rec.fit_split(split, run_dir=run_dir, resume=resume, progress=False, echo=lambda line: None)


def assert_resume_equals_uninterrupted(name, split, tmp_path, train=None):
    straight = fit(name, split, 3, train=train)
    fit(name, split, 2, tmp_path / "run", train=train)
    resumed = fit(name, split, 3, tmp_path / "run", resume=True, train=train)
    expected, got = straight.model_.state_dict(), resumed.model_.state_dict()
    assert expected.keys() == got.keys()
    for key, tensor in expected.items():
        assert torch.equal(tensor, got[key]), f"{name}: {key} differs after resume"
    assert resumed.result_.best_epoch == straight.result_.best_epoch
    assert [r.get("valid") for r in resumed.result_.history] == [r.get("valid") for r in straight.result_.history]


@pytest.mark.parametrize("name", NAMES)
def test_regression_resume_equals_uninterrupted_for_every_registered_model(name, split, tmp_path):
    """Gradient models continue from the checkpoint; closed-form ones refit on resume (no
    epochs to continue), which must give the same model, without an error."""
    assert_resume_equals_uninterrupted(name, split, tmp_path)


@pytest.mark.parametrize("sampler", ["uniform", "popularity", "adversarial"])
def test_regression_nmrn_resume_equals_uninterrupted(sampler, split, tmp_path):
    """The adversarial run is the one that differed (max |Δw| ≈ 4e-3): the generator G restarted
    from its initialisation and the task's epoch counter from 0, so the warm-up ran again."""
    assert_resume_equals_uninterrupted("nmrn", split, tmp_path, {"sampler": sampler})


def test_regression_nmrn_resume_equals_uninterrupted_in_exact_stream_mode(split, tmp_path):
    """Event-by-event training keeps its own truncated-gradient link (``_pending``); it never
    crosses an epoch boundary, where a checkpoint is taken."""
    assert_resume_equals_uninterrupted("nmrn", split, tmp_path,
                                       {"sampler": "adversarial", "stream_mode": "exact",
                                        "gan_warmup_epochs": 2})


def test_regression_nmrn_resume_mid_warmup_equals_uninterrupted(split, tmp_path):
    """Interrupted before G was pretrained (warm-up of 2 epochs): the resumed run must pretrain
    G at epoch 3, exactly as the uninterrupted one."""
    assert_resume_equals_uninterrupted("nmrn", split, tmp_path,
                                       {"sampler": "adversarial", "gan_warmup_epochs": 2})


def test_ksr_resume_after_pretraining_equals_uninterrupted(split, tmp_path):
    """The façade pretrains only a fresh run; a resumed one takes the pretrained (and trained)
    weights from the checkpoint."""
    assert_resume_equals_uninterrupted("ksr", split, tmp_path, {"pretrain_epochs": 1})


def test_resume_with_another_sampler_is_a_clear_error(split, tmp_path):
    from memrec.errors import CheckpointError
    fit("nmrn", split, 1, tmp_path / "run", train={"sampler": "adversarial"})
    with pytest.raises(CheckpointError, match="does not match"):
        fit("nmrn", split, 2, tmp_path / "run", resume=True, train={"sampler": "uniform"})
