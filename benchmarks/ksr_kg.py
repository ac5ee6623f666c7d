"""KG-aware comparison: KSR (with its knowledge graph, and without it) beside EASE^R, ItemKNN,
RP3β, BPR-MF, GRU4Rec and Pop on the same split of each knowledge-graph dataset.

Datasets (``../shared/data``, or ``$MEMREC_SHARED_DATA``), or any KG folder given by path (a
RecBole folder with ``.kg``/``.link``, a KGCN folder, RippleNet's ``ratings_final.txt`` +
``kg_final.txt``):

* ``ml-100k`` = ``ml-100k/recbole`` (RecBole atomic files with the Freebase KG of KB4Rec):
  leave-one-out by timestamp, 100 fixed sampled negatives per user;
* ``lastfm-kg`` (HetRec Last.fm + KGCN's Satori KG): no timestamps, so a random 70/10/20 split
  of the interactions on the 3,846 KG-linked artists (``data.linked_only``);
* a path: the data's own split rule (leave-one-out; add ``--set`` options for another).

KSR is one command, ``memrec train ksr --data FOLDER``: it trains TransE on the folder's graph into
its run folder, or reuses the run cached for the same graph and TransE settings (content hash;
this script keeps the cache in ``runs/cache`` unless ``$MEMREC_CACHE`` says otherwise), so the
first KSR run on a dataset pays for TransE and the others do not. ``ksr-nokg`` is the ablation
``model.kg = "none"`` (the same KSR with learned slots and no knowledge graph): the two KSR rows
say at once whether the graph helps. Each run is a child process running exactly ``memrec
train`` (:func:`memrec.runs.train_run`, through ``benchmarks/sequential_users.py``'s child),
reporting test metrics, seconds per epoch and peak RSS; every run checks the split fingerprint.

    PYTHONPATH=src .venv/bin/python benchmarks/ksr_kg.py run lastfm-kg --seeds 0
    PYTHONPATH=src .venv/bin/python benchmarks/ksr_kg.py run ml-100k --seeds 0,1
    PYTHONPATH=src .venv/bin/python benchmarks/ksr_kg.py run PATH/TO/KG_FOLDER --models ksr,ksr-nokg,ease
    PYTHONPATH=src .venv/bin/python benchmarks/ksr_kg.py report

Results: ``benchmarks/results/ksr_kg.json`` (runs of the same model, dataset, seed and label
are replaced) and ``ksr_kg.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from common import child_env, fmt, mean_std

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MEMREC_SHARED_DATA") or ROOT.parent / "shared" / "data")
RESULTS = ROOT / "benchmarks" / "results"
DATASETS = {"ml-100k": DATA / "ml-100k" / "recbole", "lastfm-kg": DATA / "lastfm-kg"}
#: the lastfm-kg protocol for every model (see the module docstring)
DATA_OVERRIDES = {"ml-100k": [],
                  "lastfm-kg": ['data.split="random"', "data.test_frac=0.2", "data.valid_frac=0.1",
                                "data.linked_only=true", "data.n_negatives=100"]}
MODELS = ("ksr", "ksr-nokg", "gru4rec", "bprmf", "pop", "itemknn", "rp3beta", "ease")
#: benchmark names that run a registered model with other settings: (model, label, overrides)
VARIANTS = {"ksr-nokg": ("ksr", "no KG", ["model.kg=none"])}
GRADIENT = {"ksr", "gru4rec", "bprmf"}
PROTOCOLS, METRICS = ("full", "sampled"), ("HR@10", "NDCG@10")


def config_for(model: str, dataset: str) -> str | None:
    """The model's shipped config for the dataset, else its ML-100K one, else none (defaults)."""
    for name in (f"{model}_{dataset}.toml", f"{model}_ml-100k.toml"):
        if (ROOT / "configs" / name).is_file():
            return str(ROOT / "configs" / name)
    return None


