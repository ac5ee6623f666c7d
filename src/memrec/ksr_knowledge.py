"""TransE pretraining for KSR: one command from a knowledge-graph dataset to a trained KSR.

``memrec train ksr --data KG_FOLDER`` needs TransE vectors of that dataset's graph. Unless
``model.transe`` names a TransE run (``memrec train transe``; a relative path in a config file is
relative to that file) or ``model.kg = "none"`` asks for the ablation without knowledge,
:func:`with_transe_vectors` provides them:

1. it finds the graph file that goes with the dataset as it is read (``*.kg`` beside a RecBole
   ``.inter``, a KGCN ``kg.txt``, a RippleNet ``kg_final.txt``:
   :func:`memrec.data.readers.knowledge_graph_file`); a dataset without one is an error;
2. it computes the **content hash**: sha256 over the graph file, its item-link file and the TransE
   run configuration (:data:`RECIPE`, ``dim`` = ``model.kg_dim``, and the KSR run's ``data.seed``,
   ``data.min_head_share``, ``data.min_item_share``) — a change to any of them trains anew;
3. the run folder's own ``transe/`` (a resumed run) or a cached run with that hash is reused;
   otherwise it checks that the graph gives KSR memory slots (the error says what the graph holds
   and which option relaxes the rule, before any training) and trains TransE into ``RUN/transe/``,
   a complete TransE run folder (``memrec train transe``'s layout), its progress lines labelled
   "TransE pretraining". The finished run is copied to the cache,
   ``$MEMREC_CACHE/transe/<hash>`` (default ``$XDG_CACHE_HOME/memrec`` or ``~/.cache/memrec``);
   deleting the cache only costs a retraining.

TransE's seed is ``data.seed``, not ``train.seed``: a seed study of KSR (``--seed``) reuses one
TransE run, as the paper's pipeline trains it once. :data:`RECIPE` is the shipped
``configs/transe_<dataset>.toml`` settings, so the vectors equal ``memrec train transe`` with
those configs (same seed). For other TransE settings, train it yourself and name the run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

from .data.knowledge import KnowledgeGraph
from .data.readers import knowledge_graph_file
from .data.readers.kg import link_source
from .errors import DataError
from .fileio import atomic_write_json
from .models import effective_params, spec
from .training.config import DataConfig, RunConfig, load_config

#: TransE's settings for KSR's pretraining (those of configs/transe_<dataset>.toml); ``dim`` is
#: ``model.kg_dim`` and the seeds are ``data.seed``
RECIPE = {"model": {"norm": 1},
          "train": {"epochs": 100, "batch_size": 1024, "optimizer": "adam", "lr": 0.005,
                    "margin": 1.0, "n_negatives": 1, "eval_every": 10, "patience": 3},
          "data": {"test_frac": 0.05, "valid_frac": 0.05}}
#: in the TransE run folder: the content hash it was trained for
HASH_FILE = "content_hash.json"
PROGRESS = "TransE pretraining"


def transe_config(kg_dim: int, data: DataConfig) -> RunConfig:
    """The TransE run configuration of :data:`RECIPE` for a KSR run's ``kg_dim`` and ``[data]``."""
    tables = {"model": {**RECIPE["model"], "dim": kg_dim},
              "train": {**RECIPE["train"], "seed": data.seed},
              "data": {**RECIPE["data"], "seed": data.seed, "min_head_share": data.min_head_share,
                       "min_item_share": data.min_item_share}}
    return load_config("transe", overrides=[f"{section}.{key}={json.dumps(value)}"
                                            for section, values in tables.items()
                                            for key, value in values.items()])


