"""Run folders: what ``memrec train`` and ``memrec evaluate`` do, end to end.

A run folder holds ``run.json`` (config, data source), ``split.npz`` (the exact split, with its
fixed negatives), the saved model (``model.json``, ``model.pt``, ``ids.json``), the trainer's
``checkpoint.pt``, ``log.jsonl`` (a line per epoch of every stage) and ``curves.png`` (the last
two, and ``tensorboard/`` with ``train.tensorboard``, from :mod:`memrec.training.callbacks`), and
``results.json``. A new run refuses an existing folder (nothing a user had is overwritten);
``resume=True`` continues one. Reading, filtering, splitting and fixing negatives each say on
stderr what they are doing and, when done, what they made in how long.

Two seeds, recorded in ``results.json`` as ``seeds``: ``train`` (``train.seed``, ``--seed``)
drives initialisation, batch order and negatives; ``data`` (``data.seed``, set only in the
config or with ``--set data.seed=``) made the split and its fixed negatives, so a seed study
with ``--seed`` trains on the same data every time.

A knowledge-graph embedding (``transe``; ``ModelSpec.data == "knowledge_graph"``) runs through
the same :func:`train_run`, which hands it to :func:`train_graph_run`: the graph's triples are
split at random, the shared trainer fits the model on the training triples with
:class:`~memrec.training.triples.TripleTask` and validates filtered link prediction, and the folder
gets the model, ``graph.json``, link-prediction ``results.json`` and the vector exports
(layout in :mod:`memrec.knowledge_runs`).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np

from . import distributed
from .checkpoint import load_model, save_graph_model
from .data.interactions import IdMap
from .errors import CheckpointError, ConfigError, DataError
from .data.knowledge import KnowledgeGraph, split_triples
from .data.preprocess import preprocess
from .data.readers import load as load_dataset
from .data.split_io import load_split, save_split
from .data.splits import (Split, carve_session_validation, carve_validation, fixes_negatives,
                          make_split, sample_negatives)
from .evaluation import Evaluator
from .fileio import atomic_write_json
from .knowledge_runs import (KnownTriples, LinkPredictionValidator, export_vectors, graph_json,
                             graph_name, link_prediction, random_ranker)
from .ksr_knowledge import check_transe_source, with_transe_vectors
from .devices import resolve_device
from .models import build, build_graph_model, spec
from .progress import echo_stderr, timed_step
from .recommender import Recommender
from .training.callbacks import require_tensorboard
from .training.config import DataConfig, RunConfig
from .training.trainer import TrainResult, Trainer, check_data_parallel, seed_everything
from .training.triples import TripleTask

SPLIT_OPTIONS = {"loo": (), "temporal": ("test_frac", "valid_frac"),
                 "random": ("test_frac", "valid_frac"), "session": ("test_frac", "valid_frac")}


def prepare_split(data_path: str | Path, cfg: DataConfig, echo=None) -> tuple[str, Split]:
    """Read, filter and split a dataset as the ``[data]`` config says. Returns (name, split).
    Each step says on ``echo`` (stderr by default) when it starts and what it made in how long."""
    echo = echo or echo_stderr
    dataset = timed_step(echo, f"loading {data_path}", lambda: load_dataset(data_path, cfg.format or None),
                         _read_text)
    for note in dataset.notes:            # what the reader decided (e.g. label-0 rows set apart)
        echo(f"note: {note}")
    wants_given = cfg.split in ("auto", "given")
    if dataset.given_split is not None and wants_given:
        if cfg.threshold or cfg.user_k or cfg.item_k or cfg.duplicates != "keep":
            raise DataError("this dataset ships its own split; filtering options would change "
                            "it (drop them, or choose another --split)")
        split = dataset.given_split
        echo(f"using the split the dataset ships: {_split_text(split)}")
        if cfg.valid_from_train and split.test_cases is not None:
            split = timed_step(echo, "carving validation sessions from train",
                               lambda: carve_session_validation(split, valid_frac=cfg.valid_frac),
                               _split_text)
        elif cfg.valid_from_train and split.valid is None:
            split = timed_step(echo, "carving a validation part from train (one row per user)",
                               lambda: carve_validation(split, seed=cfg.seed, n_negatives=cfg.n_negatives),
                               _split_text)
        return dataset.name, split
    if cfg.split == "given":
        raise DataError(f"{data_path} carries no split of its own; choose loo, temporal, random or session")
    interactions = linked_items_only(dataset) if cfg.linked_only else dataset.interactions
    data = _filtered(interactions, cfg, echo)
    _note_repeats(data, cfg, echo)
    kind = "loo" if cfg.split == "auto" else cfg.split
    options = {k: getattr(cfg, k) for k in SPLIT_OPTIONS.get(kind, ())}
    # split, then fix the negatives (make_split would do both): two steps, each timed
    split = timed_step(echo, f"splitting ({kind})",
                       lambda: make_split(data, kind, seed=cfg.seed, n_negatives=0, **options), _split_text)
    if fixes_negatives(kind, cfg.n_negatives):
        split = timed_step(echo, f"sampling {cfg.n_negatives} negatives per evaluated user",
                           lambda: sample_negatives(split, cfg.n_negatives, seed=cfg.seed), _negatives_text)
    return dataset.name, split


def _filtered(interactions, cfg: DataConfig, echo) -> "Interactions":
    """The interactions :func:`preprocess` keeps (a timed step when a filter is set: k-cores on a
    large log take a while; re-indexing alone is quick and said nothing about)."""
    filters = [text for text, on in ((f"rating >= {cfg.threshold:g}", cfg.threshold),
                                     (f"{cfg.user_k}-core users", cfg.user_k > 1),
                                     (f"{cfg.item_k}-core items", cfg.item_k > 1),
                                     (f"duplicates: {cfg.duplicates}", cfg.duplicates != "keep")) if on]

    def run():
        return preprocess(interactions, threshold=cfg.threshold or None, user_k=cfg.user_k,
                          item_k=cfg.item_k, duplicates=cfg.duplicates)
    if not filters:
        return run()
    return timed_step(echo, f"filtering ({', '.join(filters)})", run,
                      lambda data: f"kept {len(data):,} of {len(interactions):,} interactions")


def _read_text(dataset) -> str:
    data = dataset.interactions
    return (f"read {dataset.name}: {len(data):,} interactions, {data.n_users:,} users, "
            f"{data.n_items:,} items")


def _split_text(split: Split) -> str:
    parts = [f"{name} {len(part):,}" for name, part in
             (("train", split.train), ("valid", split.valid), ("test", split.test))
             if part is not None and len(part)]             # a session split tests on cases
    cases = [f"{name} {len(c):,}" for name, c in (("valid", split.valid_cases), ("test", split.test_cases))
             if c is not None]
    return (f"{split.kind} split: " + " / ".join(parts) + " interactions"
            + (f" ({' / '.join(cases)} next-item cases)" if cases else ""))


def _negatives_text(split: Split) -> str:
    counts = [f"{len(c.users):,} {name}" for name, c in (("valid", split.valid_negatives),
                                                          ("test", split.test_negatives)) if c is not None]
    return f"fixed negatives for {' and '.join(counts)} users"


def _note_repeats(data, cfg: DataConfig, echo) -> None:
    """Say when kept interactions repeat a user-item pair (sessions re-click by nature)."""
    if cfg.duplicates != "keep" or data.session is not None or len(data) == 0:
        return
    repeats = data.describe()["repeated_pairs"]
    if repeats:
        echo(f"note: {repeats:,} interactions repeat a user-item pair and are kept "
             "(data.duplicates = keep; first, last or error are the alternatives)")


def linked_items_only(dataset) -> "Interactions":
    """The dataset's interactions on items its knowledge graph links to an entity
    (``data.linked_only``: KGCN and KSR keep only linked items)."""
    import numpy as np

    from .data.knowledge import KnowledgeGraph
    if "kg" not in dataset.extras or "link" not in dataset.extras:
        raise DataError(f"data.linked_only: {dataset.name} has no knowledge graph with item links")
    graph = KnowledgeGraph.from_frames(dataset.extras["kg"], dataset.extras["link"])
    data = dataset.interactions
    linked = graph.item_entities(data.items) >= 0
    kept = data.take(np.flatnonzero(linked[data.item]))
    if len(kept) == 0:
        raise DataError(f"data.linked_only: no interaction of {dataset.name} is on a linked item")
    return kept


def check_new_run_dir(out: Path, resume: bool) -> None:
    """A new run needs an empty or absent ``out``; a resume, one with ``run.json``."""
    if resume:
        if not (out / "run.json").is_file():
            raise CheckpointError(f"{out}: nothing to resume (no run.json)")
    elif out.exists() and any(out.iterdir()):
        raise DataError(f"{out} already exists and is not empty; choose another --out, "
                        "or --resume to continue that run")


def train_run(config: RunConfig, data_path: str | Path, out: str | Path, *, resume: bool = False,
              progress: bool | None = None, echo=None) -> dict:
    """Train, save, test; returns the ``results.json`` content. A knowledge-graph model trains
    on the graph at ``data_path`` (:func:`train_graph_run`)."""
    if config.train.tensorboard:
        require_tensorboard()             # before any data is read: an error costs no time
    world = distributed.current()
    check_distributed(config, world)
    if spec(config.model).data == "knowledge_graph":
        return train_graph_run(config, data_path, out, resume=resume, progress=progress, echo=echo)
    out = Path(out)
    check_new_run_dir(out, resume)
    distributed.barrier(world)        # every rank has checked --out before rank 0 creates it
    resolve_device(config.train.device)
    build(config.model, 2, 2, config.model_params)   # the constructor's option checks, before the data
    data_seed = config.data.seed
    if resume:
        ids = load_ids(out)
        split = timed_step(echo or echo_stderr, f"loading the run's split ({out / 'split.npz'})",
                           lambda: load_split(out / "split.npz", *ids), _split_text)
        run = _read_run(out)
        data_name = run["data"]
        data_seed = run.get("config", {}).get("data", {}).get("seed", data_seed)   # made the split
    else:
        data_name, split = prepare_split(data_path, config.data, echo)
        check_transe_source(config, data_path, out)     # KSR: a graph without slots fails before any write
        if world.is_main:
            start_run_dir(out, split, data_name, data_path, config)
    model_config = _with_transe_vectors(config, data_path, out, echo, world)
    rec = Recommender.from_config(model_config)
    rec.fit_split(split, run_dir=out, resume=resume, progress=progress, echo=echo)
    if world.is_main:
        rec.save(out)
    results = run_results(rec.model_, split, config, rec.result_, data_name=data_name, data_seed=data_seed,
                           world_size=world.size, progress=progress)
    if world.is_main:
        atomic_write_json(out / "results.json", results)
    return results


def run_results(model, split: Split, config: RunConfig, fit: TrainResult, *, data_name: str, data_seed: int,
                 world_size: int = 1, progress: bool | None = None) -> dict:
    """A trained run's ``results.json`` content: ``model`` tested on ``split`` by the protocols
    ``train.test_protocols`` names, beside what ``fit`` (its training) recorded."""
    protocols = (None if config.train.test_protocols.strip() == "auto"
                 else tuple(p.strip() for p in config.train.test_protocols.split(",")))
    metrics, eval_seconds = evaluate_split(model, split, protocols, config.train.eval_batch_size,
                                           progress=progress)
    return {"model": config.model, "data": data_name, "split": split.kind,
            "params": config.model_params,
            "seeds": {"train": config.train.seed, "data": data_seed},
            "world_size": world_size,
            "best_epoch": fit.best_epoch,
            "refit_epochs": fit.refit_epochs,
            "train_seconds": fit.train_seconds, "eval_seconds": eval_seconds,
            "metrics": metrics}


def check_distributed(config: RunConfig, world: distributed.World) -> None:
    """Whether ``config``'s model trains data-parallel on ``world`` (before any data is read)."""
    if not world.distributed:
        return
    if spec(config.model).data == "knowledge_graph":
        raise ConfigError(f"{config.model} trains on a knowledge graph in one process (minutes); "
                          "leave out --nproc / torchrun")
    check_data_parallel(build(config.model, 2, 2, config.model_params), world,
                        resolve_device(config.train.device))