# -- child: one training run, plus the TransE run KSR made or reused ------------------------------
def run_child(spec: dict) -> dict:
    sys.path.insert(0, str(Path(__file__).parent))
    from sequential_users import run_child as train_child
    record = train_child(spec)
    transe = Path(spec["out"]) / "transe" / "results.json"
    if transe.is_file():
        results = json.loads(transe.read_text())
        record["transe"] = {"item_relations": results["item_relations"], "train_seconds": results["train_seconds"],
                            "best_epoch": results["best_epoch"], "test_MRR": results["test"].get("MRR"),
                            "test_Hits@10": results["test"].get("Hits@10")}
    return record


def spawn(name: str, dataset: str, data: Path, seed: int, label: str, extra: list[str], workdir: Path) -> dict:
    model, variant_label, variant = VARIANTS.get(name, (name, None, []))
    label = variant_label if variant_label and label == "default" else label
    overrides = [f"train.seed={seed}", *DATA_OVERRIDES.get(dataset, []), *variant, *extra]
    spec = {"model": model, "dataset": dataset, "config": config_for(model, dataset),
            "overrides": overrides, "out": str(workdir / f"{name}_{dataset}_{seed}_{label}".replace(" ", "_")),
            "data": str(data)}
    load = os.getloadavg()[0]
    env = {"MEMREC_CACHE": str(ROOT / "runs" / "cache"), **child_env(1)}
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                          env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} on {dataset} failed:\n{proc.stderr[-3000:]}")
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    record.update(label=label, loadavg_1min=[load, os.getloadavg()[0]])
    return record


def graph_summary(dataset: str, data: Path, overrides: list[str]) -> dict:
    """What the dataset's graph holds and the slots KSR keeps (the KSR config's [data] options)."""
    from memrec.data.knowledge import KnowledgeGraph
    from memrec.data.readers import knowledge_graph_file
    from memrec.training.config import load_config
    config = load_config("ksr", config_for("ksr", dataset), overrides)
    graph = KnowledgeGraph.load(knowledge_graph_file(data, config.data.format or None))
    slots = graph.item_relations(config.data.min_head_share, config.data.min_item_share)
    profile = graph.relation_profile() if len(graph.link_entities) else None
    return {**graph.describe(), "item_touching_triples": profile.touching if profile else 0,
            "slots": slots.names(graph.relations)}


# -- report -------------------------------------------------------------------------------------
def load_results() -> dict:
    path = RESULTS / "ksr_kg.json"
    return json.loads(path.read_text()) if path.is_file() else {"runs": []}


def save(results: dict, new: list[dict]) -> None:
    keys = {(r["model"], r["dataset"], r["seed"], r["label"]) for r in new}
    results["runs"] = [r for r in results["runs"]
                       if (r["model"], r["dataset"], r["seed"], r["label"]) not in keys] + new
    results["machine"] = f"torch threads 1, Python {platform.python_version()}, {platform.platform()}"
    results["date"] = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ksr_kg.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "ksr_kg.md").write_text(markdown(results))


def _order(group: tuple[str, str]) -> tuple:
    model, label = group
    names = [VARIANTS[n][0] if n in VARIANTS else n for n in MODELS]
    return (names.index(model) if model in names else 99, label != "default", label)


def _graph_lines(graph: dict | None, runs: list[dict]) -> list[str]:
    lines = []
    if graph:
        share = graph["item_touching_triples"] / max(graph["triples"], 1)
        lines.append(f"Knowledge graph: {graph['entities']:,} entities, {graph['relations']} relations, "
                     f"{graph['triples']:,} triples ({share:.0%} touch one of the {graph['linked items']:,} "
                     f"linked items). KSR's {len(graph['slots'])} memory slots: {', '.join(graph['slots'])}.")
    transe = next((r["transe"] for r in runs if "transe" in r), None)
    if transe:
        lines.append(f"TransE (trained by `memrec train ksr` itself, once per graph and setting, then "
                     f"reused by content hash): {transe['train_seconds']:.0f} s, best epoch "
                     f"{transe['best_epoch']}, filtered test MRR {transe['test_MRR']:.4f}, "
                     f"Hits@10 {transe['test_Hits@10']:.4f}; not in the KSR rows' train s.")
    with_kg = [r for r in runs if r["model"] == "ksr" and r["label"] == "default"]
    without = [r for r in runs if r["model"] == "ksr" and r["label"] == VARIANTS["ksr-nokg"][1]]
    if with_kg and without:
        a, b = (mean_std([r["test"]["full"]["NDCG@10"] for r in rs])["mean"] for rs in (with_kg, without))
        lines.append(f"Does the KG help KSR? full NDCG@10 {a:.4f} with it ({len(with_kg)} run(s)), "
                     f"{b:.4f} without ({len(without)}): {'+' if a >= b else '−'}"
                     f"{abs(a - b) / max(b, 1e-12):.0%}.")
    return lines


