"""DEMN's ablations (spec B.6, the rows buildable now) on ml-100k, with the drift slice.

    PYTHONPATH=src OMP_NUM_THREADS=1 .venv/bin/python benchmarks/demn_ablations.py run \
        [--variants full,erase_add,...] [--seeds 0,1,2] [--set train.epochs=1 ...]
    PYTHONPATH=src .venv/bin/python benchmarks/demn_ablations.py report     # tables only

Every run is exactly ``memrec train demn --config configs/demn_ml-100k.toml`` (leave-one-out,
split seed 0, ``BASELINE``'s overrides — per-candidate reads, the default clock and the time-gated
write, the recipe as first shipped — then the variant's ``--set model.*`` overrides, ``train.seed``) in a child process, one
thread; then the trained model is scored on the test set's **drift slice**: the 20 % of users
(with ≥ 10 training events) whose genre distribution shifts most between the first and second
half of their training history (``memrec.models.demn_drift.drift_slice``; genres from ml-100k's
``u.item``; datasets without item genres fall back to popularity-bucket profiles). The slice
is evaluated by restricting the split's test part to its users (the ``Evaluator`` has no
per-user output), full ranking, NDCG@10.

Each finished run is added to ``benchmarks/results/demn_ablations.json`` at once (same variant,
seed and overrides: replaced), so an interrupted ``run`` resumes where it stopped (finished
runs are skipped); ``.md`` is rewritten after every run. Two ``run`` processes may share the
file (each merges its run into the file as it stands then; atomic writes).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import child_env, fmt, mean_std, peak_rss_mb, split_fingerprint

from memrec.fileio import atomic_write_bytes, atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MEMREC_SHARED_DATA", ROOT.parent / "shared" / "data"))
RESULTS = ROOT / "benchmarks" / "results"
CONFIG = ROOT / "configs" / "demn_ml-100k.toml"
#: the baseline every variant changes: the spec's design as the recipe first shipped it (per-candidate
#: reads, the default clock, the time-gated write), whatever the recipe sets now (it moved to the
#: last-item read, the step clock and the FIFO write on these ablations' results), so recorded
#: runs stay reproducible
BASELINE = ['model.read="candidate"', 'model.clock="auto"', 'model.write="time_gated"']
#: the last-item read and the step clock, on top of ``BASELINE`` (``--set`` both to ablate the
#: recipe's write on them: the FIFO write's 3-seed test ran so)
USER_READ_STEPS = ('model.read="user"', 'model.clock="steps"')
DATASET = "ml-100k"
#: spec B.6 rows available now → their ``model.*`` overrides
VARIANTS = {
    "full": [],
    "no_item_memory": ["model.item_memory=false"],
    "no_neighbours": ["model.neighbours=false"],
    # L2's control: CMN's static neighbourhood (the whole training log) instead of recent visits
    "static_neighbours": ["model.static_neighbours=true"],
    "no_history_read": ["model.history_read=false"],
    "write=erase_add": ["model.write=erase_add"],
    "write=gated": ["model.write=gated"],
    "write=fifo": ["model.write=fifo"],
    "fixed_tau": ["model.learn_timescales=false"],
    # Δ from ml-100k's timestamps (the default clock) against Δ = 1 step (issue 19's L3 test;
    # every run before the clock existed counted steps, recorded with model.clock="steps")
    "clock=steps": ['model.clock="steps"'],
    # the reads queried by the last item, not each candidate: full ranking as one product
    "read=user": ['model.read="user"'],
    "read=user+clock=steps": ['model.read="user"', 'model.clock="steps"'],
    # slot capacity (B.6, fifth row; the recipe has S = 4)
    "slots=1": ["model.slots=1"],
    "slots=2": ["model.slots=2"],
    "slots=8": ["model.slots=8"],
    # the FIFO write without the item memory: candidates are then plain embeddings, so a
    # softmax over many sampled negatives costs little more than BPR's four (run it with
    # --set train.loss="sampled_softmax" --set train.n_negatives=N)
    "write=fifo+no_item_memory": ["model.write=fifo", "model.item_memory=false"],
    # the recipes since the full softmax (--set train.loss="softmax" with the last-item read):
    # each of L2 and L4 off from there (L1 is off already, L3's write is "no_item_memory" there)
    "write=fifo+no_item_memory+no_neighbours": ["model.write=fifo", "model.item_memory=false",
                                                "model.neighbours=false"],
    "write=fifo+no_item_memory+no_history_read": ["model.write=fifo", "model.item_memory=false",
                                                  "model.history_read=false"],
    # −L1, −L2, −L4 and the erase-add write: "user memory with erase-add only ≈ RUM-F /
    # MIMN-lite" (B.6); the slot read stays, so it is not exactly BPR-MF
    "all_off": ["model.item_memory=false", "model.neighbours=false", "model.history_read=false",
                "model.write=erase_add"],
}
METRICS = ("HR@10", "NDCG@10")
PROTOCOLS = ("full", "sampled")
SLICE_FRACTION, SLICE_MIN_EVENTS = 0.2, 10


# -- child: one training run, then the drift slice ------------------------------------------------
def item_profiles(train, dataset_dir: Path):
    """Genre profiles of the split's items from ``u.item`` when the dataset has one, else
    popularity buckets (``drift_scores`` explains both)."""
    import numpy as np
    from memrec.data.readers.movielens import _U_ITEM_FIELDS, read_item_file
    from memrec.models.demn_drift import genre_profiles, popularity_profiles

    frame = read_item_file(dataset_dir / "raw") if (dataset_dir / "raw").is_dir() else None
    if frame is None:
        return popularity_profiles(np.bincount(train.item, minlength=train.n_items)), "popularity"
    genres = [c for c in frame.columns if c not in _U_ITEM_FIELDS]
    flags = np.zeros((train.n_items, len(genres)))
    known = np.isin(frame["item"].to_numpy(), train.items.raw)
    rows = train.items.to_index(frame["item"].to_numpy()[known])
    flags[rows] = frame.loc[known, genres].to_numpy()
    return genre_profiles(flags), "genres"


def slice_metrics(out: Path, dataset_dir: Path) -> dict:
    import numpy as np
    from memrec.checkpoint import load_model
    from memrec.data.split_io import load_split
    from memrec.models.demn_drift import drift_slice
    from memrec.runs import evaluate_split

    saved = load_model(out, "cpu")
    split = load_split(out / "split.npz", saved.users, saved.items)
    profiles, kind = item_profiles(split.train, dataset_dir)
    indptr, items = split.train.sequences()
    users = drift_slice(indptr, items, profiles, SLICE_FRACTION, SLICE_MIN_EVENTS)
    test = split.test.take(np.flatnonzero(np.isin(split.test.user, users)))
    metrics, _ = evaluate_split(saved.model, dataclasses.replace(split, test=test), ("full",))
    return {"profiles": kind, "users": int(len(np.unique(test.user))),
            "full": {m: metrics["full"][m] for m in METRICS}}


def run_child(spec: dict) -> dict:
    import torch
    from memrec.runs import train_run
    from memrec.training.config import load_config

    torch.set_num_threads(1)
    config = load_config("demn", spec["config"], [*BASELINE, *spec["overrides"]])
    out = Path(spec["out"])
    results = train_run(config, spec["data"], out, progress=False, echo=lambda line: None)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    epochs = [r for r in log if "examples_per_s" in r]
    return {
        "variant": spec["variant"], "seed": config.train.seed, "overrides": spec["overrides"],
        "best_epoch": results["best_epoch"], "epochs_run": log[-1]["epoch"] if log else 0,
        "train_seconds": results["train_seconds"], "eval_seconds": results["eval_seconds"],
        "examples_per_s": mean_std([r["examples_per_s"] for r in epochs])["mean"] if epochs else 0.0,
        "test": {p: {m: results["metrics"][p][m] for m in METRICS} for p in results["metrics"]},
        "drift_slice": slice_metrics(out, Path(spec["data"])),
        "peak_rss_mb": peak_rss_mb(), "split": split_fingerprint(out / "split.npz"),
    }


def spawn(variant: str, seed: int, extra: list[str], workdir: Path) -> dict:
    overrides = [*VARIANTS[variant], f"train.seed={seed}", *extra]
    spec = {"variant": variant, "config": str(CONFIG), "overrides": overrides,
            "out": str(workdir / f"{variant}_{seed}"), "data": str(DATA / DATASET)}
    load_before = os.getloadavg()[0]          # the machine may be shared: record how busy it was
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                          env=child_env(1), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{variant} (seed {seed}) failed with exit status {proc.returncode}:\n"
                           f"{proc.stderr[-3000:]}\n{proc.stdout[-2000:]}")
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    record["loadavg_1min"] = [load_before, os.getloadavg()[0]]
    record["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    return record


# -- results --------------------------------------------------------------------------------------
def load_results() -> dict:
    path = RESULTS / "demn_ablations.json"
    return json.loads(path.read_text()) if path.is_file() else {"runs": []}


def same_run(a: dict, b: dict) -> bool:
    return a["variant"] == b["variant"] and a["seed"] == b["seed"] and a["overrides"] == b["overrides"]


def save(results: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_json(RESULTS / "demn_ablations.json", results)
    atomic_write_bytes(RESULTS / "demn_ablations.md", markdown(results).encode())


def _group_title(extra: tuple[str, ...]) -> str:
    """A table's heading from the overrides its runs share: the recipe, a time budget (every
    variant the same training seconds, as a leaderboard row), or a smoke."""
    if all(o in extra for o in USER_READ_STEPS):     # variants on the last-item read and step clock
        rest = tuple(o for o in extra if o not in USER_READ_STEPS)
        return f"{_group_title(rest)}, on the last-item read with Δ = 1 step"
    if 'model.clock="steps"' in extra:        # the runs from before DEMN read timestamps
        rest = tuple(o for o in extra if o != 'model.clock="steps"')
        return f"{_group_title(rest)}, Δ = 1 step (before the clock read timestamps)"
    if not extra:
        return "shipped recipe"
    budget = any(o.startswith("train.max_seconds=") for o in extra) and not any(
        o.startswith("train.epochs=") for o in extra)
    return f"with {' '.join(extra)}" + (" (the same training budget for every variant)" if budget
                                        else " (a smoke, not a result)")


def markdown(results: dict) -> str:
    lines = ["# DEMN ablations on ml-100k (spec B.6, the rows buildable now)", "",
             "Leave-one-out, split seed 0, `configs/demn_ml-100k.toml` with the spec's per-candidate reads and "
             "the default clock and the time-gated write (the recipe as first shipped; `BASELINE`) plus each row's overrides; "
             "mean ± std over seeds. Drift slice: the 20 % of users (≥ 10 training events) whose "
             "genre distribution shifts most between the halves of their training history "
             "(`memrec.models.demn_drift.drift_slice`), full ranking.", "",
             "The full table (hours on one CPU thread):", "",
             "    PYTHONPATH=src OMP_NUM_THREADS=1 .venv/bin/python benchmarks/demn_ablations.py run "
             f"--variants {','.join(VARIANTS)} --seeds 0,1,2", ""]
    groups = _groups(results)
    head = ["variant", "seeds"] + [f"{p} {m}" for p in PROTOCOLS for m in METRICS] + [
        "drift slice full NDCG@10 (users)", "best epoch", "train ex/s", "load (1 min)"]
    for extra, runs in groups.items():
        lines += [f"## {_group_title(extra)}",
                  "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for variant in VARIANTS:
            mine = [r for r in runs if r["variant"] == variant]
            if not mine:
                continue
            cells = [variant, ",".join(str(r["seed"]) for r in mine)]
            cells += [fmt(mean_std([r["test"][p][m] for r in mine])) for p in PROTOCOLS for m in METRICS]
            cells.append(f"{fmt(mean_std([r['drift_slice']['full']['NDCG@10'] for r in mine]))} "
                         f"({mine[0]['drift_slice']['users']})")
            cells.append(", ".join(str(r["best_epoch"]) for r in mine))
            cells.append(fmt(mean_std([r["examples_per_s"] for r in mine]), 0))
            cells.append(", ".join(f"{r['loadavg_1min'][0]:.1f}–{r['loadavg_1min'][1]:.1f}" for r in mine))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    prints = {r["split"] for r in results["runs"]}
    lines.append(f"Split fingerprint(s): {', '.join(sorted(prints))}.")
    return "\n".join(lines) + "\n"


def settled_table(results: dict, min_seeds: int = 3) -> list[str]:
    """The variants run with at least ``min_seeds`` seeds under a training budget, one Markdown
    table (docs/leaderboard.md's DEMN section): setting, variant, full / sampled / drift-slice
    NDCG@10."""
    head = ["setting", "variant", "seeds", "full NDCG@10", "sampled NDCG@10", "drift slice full NDCG@10"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for extra, runs in _groups(results).items():
        if not any(o.startswith("train.max_seconds=") for o in extra) or any(o.startswith("train.epochs=") for o in extra):
            continue
        for variant in VARIANTS:
            mine = [r for r in runs if r["variant"] == variant]
            if len(mine) < min_seeds:
                continue
            lines.append("| " + " | ".join([
                _setting(extra), variant, ",".join(str(r["seed"]) for r in mine),
                fmt(mean_std([r["test"]["full"]["NDCG@10"] for r in mine])),
                fmt(mean_std([r["test"]["sampled"]["NDCG@10"] for r in mine])),
                fmt(mean_std([r["drift_slice"]["full"]["NDCG@10"] for r in mine]))]) + " |")
    return lines


def _setting(extra: tuple[str, ...]) -> str:
    """What a budgeted table's runs share beyond the budget, in words."""
    rest = tuple(o for o in extra if not o.startswith(("train.max_seconds=", "train.clock=")))
    if all(o in rest for o in USER_READ_STEPS):
        label, rest = "last-item read, Δ = 1 step", tuple(o for o in rest if o not in USER_READ_STEPS)
    elif 'model.clock="steps"' in rest:
        label, rest = "per-candidate reads, Δ = 1 step", tuple(o for o in rest if o != 'model.clock="steps"')
    else:
        label = "per-candidate reads, default clock"
    return label + "".join(f", {o}" for o in rest)


def _groups(results: dict) -> dict[tuple, list[dict]]:
    """The runs by the overrides they share beyond their variant's and seed (one table each)."""
    groups: dict[tuple, list[dict]] = {}
    for r in results["runs"]:
        extra = tuple(o for o in r["overrides"] if o not in VARIANTS.get(r["variant"], ()) and not o.startswith("train.seed="))
        groups.setdefault(extra, []).append(r)
    return groups


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        print(json.dumps(run_child(json.loads(sys.argv[2]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run")
    run.add_argument("--variants", default=",".join(VARIANTS))
    run.add_argument("--seeds", default="0,1,2")
    run.add_argument("--set", action="append", default=[], dest="extra",
                     help="extra overrides for every run (e.g. train.epochs=1 for a smoke)")
    sub.add_parser("report")
    args = parser.parse_args()
    results = load_results()
    if args.command == "report":
        save(results)
        return
    variants = [v.strip() for v in args.variants.split(",")]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    with tempfile.TemporaryDirectory(prefix="demn_ablations_") as workdir:
        for seed in (int(s) for s in args.seeds.split(",")):
            for variant in variants:
                overrides = [*VARIANTS[variant], f"train.seed={seed}", *args.extra]
                wanted = {"variant": variant, "seed": seed, "overrides": overrides}
                if any(same_run(r, wanted) for r in results["runs"]):
                    print(f"{variant} seed {seed}: done already, skipped", flush=True)
                    continue
                record = spawn(variant, seed, args.extra, Path(workdir))
                results = load_results()               # another run process may have added runs
                results["runs"] = [r for r in results["runs"] if not same_run(r, record)] + [record]
                save(results)                          # after every run: an interruption loses one
                print(f"{variant} seed {seed}: full NDCG@10 {record['test']['full']['NDCG@10']:.4f}, "
                      f"drift slice {record['drift_slice']['full']['NDCG@10']:.4f}", flush=True)


if __name__ == "__main__":
    main()