def start_run_dir(out: Path, split: Split, data_name: str, data_path, config: RunConfig) -> None:
    """A new run folder: the split, its id maps and ``run.json`` (what a resume reads)."""
    out.mkdir(parents=True, exist_ok=True)
    save_split(out / "split.npz", split)
    atomic_write_json(out / "ids.json", {"users": split.train.users.to_json(),
                                         "items": split.train.items.to_json()})
    atomic_write_json(out / "run.json", {"data": data_name, "data_path": str(Path(data_path).resolve()),
                                         "config": config.to_json()})


def _with_transe_vectors(config: RunConfig, data_path, out: Path, echo, world) -> RunConfig:
    """KSR: TransE vectors of the dataset's graph, trained or reused into out/transe (not recorded
    in run.json: a resume finds them again by content hash). In a distributed run rank 0 trains
    them by itself; the other ranks then reuse its folder."""
    def vectors() -> RunConfig:
        return with_transe_vectors(config, data_path, out, echo=echo or echo_stderr,
                                   train_graph=train_graph_run)
    if not world.distributed:
        return vectors()
    if world.is_main:
        with distributed.alone():
            model_config = vectors()
    distributed.barrier(world)
    return model_config if world.is_main else vectors()


#: the ``[data]`` keys a knowledge-graph run reads; the others describe interaction data
GRAPH_DATA_KEYS = ("test_frac", "valid_frac", "seed", "min_head_share", "min_item_share")


