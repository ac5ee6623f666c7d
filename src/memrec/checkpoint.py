"""Saving and loading fitted models: weights + JSON, never pickled objects.

A saved model is a folder with three files:

* ``model.json`` — format version, model name, hyper-parameters, sizes, library versions
  (written last: its presence means the folder is complete);
* ``model.pt``   — ``{"state": state_dict, "seen_indptr", "seen_items"[, "seen_times"]}``: tensors only, loaded
  with ``torch.load(weights_only=True)`` onto the CPU (a model saved from a GPU loads on a machine
  without one), the model then moved to the device asked for; ``seen_*`` is the chronological
  training history of every user (CSR), needed to exclude seen items and to query history-based models
  (``seen_times``, its timestamps, when the data had them: for models that read the clock);
* ``ids.json``   — raw user and item ids, so the CLI speaks the dataset's own ids.

A knowledge-graph embedding (TransE; :func:`save_graph_model`) is saved the same way without the
user side: ``model.json`` records ``n_entities`` / ``n_relations`` instead of ``n_users`` /
``n_items``, ``model.pt`` holds ``{"state": state_dict}``, and the graph's ids live beside them in
the run folder's ``graph.json`` (:mod:`memrec.knowledge_runs`).

Every file is written atomically (temporary file in the same folder, fsync, rename), so an
interrupted save never leaves a half-written file under a real name.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .data.interactions import IdMap
from .devices import as_device
from .fileio import atomic_torch_save, atomic_write_json, safe_torch_load
from .errors import CheckpointError
from .models import REGISTRY, KnowledgeGraphEmbedding, Model, build, build_graph_model

FORMAT_VERSION = 1


def versions() -> dict:
    from . import __version__
    return {"memrec": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


@dataclass(frozen=True, eq=False)
class SavedModel:
    """A model loaded from a folder, with what serving it needs."""

    name: str
    params: dict
    model: Model
    users: IdMap
    items: IdMap
    seen_indptr: np.ndarray
    seen_items: np.ndarray
    seen_times: np.ndarray | None = None          # float64, aligned with seen_items; None: no clock


def save_model(folder: str | Path, *, name: str, params: dict, model: Model,
               users: IdMap, items: IdMap, seen_indptr: np.ndarray, seen_items: np.ndarray,
               seen_times: np.ndarray | None = None) -> None:
    folder = Path(folder)
    atomic_write_json(folder / "ids.json", {"users": users.to_json(), "items": items.to_json()})
    times = {} if seen_times is None else {"seen_times": torch.as_tensor(seen_times, dtype=torch.float64)}
    atomic_torch_save({"state": model.state_dict(),
                       "seen_indptr": torch.as_tensor(seen_indptr, dtype=torch.long),
                       "seen_items": torch.as_tensor(seen_items, dtype=torch.long), **times},
                      folder / "model.pt")
    atomic_write_json(folder / "model.json", {
        "format_version": FORMAT_VERSION, "model": name, "params": params,
        "n_users": model.n_users, "n_items": model.n_items, "versions": versions()})


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"{path}: missing (not a finished memrec run folder?)")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: corrupt JSON ({e})") from None


def _read_meta(folder: Path) -> dict:
    meta = _read_json(folder / "model.json")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{folder}: checkpoint format {meta.get('format_version')} "
                              f"is not supported (this memrec reads {FORMAT_VERSION})")
    return meta


def load_model(folder: str | Path, device: str | torch.device = "cpu") -> SavedModel:
    """The saved model in ``folder``, in eval mode on ``device`` (a ``torch.device``, or a name
    as ``train.device`` takes: auto, cpu, cuda, cuda:N, mps); the training histories stay NumPy
    arrays on the CPU."""
    device = as_device(device)           # a device this machine lacks fails before any reading
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such run folder")
    meta = _read_meta(folder)
    model_spec = REGISTRY.get(meta.get("model"))
    if model_spec is not None and model_spec.data != "interactions":
        raise CheckpointError(f"{folder}: a {meta['model']} run embeds a knowledge graph; it has no "
                              "users or items to recommend or evaluate (its link-prediction results "
                              "are in results.json, its vectors in export/)")
    ids = _read_json(folder / "ids.json")
    blob = safe_torch_load(folder / "model.pt")
    model = _restored(folder, blob, lambda: build(meta["model"], meta["n_users"], meta["n_items"], meta["params"]))
    return SavedModel(meta["model"], meta["params"], model.to(device), IdMap.from_json(ids["users"]),
                      IdMap.from_json(ids["items"]), blob["seen_indptr"].numpy(),
                      blob["seen_items"].numpy(), blob["seen_times"].numpy() if "seen_times" in blob else None)


# -- knowledge-graph embeddings ---------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class SavedGraphModel:
    """A knowledge-graph embedding loaded from a folder."""

    name: str
    params: dict
    model: KnowledgeGraphEmbedding


def save_graph_model(folder: str | Path, *, name: str, params: dict,
                     model: KnowledgeGraphEmbedding) -> None:
    """``model.pt`` (tensors only) then ``model.json`` (written last, as for recommenders)."""
    folder = Path(folder)
    atomic_torch_save({"state": model.state_dict()}, folder / "model.pt")
    atomic_write_json(folder / "model.json", {
        "format_version": FORMAT_VERSION, "model": name, "params": params,
        "n_entities": model.n_entities, "n_relations": model.n_relations, "versions": versions()})


def load_graph_model(folder: str | Path) -> SavedGraphModel:
    """Load what :func:`save_graph_model` wrote (also TransE folders written before it: their
    ``model.json`` has the same keys less ``versions``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such run folder")
    meta = _read_meta(folder)
    blob = safe_torch_load(folder / "model.pt")
    model = _restored(folder, blob, lambda: build_graph_model(meta["model"], meta["n_entities"],
                                                              meta["n_relations"], meta["params"]))
    return SavedGraphModel(meta["model"], meta["params"], model)


def _restored(folder: Path, blob: dict, build_model):
    """The model ``build_model()`` makes, with the saved weights, in eval mode; a model.json and
    model.pt that do not fit each other are a CheckpointError naming the folder."""
    try:
        model = build_model()
        model.load_state_dict(blob["state"])
    except (KeyError, RuntimeError) as e:
        raise CheckpointError(f"{folder}: checkpoint does not match its model ({e})") from None
    return model.eval()
