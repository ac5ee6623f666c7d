"""TransE run folders: ``memrec train transe --data KG --out RUN``, end to end.

Reads a knowledge graph (:class:`~memrec.data.knowledge.KnowledgeGraph`), splits its triples
into train / valid / test, trains :class:`~memrec.models.transe.TransE` with the margin ranking
loss, keeps the epoch with the best filtered validation MRR, reports filtered link prediction
on the test triples (and what a random ranker would get), and exports the vectors.

A TransE run folder holds:

* ``run.json`` — config and data source; ``graph.json`` — entity / relation ids, item links
  and the relations KSR keeps as memory slots (``item_relations``);
* ``model.json`` + ``model.pt`` — the trained model (tensors only, ``weights_only`` loading);
  ``checkpoint.pt`` and ``log.jsonl`` — per epoch, so ``--resume`` continues an interrupted run;
* ``results.json`` — link prediction metrics (test, valid, random ranker);
* ``export/`` — the vectors: ``entities.txt`` / ``relations.txt`` (``raw_id v1 … vd``),
  ``item_entities.txt`` and ``r_matrix.txt`` (the official KSR code's ``KBItemEmbedding`` and
  relation-matrix inputs), and RecBole's ``<name>.ent_feature`` / ``<name>.rel_feature`` atomic
  files (``ent_id:token  ent_vec:float_seq``) for its ``preload_weight`` option.

Every file is written atomically. Config (TOML; every key checked)::

    [model]  name = "transe", dim, norm
    [train]  epochs, batch_size, lr, optimizer, margin, n_negatives, eval_every, patience,
             eval_batch_size, seed
    [data]   test_frac, valid_frac, seed, min_head_share, min_item_share
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .errors import CheckpointError, ConfigError, DataError
from .data.knowledge import KnowledgeGraph
from .fileio import atomic_torch_save, atomic_write_bytes, atomic_write_json, safe_torch_load
from .losses import hinge
from .models.transe import TransE, corrupt
from .training.config import TrainConfig, typed_section, read_tables
from .training.trainer import deterministic_algorithms, echo_stderr, make_optimizer

FORMAT_VERSION = 1


# -- configuration --------------------------------------------------------------------------------
@dataclass(frozen=True)
class TransEModelConfig:
    dim: int = 64
    norm: int = 1                      # 1 | 2: the energy's ‖·‖_p


@dataclass(frozen=True)
class TransETrainConfig:
    epochs: int = 100
    batch_size: int = 1024
    lr: float = 1e-3
    optimizer: str = "adam"            # adam | sgd | adagrad | rmsprop
    margin: float = 1.0                # γ of the margin ranking loss
    n_negatives: int = 1               # corrupted triples per true triple
    eval_every: int = 10
    patience: int = 3                  # evaluations without valid MRR gain before stopping; 0 = never
    eval_batch_size: int = 512
    seed: int = 0


@dataclass(frozen=True)
class TransEDataConfig:
    test_frac: float = 0.05
    valid_frac: float = 0.05
    seed: int = 0
    min_head_share: float = 0.5        # KSR relation restriction (KnowledgeGraph.item_relations)
    min_item_share: float = 0.01


@dataclass(frozen=True)
class TransEConfig:
    model: TransEModelConfig = field(default_factory=TransEModelConfig)
    train: TransETrainConfig = field(default_factory=TransETrainConfig)
    data: TransEDataConfig = field(default_factory=TransEDataConfig)

    def __post_init__(self):
        if self.model.norm not in (1, 2):
            raise ConfigError(f"model.norm must be 1 or 2, got {self.model.norm}")
        if self.model.dim < 1:
            raise ConfigError(f"model.dim must be positive, got {self.model.dim}")
        if self.train.optimizer not in ("adam", "sgd", "adagrad", "rmsprop"):
            raise ConfigError(f"train.optimizer = {self.train.optimizer!r}; choose from adam, sgd, adagrad, rmsprop")
        for name in ("batch_size", "n_negatives", "eval_every", "eval_batch_size"):
            if getattr(self.train, name) < 1:
                raise ConfigError(f"train.{name} must be positive, got {getattr(self.train, name)}")
        if self.train.epochs < 0 or self.train.lr <= 0 or self.train.margin < 0:
            raise ConfigError("train.epochs must be >= 0, train.lr > 0 and train.margin >= 0")
        fracs = (self.data.test_frac, self.data.valid_frac)
        if min(fracs) < 0 or sum(fracs) >= 1:
            raise ConfigError(f"data.test_frac and data.valid_frac must be >= 0 with a sum below 1, got {fracs}")

    def to_json(self) -> dict:
        return {"model": {"name": "transe", **asdict(self.model)}, "train": asdict(self.train),
                "data": asdict(self.data)}


def load_transe_config(path: str | Path | None = None, overrides=(), **train_overrides) -> TransEConfig:
    """Config file ← ``--set`` overrides ← explicit flags (``epochs=``, ``seed=``)."""
    tables = read_tables(path, overrides)
    name = tables["model"].pop("name", "transe")
    if name != "transe":
        raise ConfigError(f"this is a TransE run but the config names model {name!r}")
    tables["train"].update({k: v for k, v in train_overrides.items() if v is not None})
    return TransEConfig(typed_section(TransEModelConfig, "model", tables["model"]),
                        typed_section(TransETrainConfig, "train", tables["train"]),
                        typed_section(TransEDataConfig, "data", tables["data"]))


# -- triple split -----------------------------------------------------------------------------
def split_triples(triples: np.ndarray, n_entities: int, n_relations: int, *, test_frac: float,
                  valid_frac: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random (train, valid, test) triples. A held-out triple whose head, tail or relation does
    not occur in the training triples moves to train (nothing could place it); one pass suffices,
    since moving a triple only adds to what train covers."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(triples))
    n_test, n_valid = int(round(test_frac * len(triples))), int(round(valid_frac * len(triples)))
    part = np.zeros(len(triples), np.int8)
    part[order[:n_test]] = 2
    part[order[n_test:n_test + n_valid]] = 1
    train = triples[part == 0]
    seen_entity = np.zeros(n_entities, bool)
    seen_entity[train[:, 0]] = seen_entity[train[:, 2]] = True
    seen_relation = np.zeros(n_relations, bool)
    seen_relation[train[:, 1]] = True
    covered = seen_entity[triples[:, 0]] & seen_entity[triples[:, 2]] & seen_relation[triples[:, 1]]
    part[~covered] = 0
    return triples[part == 0], triples[part == 1], triples[part == 2]


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
def link_prediction(model: TransE, triples: np.ndarray, known: KnownTriples,
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


# -- training -----------------------------------------------------------------------------------
def _epoch(model: TransE, optimizer, train: torch.Tensor, cfg: TransETrainConfig,
           generator: torch.Generator) -> float:
    model.train()
    order = torch.randperm(len(train), generator=generator)
    total = 0.0
    for start in range(0, len(train), cfg.batch_size):
        batch = train[order[start:start + cfg.batch_size]]
        model.normalize_entities_()                                     # Algorithm 1, line 5
        negatives = corrupt(batch, model.n_entities, cfg.n_negatives, generator)
        positive = model.distance(batch[:, 0], batch[:, 1], batch[:, 2])
        negative = model.distance(negatives[..., 0], negatives[..., 1], negatives[..., 2])
        loss = hinge(-positive, -negative, margin=cfg.margin)           # max(0, γ + d − d'), eq. (1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(batch)
    return total / max(len(train), 1)


def fit_transe(model: TransE, train: np.ndarray, valid: np.ndarray, known: KnownTriples,
               cfg: TransETrainConfig, *, run_dir: Path | None = None, resume: bool = False,
               echo=echo_stderr) -> dict:
    """Train, validating filtered MRR every ``eval_every`` epochs; restores the best epoch's
    weights (the last when there is no validation), normalises the entities once more (the
    state every batch started from) and returns the training state (epochs, history)."""
    optimizer = make_optimizer(TrainConfig(optimizer=cfg.optimizer, lr=cfg.lr),
                               [{"params": list(model.parameters()), "weight_decay": 0.0}])
    generator = torch.Generator().manual_seed(cfg.seed)
    state = {"epoch": 0, "best_mrr": -math.inf, "best_epoch": 0, "bad": 0, "history": [], "seconds": 0.0}
    best = None
    if resume:
        state, best = _restore(run_dir, model, optimizer, generator, echo)
    train_t = torch.as_tensor(train, dtype=torch.long)
    with deterministic_algorithms(True):
        for epoch in range(state["epoch"] + 1, cfg.epochs + 1):
            start = time.perf_counter()
            loss = _epoch(model, optimizer, train_t, cfg, generator)
            seconds = time.perf_counter() - start
            record = {"epoch": epoch, "loss": loss, "seconds": seconds}
            state["seconds"] += seconds
            text = f"epoch {epoch}/{cfg.epochs}  loss {loss:.4f}  {seconds:.1f}s"
            if len(valid) and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs):
                with torch.no_grad():
                    probe = copy.deepcopy(model)
                    probe.normalize_entities_()
                record["valid"] = link_prediction(probe, valid, known, cfg.eval_batch_size)
                text += f"  valid filtered MRR {record['valid']['MRR']:.4f}  Hits@10 {record['valid']['Hits@10']:.4f}"
                if record["valid"]["MRR"] > state["best_mrr"]:
                    state.update(best_mrr=record["valid"]["MRR"], best_epoch=epoch, bad=0)
                    best = copy.deepcopy(model.state_dict())
                    text += "  *best"
                else:
                    state["bad"] += 1
            elif not len(valid):
                state["best_epoch"] = epoch
            state["history"].append(record)
            state["epoch"] = epoch
            if run_dir is not None:
                _checkpoint(run_dir, model, optimizer, generator, state, best)
            echo(text)
            if cfg.patience > 0 and state["bad"] >= cfg.patience:
                echo(f"early stop: no valid MRR gain in {cfg.patience} evaluations; best epoch {state['best_epoch']}")
                break
    if best is not None:
        model.load_state_dict(best)
    model.normalize_entities_()
    model.eval()
    return state


def _checkpoint(run_dir: Path, model, optimizer, generator, state, best) -> None:
    atomic_torch_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                       "generator": generator.get_state(), "best_state": best or {},
                       "counters": json.dumps(state)}, run_dir / "checkpoint.pt")
    atomic_write_bytes(run_dir / "log.jsonl", "".join(json.dumps(r) + "\n" for r in state["history"]).encode())


def _restore(run_dir: Path | None, model, optimizer, generator, echo):
    if run_dir is None:
        raise CheckpointError("--resume needs a run folder")
    blob = safe_torch_load(run_dir / "checkpoint.pt")
    try:
        model.load_state_dict(blob["model"])
        optimizer.load_state_dict(blob["optimizer"])
        generator.set_state(blob["generator"])
        state = json.loads(blob["counters"])
    except (KeyError, RuntimeError, ValueError) as e:
        raise CheckpointError(f"{run_dir / 'checkpoint.pt'}: does not match this model and config ({e})") from None
    echo(f"resuming after epoch {state['epoch']}")
    return state, (blob["best_state"] or None)


# -- run folders --------------------------------------------------------------------------------
def train_transe_run(config: TransEConfig, data_path: str | Path, out: str | Path, *,
                     resume: bool = False, echo=None) -> dict:
    """Train TransE on the knowledge graph at ``data_path``, test it, save and export to ``out``."""
    echo = echo or echo_stderr
    out = Path(out)
    if resume:
        if not (out / "run.json").is_file():
            raise CheckpointError(f"{out}: nothing to resume (no run.json)")
        config = _config_from_json(json.loads((out / "run.json").read_text())["config"])
        data_path = json.loads((out / "run.json").read_text())["data_path"]
    elif out.exists() and any(out.iterdir()):
        raise DataError(f"{out} already exists and is not empty; choose another --out, "
                        "or --resume to continue that run")
    graph = KnowledgeGraph.load(data_path)
    d = config.data
    train, valid, test = split_triples(graph.triples, graph.n_entities, graph.n_relations,
                                       test_frac=d.test_frac, valid_frac=d.valid_frac, seed=d.seed)
    known = KnownTriples(graph.triples, graph.n_entities, graph.n_relations)
    item_relations = (graph.item_relations(d.min_head_share, d.min_item_share)
                      if len(graph.link_entities) else np.zeros(0, np.int64))
    name = _graph_name(Path(data_path))
    if not resume:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "run.json", {"data": name, "data_path": str(Path(data_path).resolve()),
                                             "config": config.to_json()})
        atomic_write_json(out / "graph.json", _graph_json(graph, item_relations))
    echo(f"{name}: {graph.n_entities:,} entities, {graph.n_relations} relations, "
         f"{len(graph):,} triples ({len(train):,} train / {len(valid):,} valid / {len(test):,} test), "
         f"{len(graph.link_items):,} linked items, {len(item_relations)} item relations")
    torch.manual_seed(config.train.seed)
    model = TransE(graph.n_entities, graph.n_relations, dim=config.model.dim, norm=config.model.norm)
    state = fit_transe(model, train, valid, known, config.train, run_dir=out, resume=resume, echo=echo)
    save_transe(out, model, config)
    export_vectors(out / "export", model, graph, item_relations, name)
    results = {"model": "transe", "data": name, "best_epoch": state["best_epoch"],
               "train_seconds": state["seconds"],
               "seconds_per_epoch": state["seconds"] / max(len(state["history"]), 1),
               "graph": graph.describe(), "split": {"train": len(train), "valid": len(valid), "test": len(test)},
               "item_relations": graph.relations.raw[item_relations].tolist(),
               "test": link_prediction(model, test, known, config.train.eval_batch_size),
               "valid": link_prediction(model, valid, known, config.train.eval_batch_size),
               "random_ranker_test": random_ranker(test, known, graph.n_entities)}
    atomic_write_json(out / "results.json", results)
    return results


def _graph_name(path: Path) -> str:
    if path.is_dir():
        found = sorted(path.glob("*.kg"))
        return found[0].stem if found else path.name
    return path.stem if path.suffix == ".kg" else path.parent.name


def _config_from_json(blob: dict) -> TransEConfig:
    model = dict(blob["model"])
    model.pop("name", None)
    return TransEConfig(TransEModelConfig(**model), TransETrainConfig(**blob["train"]),
                        TransEDataConfig(**blob["data"]))


def _graph_json(graph: KnowledgeGraph, item_relations: np.ndarray) -> dict:
    return {"entities": graph.entities.to_json(), "relations": graph.relations.to_json(),
            "link_items": graph.link_items.tolist(), "link_entities": graph.link_entities.tolist(),
            "item_relations": item_relations.tolist()}


def save_transe(folder: Path, model: TransE, config: TransEConfig) -> None:
    atomic_torch_save({"state": model.state_dict()}, folder / "model.pt")
    atomic_write_json(folder / "model.json", {"format_version": FORMAT_VERSION, "model": "transe",
                                              "n_entities": model.n_entities,
                                              "n_relations": model.n_relations,
                                              "params": asdict(config.model)})


@dataclass(frozen=True)
class TransEVectors:
    """What a TransE run gives KSR: vectors by index, and the graph's ids and links."""

    entity: torch.Tensor               # [n_entities, d]
    relation: torch.Tensor             # [n_relations, d]
    graph: KnowledgeGraph              # triples empty: only ids and links are stored
    item_relations: np.ndarray         # relation indices KSR uses as memory slots