def markdown(results: dict) -> str:
    head = ["model", "runs"] + [f"{p} {m}" for p in PROTOCOLS for m in METRICS] + [
        "s/epoch", "train s", "best epoch", "peak RSS MB"]
    lines = ["# KSR and baselines on the knowledge-graph datasets", ""]
    datasets = list(DATASETS) + sorted({r["dataset"] for r in results["runs"]} - set(DATASETS))
    for dataset in datasets:
        runs = [r for r in results["runs"] if r["dataset"] == dataset]
        if not runs:
            continue
        lines += [f"## {dataset}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for model, label in sorted({(r["model"], r["label"]) for r in runs}, key=_order):
            mine = [r for r in runs if (r["model"], r["label"]) == (model, label)]
            name = model if label == "default" else f"{model} ({label})"
            cells = [name, str(len(mine))]
            cells += [fmt(mean_std([r["test"][p][m] for r in mine])) for p in PROTOCOLS for m in METRICS]
            gradient = model in GRADIENT
            cells += [fmt(mean_std([r["seconds_per_epoch"] for r in mine]), 1) if gradient else "–",
                      fmt(mean_std([r["train_seconds"] for r in mine]), 1),
                      ", ".join(str(r["best_epoch"]) for r in mine) if gradient else "–",
                      fmt(mean_std([r["peak_rss_mb"] for r in mine]), 0)]
            lines.append("| " + " | ".join(cells) + " |")
        prints = sorted({r["split"] for r in runs})
        loads = [x for r in runs for x in r["loadavg_1min"]]
        lines += [""] + _graph_lines(results.get("graphs", {}).get(dataset), runs)
        lines += ["", f"Split fingerprint(s): {', '.join(prints)}. 1-min load average around the runs "
                  f"{min(loads):.1f}–{max(loads):.1f} on {os.cpu_count()} CPUs.", ""]
    lines += ["Test metrics, mean ± std over training seeds (one split per dataset, split seed 0). "
              "full = rank every item but the user's train+valid items; sampled = against 100 fixed "
              "negatives. s/epoch = training only (KSR: its BPR and TransE pretraining not included). "
              "ksr (no KG) = the ablation model.kg = \"none\": learned slots, no knowledge graph.",
              "", f"{results.get('machine', '')}; updated {results.get('date', '')}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(run_child(json.loads(sys.argv[2]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run")
    run.add_argument("dataset", help=f"{' or '.join(DATASETS)}, or the path of a KG dataset folder")
    run.add_argument("--models", default=",".join(MODELS))
    run.add_argument("--seeds", default="0")
    run.add_argument("--label", default="default", help="names a variant run (e.g. paper)")
    run.add_argument("--set", dest="extra", action="append", default=[])
    sub.add_parser("report")
    args = parser.parse_args()
    results = load_results()
    if args.command == "report":
        (RESULTS / "ksr_kg.md").write_text(markdown(results))
        return
    data = DATASETS.get(args.dataset) or Path(args.dataset).resolve()
    dataset = args.dataset if args.dataset in DATASETS else data.name
    results.setdefault("graphs", {})[dataset] = graph_summary(dataset, data, DATA_OVERRIDES.get(dataset, []) + args.extra)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            model = VARIANTS.get(name, (name,))[0]
            seeds = [int(s) for s in args.seeds.split(",")] if model in GRADIENT else [0]
            for seed in seeds:
                record = spawn(name, dataset, data, seed, args.label, args.extra, Path(tmp))
                save(results, [record])
                print(f"{name} seed {seed}: {json.dumps(record['test'])} "
                      f"{record['seconds_per_epoch']:.1f}s/epoch", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