def _check_graph_config(config: RunConfig) -> None:
    """Refuse settings a triple run would silently ignore (``--split loo``, ``train.refit``)."""
    default = DataConfig()
    unused = [f"data.{f.name}" for f in fields(DataConfig) if f.name not in GRAPH_DATA_KEYS
              and getattr(config.data, f.name) != getattr(default, f.name)]
    unused += [f"train.{key}" for key, off in (("refit", False), ("pretrain_epochs", 0))
               if getattr(config.train, key) != off]
    if unused:
        raise ConfigError(f"{', '.join(unused)} do not apply to {config.model} (it trains on a "
                          "knowledge graph's triples, split at random by data.test_frac / "
                          "data.valid_frac)")


def train_graph_run(config: RunConfig, data_path: str | Path, out: str | Path, *,
                    resume: bool = False, progress: bool | None = None, echo=None) -> dict:
    """Train a knowledge-graph embedding on the graph at ``data_path``, test link prediction on
    held-out triples, save and export to ``out``; returns the ``results.json`` content.

    The trainer keeps the epoch with the best filtered validation MRR (the last one without
    validation triples); the kept model gets its constraint once more (TransE: unit-norm
    entities, the state every batch started from) before it is saved, tested and exported.
    On ``resume`` the graph and its split are the run's (``run.json``: data path and ``[data]``);
    model and training settings come from ``config``, as for every model.
    """
    echo = echo or echo_stderr
    out = Path(out)
    _check_graph_config(config)
    check_new_run_dir(out, resume)
    data_cfg = config.data
    if resume:
        run = _read_run(out)
        data_path = run["data_path"]
        data_cfg = DataConfig(**{**asdict(DataConfig()), **run["config"]["data"]})
    graph = timed_step(echo, f"loading the knowledge graph {data_path}",
                       lambda: KnowledgeGraph.load(data_path), lambda graph: f"read {len(graph):,} triples")
    train, valid, test = split_triples(graph.triples, graph.n_entities, graph.n_relations,
                                       test_frac=data_cfg.test_frac, valid_frac=data_cfg.valid_frac,
                                       seed=data_cfg.seed)
    known = KnownTriples(graph.triples, graph.n_entities, graph.n_relations)
    item_relations = graph.item_relations(data_cfg.min_head_share, data_cfg.min_item_share)
    name = graph_name(Path(data_path))
    seed_everything(config.train.seed)
    # model and task first: a bad setting is an error before anything is written
    model = build_graph_model(config.model, graph.n_entities, graph.n_relations, config.model_params)
    task = TripleTask(train, graph.n_entities, config.train)
    if not resume:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "run.json", {"data": name, "data_path": str(Path(data_path).resolve()),
                                             "config": config.to_json()})
        atomic_write_json(out / "graph.json", graph_json(graph, item_relations))
    echo(f"{name}: {graph.n_entities:,} entities, {graph.n_relations} relations, "
         f"{len(graph):,} triples ({len(train):,} train / {len(valid):,} valid / {len(test):,} test), "
         f"{len(graph.link_items):,} linked items, {len(item_relations)} item relations")
    validator = (LinkPredictionValidator(valid, known, config.train.eval_batch_size)
                 if len(valid) else None)
    result = Trainer(config.train, run_dir=out, progress=progress, echo=echo).fit(
        model, resume=resume, task=task, validator=validator)
    model.constrain_()
    save_graph_model(out, name=config.model, params=config.model_params, model=model)
    export_vectors(out / "export", model, graph, item_relations, name)
    batch = config.train.eval_batch_size
    results = {"model": config.model, "data": name, "params": config.model_params,
               "best_epoch": result.best_epoch, "train_seconds": result.train_seconds,
               "seconds_per_epoch": result.train_seconds / max(len(result.history), 1),
               "graph": graph.describe(), "split": {"train": len(train), "valid": len(valid), "test": len(test)},
               "item_relations": item_relations.names(graph.relations),
               "test": link_prediction(model, test, known, batch),
               "valid": link_prediction(model, valid, known, batch),
               "random_ranker_test": random_ranker(test, known, graph.n_entities)}
    atomic_write_json(out / "results.json", results)
    return results