def content_hash(files: list[Path], config: RunConfig) -> str:
    """sha256 over the files' names, sizes and bytes, then the run configuration (sorted JSON)."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.name}\0{path.stat().st_size}\0".encode())
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    digest.update(json.dumps(config.to_json(), sort_keys=True).encode())
    return digest.hexdigest()


def cache_root() -> Path:
    """Where finished TransE runs are kept by content hash (module doc)."""
    if os.environ.get("MEMREC_CACHE"):
        return Path(os.environ["MEMREC_CACHE"]) / "transe"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "memrec" / "transe"


@dataclass(frozen=True)
class TransEPlan:
    """The TransE run a KSR run needs: its graph, configuration, content hash and folder."""

    kg_file: Path
    config: RunConfig
    digest: str
    folder: Path

    @property
    def cached(self) -> Path:
        return cache_root() / self.digest

    def is_ready(self) -> bool:
        """A finished run in the run folder or the cache (nothing to train)."""
        return (self.folder / "results.json").is_file() or (self.cached / "results.json").is_file()


def plan_transe_vectors(config: RunConfig, data_path: str | Path, out: str | Path) -> TransEPlan | None:
    """The TransE run ``memrec train`` must provide for ``config`` (``None``: none, because the
    model reads no TransE vectors, names its run, or is the ablation ``model.kg = "none"``).
    Writes nothing; a dataset without a graph is an error."""
    if not spec(config.model).reads_transe:
        return None
    params = effective_params(config.model, config.model_params)
    if params["kg"] is None or params["transe"]:        # the ablation, or a named TransE run
        return None
    kg_file = knowledge_graph_file(data_path, config.data.format or None)
    if kg_file is None:
        raise DataError(f"{data_path}: KSR needs a knowledge graph and this dataset has none (a .kg "
                        "beside the .inter, kg.txt or kg_final.txt); name a TransE run with "
                        "model.transe, or set model.kg = \"none\" for KSR without knowledge (the ablation)")
    transe = transe_config(params["kg_dim"], config.data)
    sources = [kg_file] + [link for link in [link_source(kg_file)] if link is not None]
    return TransEPlan(kg_file, transe, content_hash(sources, transe), Path(out) / "transe")


def check_transe_source(config: RunConfig, data_path: str | Path, out: str | Path) -> None:
    """Before a KSR run writes anything: the graph it would train TransE on gives KSR memory
    slots (else the one-line error says what the graph holds and what relaxes the rule)."""
    plan = plan_transe_vectors(config, data_path, out)
    if plan is not None and not plan.is_ready():
        data = plan.config.data
        KnowledgeGraph.load(plan.kg_file).require_item_relations(data.min_head_share, data.min_item_share)


def with_transe_vectors(config: RunConfig, data_path: str | Path, out: str | Path, *, echo,
                        train_graph) -> RunConfig:
    """``config`` with ``model.transe`` naming the TransE run KSR reads, trained or reused into
    ``out/transe`` (module doc); unchanged when :func:`plan_transe_vectors` plans none.

    ``train_graph`` trains a TransE run folder: :func:`memrec.runs.train_graph_run`, handed in
    by :func:`memrec.runs.train_run` (runs sits above this module and imports it)."""
    plan = plan_transe_vectors(config, data_path, out)
    if plan is None:
        return config
    ensure_transe_run(plan, lambda line: echo(f"{PROGRESS}: {line}"), train_graph)
    return replace(config, model_params={**config.model_params, "transe": str(plan.folder.resolve())})


def ensure_transe_run(plan: TransEPlan, echo, train_graph) -> None:
    """A finished TransE run for the plan in its folder: kept, copied from the cache, or trained."""
    folder, short = plan.folder, plan.digest[:12]
    if (folder / "results.json").is_file():
        if _recorded_hash(folder) != plan.digest:
            raise DataError(f"{folder}: a TransE run for another graph or TransE setting (content hash "
                            f"{_recorded_hash(folder)[:12]}, now {short}): the knowledge graph or "
                            "data.seed / data.min_*_share changed since this run started")
        echo(f"reusing {folder} (content hash {short})")
        return
    if (plan.cached / "results.json").is_file() and not folder.exists():
        _copy_folder(plan.cached, folder)
        echo(f"reusing the run cached for this graph and recipe, {plan.cached} (content hash {short})")
        return
    _train(plan, echo, train_graph)
    _store_in_cache(folder, plan.cached, echo)


def _train(plan: TransEPlan, echo, train_graph) -> None:
    graph = KnowledgeGraph.load(plan.kg_file)
    data = plan.config.data
    slots = graph.require_item_relations(data.min_head_share, data.min_item_share)  # why not, before training
    echo(f"training TransE on {plan.kg_file} into {plan.folder} (content hash {plan.digest[:12]}); "
         f"{len(slots)} memory slots: {', '.join(slots.names(graph.relations))}")
    start = time.perf_counter()
    results = train_graph(plan.config, plan.kg_file, plan.folder,
                          resume=(plan.folder / "run.json").is_file(), progress=False, echo=echo)
    atomic_write_json(plan.folder / HASH_FILE, {"content_hash": plan.digest,
                                                "graph": str(plan.kg_file.resolve())})
    test = results["test"]
    echo(f"done in {time.perf_counter() - start:.0f}s: best epoch {results['best_epoch']}, filtered test "
         f"MRR {test.get('MRR', float('nan')):.4f}, Hits@10 {test.get('Hits@10', float('nan')):.4f}")


def _recorded_hash(folder: Path) -> str:
    try:
        return json.loads((folder / HASH_FILE).read_text())["content_hash"]
    except (OSError, ValueError, KeyError, TypeError):
        return "none recorded"


def _copy_folder(source: Path, target: Path) -> None:
    """Copy a folder so that ``target`` appears whole or not at all (a copy, then a rename)."""
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        shutil.copytree(source, partial)
        partial.rename(target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _store_in_cache(folder: Path, cached: Path, echo) -> None:
    """Copy the finished run into the cache; a cache that cannot be written costs a note only
    (and a run another process cached first is kept)."""
    if cached.exists():
        return
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        _copy_folder(folder, cached)
    except OSError as e:
        if not cached.exists():
            echo(f"note: could not cache the run in {cached} ({e}); the next run will train again")


__all__ = ["RECIPE", "TransEPlan", "transe_config", "content_hash", "cache_root", "plan_transe_vectors",
           "check_transe_source", "with_transe_vectors", "ensure_transe_run"]
