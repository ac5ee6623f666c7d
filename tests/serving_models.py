"""Small saved runs of any registered model, for the serving tests (untrained weights: the
guarantees are about agreement between paths, not accuracy)."""

from __future__ import annotations

from pathlib import Path

import torch

from memrec.checkpoint import save_model
from memrec.data.synthetic import SynthConfig, generate
from memrec.models import REGISTRY, build

#: small sizes so every model builds and scores in milliseconds
SMALL = {"ksr": {"dim": 8, "hidden": 12, "kg_dim": 6, "out_dim": 5, "kg": None},   # no KG: the ablation
         "stamp": {"dim": 8}, "stmp": {"dim": 8}, "dmn": {"dim": 8}, "mars": {"dim": 8},
         "gru4rec": {"dim": 8}, "sasrec": {"dim": 8, "heads": 2}, "rumi": {"dim": 8, "slots": 3}, "rumf": {"dim": 8, "slots": 4},
         "nmrn": {"dim": 8, "slots": 3}, "cmn": {"dim": 8}, "bprmf": {"dim": 8},
         "gmf": {"dim": 8}, "fpmc": {"dim": 8}, "demn": {"dim": 8, "slots": 2, "visitors": 4}}
#: every recommender (TransE embeds a graph: nothing to serve)
SERVABLE = sorted(name for name, s in REGISTRY.items() if s.data == "interactions")


def small_data(seed: int = 1):
    return generate(SynthConfig(n_users=12, n_items=15, mean_length=6, seed=seed))


def write_run(name: str, folder: Path, params: dict | None = None, seed: int = 0) -> Path:
    """A run folder (model.json, model.pt, ids.json) of ``name`` on the small synthetic data."""
    torch.manual_seed(seed)
    data = small_data()
    params = SMALL.get(name, {}) if params is None else params
    model = build(name, data.n_users, data.n_items, params)
    if model.trainable:
        model.prepare(data)
    else:
        model.fit_closed_form(data)
    with torch.no_grad():
        if name == "nmrn":                 # a memory that is not all zeros before any event
            model.memory.normal_()
    indptr, items = data.sequences()
    save_model(folder, name=name, params=params, model=model.eval(), users=data.users,
               items=data.items, seen_indptr=indptr, seen_items=items, seen_times=data.sequence_times())
    return folder
