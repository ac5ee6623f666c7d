"""KSR beside GRU4Rec, BPR-MF, Pop and the item-based baselines on the two knowledge-graph datasets.

Datasets (``../shared/data``):

* ``ml-100k`` = ``ml-100k/recbole`` (RecBole atomic files with the Freebase KG of KB4Rec):
  leave-one-out by timestamp, 100 fixed sampled negatives per user;
* ``lastfm-kg`` (HetRec Last.fm + KGCN's Satori KG): no timestamps, so a random 70/10/20 split
  of the interactions on the 3,846 KG-linked artists (``data.linked_only``).

KSR reads the TransE run ``runs/transe_<dataset>`` (train it first, ``configs/transe_<dataset>.toml``).
Each run is a child process of ``benchmarks/sequential_users.py --child`` (exactly ``memrec
train`` through :func:`memrec.runs.train_run`), which reports test metrics, seconds per epoch
and peak RSS; every run checks the split fingerprint.

    PYTHONPATH=src .venv/bin/python benchmarks/ksr_kg.py run ml-100k --models ksr,gru4rec --seeds 0,1
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
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
CHILD = ROOT / "benchmarks" / "sequential_users.py"
DATASETS = {"ml-100k": DATA / "ml-100k" / "recbole", "lastfm-kg": DATA / "lastfm-kg"}
#: the lastfm-kg protocol for every model (see the module docstring)
DATA_OVERRIDES = {"ml-100k": [],
                  "lastfm-kg": ['data.split="random"', "data.test_frac=0.2", "data.valid_frac=0.1",
                                "data.linked_only=true", "data.n_negatives=100"]}
MODELS = ("ksr", "gru4rec", "bprmf", "pop", "itemknn", "rp3beta", "ease")
GRADIENT = {"ksr", "gru4rec", "bprmf"}
PROTOCOLS, METRICS = ("full", "sampled"), ("HR@10", "NDCG@10")


def config_for(model: str, dataset: str) -> str | None:
    """The model's shipped config for the dataset, else its ML-100K one, else none (defaults)."""
    for name in (f"{model}_{dataset}.toml", f"{model}_ml-100k.toml"):
        if (ROOT / "configs" / name).is_file():
            return str(ROOT / "configs" / name)
    return None


def spawn(model: str, dataset: str, seed: int, label: str, extra: list[str], workdir: Path) -> dict:
    overrides = [f"train.seed={seed}", *DATA_OVERRIDES[dataset], *extra]
    if model == "ksr":
        overrides.append(f'model.transe="{ROOT / "runs" / f"transe_{dataset}"}"')
    spec = {"model": model, "dataset": dataset, "config": config_for(model, dataset),
            "overrides": overrides, "out": str(workdir / f"{model}_{dataset}_{seed}_{label}"),
            "data": str(DATASETS[dataset])}
    load = os.getloadavg()[0]
    proc = subprocess.run([sys.executable, str(CHILD), "--child", json.dumps(spec)],
                          env=child_env(1), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{model} on {dataset} failed:\n{proc.stderr[-3000:]}")
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    record.update(label=label, loadavg_1min=[load, os.getloadavg()[0]])
    return record


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


def markdown(results: dict) -> str:
    head = ["model", "runs"] + [f"{p} {m}" for p in PROTOCOLS for m in METRICS] + [
        "s/epoch", "train s", "best epoch", "peak RSS MB"]
    lines = ["# KSR and baselines on the knowledge-graph datasets", ""]
    for dataset in DATASETS:
        runs = [r for r in results["runs"] if r["dataset"] == dataset]
        if not runs:
            continue
        lines += [f"## {dataset}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        groups = sorted({(r["model"], r["label"]) for r in runs},
                        key=lambda g: (MODELS.index(g[0]) if g[0] in MODELS else 99, g[1]))
        for model, label in groups:
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
        lines += ["", f"Split fingerprint(s): {', '.join(prints)}. 1-min load average around the runs "
                  f"{min(loads):.1f}–{max(loads):.1f} on {os.cpu_count()} CPUs.", ""]
    lines += ["Test metrics, mean ± std over training seeds (one split per dataset, split seed 0). "
              "full = rank every item but the user's train+valid items; sampled = against 100 fixed "
              "negatives. s/epoch = training only (KSR: its BPR pretraining not included).",
              "", f"{results.get('machine', '')}; updated {results.get('date', '')}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run")
    run.add_argument("dataset", choices=list(DATASETS))
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
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            seeds = [int(s) for s in args.seeds.split(",")] if model in GRADIENT else [0]
            for seed in seeds:
                record = spawn(model, args.dataset, seed, args.label, args.extra, Path(tmp))
                save(results, [record])
                print(f"{model} seed {seed}: {json.dumps(record['test'])} "
                      f"{record['seconds_per_epoch']:.1f}s/epoch", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