def evaluate_split(model, split: Split, protocols=None, batch_size: int = 1024, *,
                   progress: bool | None = False) -> tuple[dict, float]:
    """Test metrics of ``protocols`` (None: every protocol the split can run), beyond-accuracy
    ones included, and seconds. ``progress``: a bar over the requests (None: on a terminal)."""
    start = time.perf_counter()
    metrics = Evaluator(split, "test", protocols=protocols, batch_size=batch_size,
                        progress=progress).evaluate(model)
    return metrics, time.perf_counter() - start


def recorded_config(out: str | Path) -> RunConfig:
    """The configuration a run was started with (its ``run.json``): what ``--resume`` continues."""
    check_new_run_dir(Path(out), resume=True)
    run = _read_run(Path(out))
    try:
        return RunConfig.from_json(run["config"])
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"{Path(out) / 'run.json'}: no readable configuration ({e})") from None


def recorded_run(run_dir: str | Path) -> dict:
    """A run's ``run.json`` (data name and path, configuration); ``{}`` for a folder without one
    (a ``Recommender.save`` folder holds the model only)."""
    run_dir = Path(run_dir)
    return _read_run(run_dir) if (run_dir / "run.json").is_file() else {}


def recorded_split_kind(run_dir: str | Path) -> str | None:
    """The kind of the split a run trained on (``loo``, ``session``, ...), read from its
    ``split.npz`` without loading the parts; None without one."""
    path = Path(run_dir) / "split.npz"
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return str(z["kind"])
    except Exception as e:  # zipfile / format errors, as load_split reports them
        raise CheckpointError(f"{path}: corrupt split file ({type(e).__name__})") from None