def load_transe(folder: str | Path) -> TransEVectors:
    """A finished TransE run folder's model and graph ids (clear errors when incomplete)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such TransE run folder (train one with memrec train transe)")
    for name in ("model.json", "graph.json"):
        if not (folder / name).is_file():
            raise CheckpointError(f"{folder / name}: missing (not a finished TransE run?)")
    meta = json.loads((folder / "model.json").read_text())
    if meta.get("model") != "transe" or meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{folder}: not a TransE run folder of format {FORMAT_VERSION}")
    model = TransE(meta["n_entities"], meta["n_relations"], **meta["params"])
    try:
        model.load_state_dict(safe_torch_load(folder / "model.pt")["state"])
    except (KeyError, RuntimeError) as e:
        raise CheckpointError(f"{folder}: model.pt does not match model.json ({e})") from None
    ids = json.loads((folder / "graph.json").read_text())
    from .data.interactions import IdMap
    link_items = np.asarray(ids["link_items"])
    graph = KnowledgeGraph(IdMap(np.asarray(ids["entities"], dtype=str)),
                           IdMap(np.asarray(ids["relations"], dtype=str)),
                           np.zeros((0, 3), np.int64),
                           link_items.astype(np.int64) if link_items.dtype.kind in "iu" else link_items.astype(str),
                           np.asarray(ids["link_entities"], dtype=np.int64), {})
    return TransEVectors(model.entity.weight.detach().clone(), model.relation.weight.detach().clone(),
                         graph, np.asarray(ids["item_relations"], dtype=np.int64))


def _vector_lines(ids, vectors: np.ndarray, sep: str = " ") -> str:
    return "".join(f"{i}{sep}{' '.join(f'{v:.6g}' for v in row)}\n" for i, row in zip(ids, vectors))


def export_vectors(folder: Path, model: TransE, graph: KnowledgeGraph, item_relations: np.ndarray,
                   name: str) -> None:
    """Write the vectors in our, the official KSR code's, and RecBole's formats (module doc)."""
    entity = model.entity.weight.detach().numpy()
    relation = model.relation.weight.detach().numpy()
    atomic_write_bytes(folder / "entities.txt", _vector_lines(graph.entities.raw, entity).encode())
    atomic_write_bytes(folder / "relations.txt", _vector_lines(graph.relations.raw, relation).encode())
    atomic_write_bytes(folder / "item_entities.txt",
                       _vector_lines(graph.link_items, entity[graph.link_entities]).encode())
    atomic_write_bytes(folder / "r_matrix.txt",
                       "".join(" ".join(f"{v:.6g}" for v in row) + "\n" for row in relation[item_relations]).encode())
    # RecBole atomic feature files: a token id and a space-separated float sequence per line
    atomic_write_bytes(folder / f"{name}.ent_feature",
                       ("ent_id:token\tent_vec:float_seq\n" + _vector_lines(graph.entities.raw, entity, "\t")).encode())
    atomic_write_bytes(folder / f"{name}.rel_feature",
                       ("rel_id:token\trel_vec:float_seq\n" + _vector_lines(graph.relations.raw, relation, "\t")).encode())


__all__ = ["TransEConfig", "load_transe_config", "split_triples", "KnownTriples", "link_prediction",
           "random_ranker", "fit_transe", "train_transe_run", "load_transe", "TransEVectors",
           "export_vectors"]
