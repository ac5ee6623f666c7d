"""Every shipped config loads, names a registered model with valid parameters, and gives a
working optimizer and training task: a typo in a config fails here, not an hour into a run."""

from pathlib import Path

import numpy as np
import pytest

from memrec.data.interactions import IdMap, Interactions
from memrec.models import build
from memrec.training.config import load_config
from memrec.training.tasks import make_task
from memrec.training.trainer import make_optimizer

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.toml"))
# TransE configs build from a knowledge graph's sizes, not users × items: tests/test_knowledge.py
# checks them (test_shipped_transe_configs_load)
CONFIGS = [p for p in CONFIGS if not p.stem.startswith("transe_")]


def tiny_train(n_users=6, n_items=9) -> Interactions:
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(n_users), 4).astype(np.int32)
    items = rng.integers(0, n_items, len(users)).astype(np.int32)
    return Interactions(users, items, IdMap.range(n_users), IdMap.range(n_items),
                        timestamp=np.arange(len(users), dtype=np.int64),
                        session=users.astype(np.int64))


def test_configs_are_shipped():
    assert len(CONFIGS) >= 7


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_config_builds_its_model_optimizer_and_task(path):
    config = load_config(path=path)
    train = tiny_train()
    model = build(config.model, train.n_users, train.n_items, config.model_params)
    model.prepare(train)
    if not model.trainable:
        return
    make_optimizer(config.train, model.parameter_groups(config.train.weight_decay))
    assert make_task(model, train, config.train).n_examples > 0