def is_finished(out: str | Path) -> bool:
    """Whether the run wrote its results (nothing left to resume)."""
    return (Path(out) / "results.json").is_file()


def _read_run(out: Path) -> dict:
    try:
        return json.loads((out / "run.json").read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{out / 'run.json'}: unreadable ({e})") from None


def load_ids(out: Path) -> tuple[IdMap, IdMap]:
    path = out / "ids.json"
    if not path.is_file():
        raise CheckpointError(f"{path}: missing")
    ids = json.loads(path.read_text())
    return IdMap.from_json(ids["users"]), IdMap.from_json(ids["items"])


def evaluate_run(run_dir: str | Path, protocols=None, *, progress: bool | None = False,
                 device="cpu") -> dict:
    """Re-evaluate a finished run on its stored split's test part (``protocols`` None: every
    protocol the split can run; a named one it cannot run is a ConfigError), the model on
    ``device`` (a ``torch.device`` or a name: auto, cpu, cuda, cuda:N, mps)."""
    run_dir = Path(run_dir)
    saved = load_model(run_dir, device)
    if not (run_dir / "split.npz").is_file():
        raise CheckpointError(f"{run_dir} holds a saved model but no split.npz (Recommender.save keeps "
                              "the model only): evaluate needs a run folder from memrec train, or "
                              "evaluate in Python with memrec.runs.evaluate_split(model, split)")
    split = load_split(run_dir / "split.npz", saved.users, saved.items)
    metrics, _ = evaluate_split(saved.model, split, protocols, progress=progress)
    return metrics


__all__ = ["prepare_split", "train_run", "start_run_dir", "run_results", "train_graph_run", "evaluate_run", "evaluate_split",
           "recorded_run", "recorded_split_kind"]
