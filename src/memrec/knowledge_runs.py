"""TransE run folders: filtered link prediction, the vector exports, and loading for KSR.

``memrec train transe --data KG --out RUN`` is an ordinary run (:func:`memrec.runs.train_run`):
TransE is registered as a knowledge-graph embedding, the shared trainer fits it on the graph's
training triples (:mod:`memrec.training.triples`), validating with
:class:`LinkPredictionValidator`, and :mod:`memrec.checkpoint` saves it. This module holds what is
particular to a knowledge graph: filtered link prediction (MR, MRR, Hits@k) and the exact
random-ranker reference, the exports, and :func:`load_transe`, which KSR's pretraining reads.

A TransE run folder holds:

* ``run.json`` — config and data source; ``graph.json`` — entity / relation ids, item links
  and the relations KSR keeps as memory slots (``item_relations``; ``item_relations_inverse``
  marks those read as r⁻¹, whose key is −r; ``item_relations_note`` says why there are none);
* ``model.json`` + ``model.pt`` — the trained model (tensors only, ``weights_only`` loading);
  ``checkpoint.pt`` and ``log.jsonl`` — the trainer's, per epoch, so ``--resume`` continues an
  interrupted run;
* ``results.json`` — link prediction metrics (test, valid, random ranker);
* ``export/`` — the vectors: ``entities.txt`` / ``relations.txt`` (``raw_id v1 … vd``),
  ``item_entities.txt`` and ``r_matrix.txt`` (the official KSR code's ``KBItemEmbedding`` and
  relation-matrix inputs: one row per slot, −r for a slot read as r⁻¹), and RecBole's ``<name>.ent_feature`` / ``<name>.rel_feature`` atomic
  files (``ent_id:token  ent_vec:float_seq``) for its ``preload_weight`` option.

Every file is written atomically. Config (TOML; every key checked; the shared
:mod:`memrec.training.config` tables)::

    [model]  name = "transe", dim, norm
    [train]  epochs, batch_size, lr, optimizer, margin, n_negatives, eval_every, patience,
             eval_batch_size, seed (any TrainConfig key; loss stays "hinge")
    [data]   test_frac, valid_frac, seed, min_head_share, min_item_share
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .checkpoint import load_graph_model
from .data.interactions import IdMap
from .data.knowledge import ItemRelations, KnowledgeGraph
from .errors import CheckpointError
from .fileio import atomic_write_bytes
from .models.base import KnowledgeGraphEmbedding
from .models.transe import TransE


# -- filtered link prediction ---------------------------------------------------------------------
class KnownTriples:
    """Every true triple, indexed for the filtered setting: for a query (h, r, ?) the true tails,
    for (?, r, t) the true heads — two sorted key arrays and ``searchsorted``, no Python loop."""

    def __init__(self, triples: np.ndarray, n_entities: int, n_relations: int):
        self.n_entities, self.n_relations = n_entities, n_relations
        tail_key = triples[:, 0] * n_relations + triples[:, 1]             # (h, r) → t
        head_key = triples[:, 1] * n_entities + triples[:, 2]              # (r, t) → h
        o = np.argsort(tail_key, kind="stable")
        self.tail_keys, self.tails = tail_key[o], triples[o, 2]
        o = np.argsort(head_key, kind="stable")
        self.head_keys, self.heads = head_key[o], triples[o, 0]

    @staticmethod
    def _lookup(keys: np.ndarray, values: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, entity) of every known answer of each query key: long [S], long [S]."""
        start, end = np.searchsorted(keys, query, "left"), np.searchsorted(keys, query, "right")
        sizes = end - start
        rows = np.repeat(np.arange(len(query)), sizes)
        offsets = np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        return rows, values[np.repeat(start, sizes) + offsets]

    def known_tails(self, heads: np.ndarray, relations: np.ndarray):
        return self._lookup(self.tail_keys, self.tails, heads * self.n_relations + relations)

    def known_heads(self, relations: np.ndarray, tails: np.ndarray):
        return self._lookup(self.head_keys, self.heads, relations * self.n_entities + tails)

    def answer_counts(self, triples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """How many true tails each (h, r, ?) and true heads each (?, r, t) has: int [N] each."""
        def count(keys, query):
            return np.searchsorted(keys, query, "right") - np.searchsorted(keys, query, "left")
        return (count(self.tail_keys, triples[:, 0] * self.n_relations + triples[:, 1]),
                count(self.head_keys, triples[:, 1] * self.n_entities + triples[:, 2]))


def _filtered_ranks(distances: torch.Tensor, targets: np.ndarray, rows: np.ndarray,
                    known: np.ndarray) -> torch.Tensor:
    """Rank of each target among the entities that are not *other* true answers:
    1 + #{e not filtered : d(e) < d(target)}. distances [B, E] (lower is better)."""
    target_distance = distances.gather(1, torch.as_tensor(targets)[:, None])
    distances = distances.index_put((torch.as_tensor(rows), torch.as_tensor(known)),
                                    torch.tensor(float("inf")))             # every true answer out
    return 1 + (distances < target_distance).sum(1)                          # (the target too: ≥ is not <)


@torch.no_grad()
def link_prediction(model: KnowledgeGraphEmbedding, triples: np.ndarray, known: KnownTriples,
                    batch_size: int = 512, ks=(1, 3, 10)) -> dict:
    """Filtered link prediction (Bordes et al. §4.2): for each test triple, rank its tail among
    all entities for (h, r, ?) and its head for (?, r, t), not counting other true triples.
    Returns MR, MRR and Hits@k over both directions, and the tail / head MRR and Hits@10."""
    model.eval()
    tail_ranks, head_ranks = [], []
    for start in range(0, len(triples), batch_size):
        batch = triples[start:start + batch_size]
        h, r, t = (torch.as_tensor(batch[:, i]) for i in range(3))
        rows, answers = known.known_tails(batch[:, 0], batch[:, 1])
        tail_ranks.append(_filtered_ranks(model.tail_distances(h, r), batch[:, 2], rows, answers))
        rows, answers = known.known_heads(batch[:, 1], batch[:, 2])
        head_ranks.append(_filtered_ranks(model.head_distances(r, t), batch[:, 0], rows, answers))
    tail = torch.cat(tail_ranks).double() if tail_ranks else torch.zeros(0, dtype=torch.float64)
    head = torch.cat(head_ranks).double() if head_ranks else torch.zeros(0, dtype=torch.float64)
    return _rank_metrics(torch.cat([tail, head]), tail, head, ks)


def _rank_metrics(both, tail, head, ks) -> dict:
    if len(both) == 0:
        return {"n_triples": 0}
    out = {"n_triples": len(tail), "MR": both.mean().item(), "MRR": (1 / both).mean().item()}
    out.update({f"Hits@{k}": (both <= k).double().mean().item() for k in ks})
    for side, ranks in (("tail", tail), ("head", head)):
        out[f"{side} MRR"] = (1 / ranks).mean().item()
        out[f"{side} Hits@10"] = (ranks <= 10).double().mean().item()
    return out


def random_ranker(triples: np.ndarray, known: KnownTriples, n_entities: int, ks=(1, 3, 10)) -> dict:
    """The *expected* filtered metrics of a ranker that orders entities at random, exactly: a
    query with c true answers leaves n = E − c + 1 candidates, its rank is uniform on 1..n, so
    E[1/rank] = H_n / n, E[rank] = (n + 1)/2, P(rank ≤ k) = min(k, n)/n."""
    if len(triples) == 0:
        return {"n_triples": 0}
    tails, heads = known.answer_counts(triples)
    n = np.concatenate([n_entities - tails + 1, n_entities - heads + 1]).astype(np.float64)
    harmonic = np.log(n) + 0.5772156649015329 + 1 / (2 * n) - 1 / (12 * n ** 2)   # H_n, error < 1/(120 n⁴)
    out = {"n_triples": len(triples), "MR": float(((n + 1) / 2).mean()), "MRR": float((harmonic / n).mean())}
    out.update({f"Hits@{k}": float((np.minimum(k, n) / n).mean()) for k in ks})
    return out


class LinkPredictionValidator:
    """The trainer's validator for knowledge-graph embeddings (:class:`memrec.training.trainer.
    Validator`): filtered link prediction on the validation triples, reported under the protocol
    ``"link"``; early stopping follows its ``MRR`` (TransE's ``train.valid_metric``).

    The model is scored as the next batch would start from it: a copy with its constraint applied
    (TransE: unit-norm entities); the weights being trained are left alone.
    """

    protocols = ("link",)

    def __init__(self, triples: np.ndarray, known: KnownTriples, batch_size: int = 512):
        self.triples, self.known, self.batch_size = triples, known, batch_size

    def evaluate(self, model: KnowledgeGraphEmbedding) -> dict[str, dict]:
        with torch.no_grad():
            probe = copy.deepcopy(model)
            probe.constrain_()
        return {"link": link_prediction(probe, self.triples, self.known, self.batch_size)}


# -- run folders ---------------------------------------------------------------------------------
def graph_name(path: Path) -> str:
    """The graph's name for results and export files: the ``.kg`` file's stem, else the folder's."""
    if path.is_dir():
        found = sorted(path.glob("*.kg"))
        return found[0].stem if found else path.name
    return path.stem if path.suffix == ".kg" else path.parent.name


def graph_json(graph: KnowledgeGraph, item_relations: ItemRelations) -> dict:
    """``graph.json``: the ids and links :func:`load_transe` rebuilds the graph from (no
    triples), KSR's slots (relation indices, and which are read as r⁻¹) or why there are none."""
    return {"entities": graph.entities.to_json(), "relations": graph.relations.to_json(),
            "link_items": graph.link_items.tolist(), "link_entities": graph.link_entities.tolist(),
            "item_relations": item_relations.index.tolist(),
            "item_relations_inverse": item_relations.inverse.tolist(),
            "item_relations_note": item_relations.why_none}


@dataclass(frozen=True)
class TransEVectors:
    """What a TransE run gives KSR: vectors by index, and the graph's ids and links."""

    entity: torch.Tensor               # [n_entities, d]
    relation: torch.Tensor             # [n_relations, d]
    graph: KnowledgeGraph              # triples empty: only ids and links are stored
    item_relations: ItemRelations      # the relations KSR uses as memory slots, and their direction

    def slot_keys(self) -> torch.Tensor:
        """KSR's memory keys: each slot's relation vector, −r where it reads r⁻¹: [S, d]."""
        signs = torch.as_tensor(self.item_relations.signs())
        return self.relation[torch.as_tensor(self.item_relations.index)] * signs[:, None]

    def slot_names(self) -> list[str]:
        return self.item_relations.names(self.graph.relations)


def load_transe(folder: str | Path) -> TransEVectors:
    """A finished TransE run folder's vectors and graph ids (clear errors when incomplete).

    Reads folders written by :mod:`memrec.checkpoint` and those of the former standalone
    TransE trainer alike (same ``model.json`` keys, ``model.pt`` = ``{"state": ...}``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such TransE run folder (train one with memrec train transe)")
    for name in ("model.json", "graph.json"):
        if not (folder / name).is_file():
            raise CheckpointError(f"{folder / name}: missing (not a finished TransE run?)")
    try:
        name = json.loads((folder / "model.json").read_text()).get("model")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as e:
        raise CheckpointError(f"{folder / 'model.json'}: corrupt JSON ({e})") from None
    if name != "transe":
        raise CheckpointError(f"{folder}: a {name!r} run, not a TransE run folder")
    model = load_graph_model(folder).model
    ids = json.loads((folder / "graph.json").read_text())
    link_items = np.asarray(ids["link_items"])
    graph = KnowledgeGraph(IdMap(np.asarray(ids["entities"], dtype=str)),
                           IdMap(np.asarray(ids["relations"], dtype=str)),
                           np.zeros((0, 3), np.int64),
                           link_items.astype(np.int64) if link_items.dtype.kind in "iu" else link_items.astype(str),
                           np.asarray(ids["link_entities"], dtype=np.int64), {})
    index = np.asarray(ids["item_relations"], dtype=np.int64)
    # folders written before slots knew directions have no "item_relations_inverse": all forward
    inverse = np.asarray(ids.get("item_relations_inverse", [False] * len(index)), dtype=bool)
    slots = ItemRelations(index, inverse, ids.get("item_relations_note", ""))
    return TransEVectors(model.entity.weight.detach().clone(), model.relation.weight.detach().clone(),
                         graph, slots)


def _vector_lines(ids, vectors: np.ndarray, sep: str = " ") -> str:
    return "".join(f"{i}{sep}{' '.join(f'{v:.6g}' for v in row)}\n" for i, row in zip(ids, vectors))


def export_vectors(folder: Path, model: TransE, graph: KnowledgeGraph, item_relations: ItemRelations,
                   name: str) -> None:
    """Write the vectors in our, the official KSR code's, and RecBole's formats (module doc)."""
    entity = model.entity.weight.detach().numpy()
    relation = model.relation.weight.detach().numpy()
    atomic_write_bytes(folder / "entities.txt", _vector_lines(graph.entities.raw, entity).encode())
    atomic_write_bytes(folder / "relations.txt", _vector_lines(graph.relations.raw, relation).encode())
    atomic_write_bytes(folder / "item_entities.txt",
                       _vector_lines(graph.link_items, entity[graph.link_entities]).encode())
    slot_keys = relation[item_relations.index] * item_relations.signs()[:, None]   # −r for r⁻¹
    atomic_write_bytes(folder / "r_matrix.txt",
                       "".join(" ".join(f"{v:.6g}" for v in row) + "\n" for row in slot_keys).encode())
    # RecBole atomic feature files: a token id and a space-separated float sequence per line
    atomic_write_bytes(folder / f"{name}.ent_feature",
                       ("ent_id:token\tent_vec:float_seq\n" + _vector_lines(graph.entities.raw, entity, "\t")).encode())
    atomic_write_bytes(folder / f"{name}.rel_feature",
                       ("rel_id:token\trel_vec:float_seq\n" + _vector_lines(graph.relations.raw, relation, "\t")).encode())


__all__ = ["KnownTriples", "link_prediction", "random_ranker", "LinkPredictionValidator",
           "graph_name", "graph_json", "load_transe", "TransEVectors", "export_vectors"]
