"""Repeats vs new items on the session datasets: the simple session baselines beside STAMP with and
without the copy read, every metric split into repeat cases and new-item cases.

    PYTHONPATH=src .venv/bin/python benchmarks/session_repeat.py baselines yoochoose1_64   # ~2 min
    PYTHONPATH=src .venv/bin/python benchmarks/session_repeat.py baselines diginetica
    PYTHONPATH=src .venv/bin/python benchmarks/session_repeat.py stamp yoochoose1_64 --seeds 0,1,2
    PYTHONPATH=src .venv/bin/python benchmarks/session_repeat.py stamp yoochoose1_64 --repeat --seeds 0,1,2
    PYTHONPATH=src .venv/bin/python benchmarks/session_repeat.py leaderboard yoochoose1_64 [--rows stamp,stan]
    PYTHONPATH=src .venv/bin/python benchmarks/session_repeat.py report

Data: the SR-GNN files in ``../shared/data/<dataset>`` (session protocol: each test prefix ranks
every item for its next click; nothing is excluded). A case is a *repeat* when its target is
already among the prefix's clicks (Yoochoose 1/64: 26.6 %, Diginetica: 20.5 %), else *new*.

* ``baselines``: repeat-by-recency, SKNN, V-SKNN, STAN fitted on all training sessions (what
  ``memrec train NAME`` ends with: validation on the carved sessions, then ``train.refit``). They
  learn nothing by gradient, so they run once. Their few hyper-parameters are session-rec's
  defaults, not tuned here: k = 100 neighbours from a sample of the 500 most recent sessions
  sharing an item; SKNN cosine; STAN λ1 = 1.02, λ2 = 5 "days", λ3 = 2.05 (the SR-GNN files have
  no time: their timestamps count clicks, so λ2 acts on 432,000 clicks).
* ``stamp``: STAMP with the shipped config (``configs/stamp_<dataset>.toml``: epochs chosen on
  validation sessions carved from training, then refit on all of them), ``--repeat`` adding
  ``model.repeat = true`` (the copy read); ``--seeds`` runs each seed; ``--set`` overrides as in
  ``memrec train`` (``--set train.epochs=1 --set train.refit=false`` for a smoke run, stored
  under its own ``--label``).
* ``leaderboard``: the rows of ``benchmarks/leaderboard.py`` for the dataset (every model, the
  baselines and ``stamp+copy`` included, tuned with the same budget, 3 seeds), their saved seed
  models evaluated again with the repeat / new split.
* ``report`` writes ``benchmarks/results/session_repeat.md`` from the JSON; every row of a run
  records its seconds, the thread count and the 1-minute load average.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results" / "session_repeat.json"
REPORT = RESULTS.with_suffix(".md")
DATASETS = ("yoochoose1_64", "diginetica")
BASELINES = ("recency", "sknn", "vsknn", "stan")
K = 20


# -- evaluation split by repeat / new ------------------------------------------------------------
def split_metrics(model, cases, batch_size: int = 512) -> dict:
    """P@20 (= HR@20, one target) and MRR@20 over all test cases, the repeat cases and the new-item
    cases (the same tie-exact metrics as ``memrec evaluate``)."""
    import numpy as np
    import torch

    from memrec.data.repeats import case_repeats
    from memrec.metrics import metric_values, rank_counts
    from memrec.models.capabilities import make_query
    repeat = torch.as_tensor(case_repeats(cases))
    sums = {group: {"P@20": 0.0, "MRR@20": 0.0} for group in ("all", "repeat", "new")}
    model.eval()
    with torch.no_grad():
        for start in range(0, len(cases), batch_size):
            rows = np.arange(start, min(start + batch_size, len(cases)))
            scores = model.score_all(make_query(model, cases.users[rows], cases.indptr, cases.items, rows=rows,
                                                times=cases.times))
            relevant = torch.as_tensor(cases.targets[rows], dtype=torch.long)[:, None]
            values = metric_values(rank_counts(scores, relevant, torch.ones_like(relevant, dtype=torch.bool)), (K,))
            for group, keep in (("all", torch.ones(len(rows), dtype=torch.bool)), ("repeat", repeat[rows]),
                                ("new", ~repeat[rows])):
                sums[group]["P@20"] += float(values[f"HR@{K}"][keep].double().sum())
                sums[group]["MRR@20"] += float(values[f"MRR@{K}"][keep].double().sum())
    counts = {"all": len(cases), "repeat": int(repeat.sum()), "new": int((~repeat).sum())}
    return {group: {**{m: 100 * v / max(counts[group], 1) for m, v in metrics.items()}, "cases": counts[group]}
            for group, metrics in sums.items()}


def _load_1min() -> float:
    return os.getloadavg()[0]


def _record(dataset: str, label: str, run: dict) -> None:
    """Add one run to the results file (runs of other datasets and labels are kept)."""
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results.setdefault(dataset, {}).setdefault(label, []).append(run)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")


# -- runs ----------------------------------------------------------------------------------------
def run_baselines(dataset: str, models: list[str]) -> None:
    import torch

    from memrec.data.readers import load
    from memrec.models import build, effective_params
    split = load(DATA / dataset).given_split
    for name in models:
        load_before = _load_1min()
        model = build(name, split.train.n_users, split.train.n_items)
        start = time.perf_counter()
        model.fit_closed_form(split.train)
        fit_seconds = time.perf_counter() - start
        metrics = split_metrics(model, split.test_cases)
        seconds = time.perf_counter() - start
        _record(dataset, name, {"metrics": metrics, "params": effective_params(name, {}),
                                "fit_seconds": fit_seconds, "seconds": seconds, "seed": None,
                                "threads": torch.get_num_threads(), "load_1min": [load_before, _load_1min()]})
        print(f"{dataset} {name}: P@20 {metrics['all']['P@20']:.2f} MRR@20 {metrics['all']['MRR@20']:.2f} "
              f"(repeat {metrics['repeat']['P@20']:.2f} / {metrics['repeat']['MRR@20']:.2f}, "
              f"new {metrics['new']['P@20']:.2f} / {metrics['new']['MRR@20']:.2f}) in {seconds:.0f} s", flush=True)


def run_stamp(dataset: str, repeat: bool, seeds: list[int], overrides: list[str], label: str | None) -> None:
    import torch

    from memrec.recommender import Recommender
    from memrec.runs import prepare_split
    from memrec.training.config import load_config, with_seed
    settings = [*(["model.repeat=true"] if repeat else []), *overrides]
    config = load_config("stamp", ROOT / "configs" / f"stamp_{dataset}.toml", overrides=settings)
    _, split = prepare_split(DATA / dataset, config.data)
    label = label or ("stamp+copy" if repeat else "stamp")
    for seed in seeds:
        load_before = _load_1min()
        start = time.perf_counter()
        rec = Recommender.from_config(with_seed(config, seed)).fit_split(split, progress=False)
        metrics = split_metrics(rec.model_, split.test_cases)
        seconds = time.perf_counter() - start
        _record(dataset, label, {"metrics": metrics, "settings": settings, "seed": seed,
                                 "best_epoch": rec.result_.best_epoch, "refit_epochs": rec.result_.refit_epochs,
                                 "seconds": seconds, "threads": torch.get_num_threads(),
                                 "load_1min": [load_before, _load_1min()]})
        print(f"{dataset} {label} seed {seed}: P@20 {metrics['all']['P@20']:.2f} "
              f"MRR@20 {metrics['all']['MRR@20']:.2f} in {seconds:.0f} s", flush=True)


def run_leaderboard(dataset: str, only: set[str] | None = None) -> None:
    """Split the test metrics of every finished leaderboard row of ``dataset`` (each row tuned
    with the same budget by ``benchmarks/leaderboard.py``; its seeds' saved models) by repeat
    and new-item cases; recorded as ``ROW (leaderboard)``, replacing earlier records of it.
    ``only``: just these rows (the others keep their records)."""
    import torch

    from memrec.data.readers import load
    from memrec.recommender import Recommender
    cases = load(DATA / dataset).given_split.test_cases
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for row in sorted((ROOT / "benchmarks" / "results" / "leaderboard" / dataset).glob("*/results.json")):
        if only and row.parent.name not in only:
            continue
        label = f"{row.parent.name} (leaderboard)"
        runs = []
        seeds = [f for f in row.parent.glob("seed_*") if f.name[5:].isdigit()]     # not seed_S.superseded1
        for folder in sorted(seeds):
            run = json.loads((folder / "results.json").read_text())
            rec = Recommender.load(folder)
            runs.append({"metrics": split_metrics(rec.model_, cases), "seed": int(folder.name[5:]),
                         "seconds": run["train_seconds"], "threads": torch.get_num_threads(),
                         "load_1min": [_load_1min()], "study": str(row.parent.relative_to(ROOT))})
        results.setdefault(dataset, {})[label] = runs
        print(f"{dataset} {label}: P@20 " + "/".join(f"{r['metrics']['all']['P@20']:.2f}" for r in runs), flush=True)
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")


# -- report --------------------------------------------------------------------------------------
NOTES = """## How the rows were run

Rows named `(leaderboard)` come from `benchmarks/leaderboard.py` (`docs/leaderboard.md`): every
model, `stamp+copy` included, tuned by `memrec tune` with the same budget (10 trials within 600 s
of training per study, a hard budget: a trial still training when it runs out stops after its
epoch; the first trial is the model's recipe or defaults), selection on validation sessions
carved from the most recent 10 % of the training sessions, no refit, then the best settings
retrained with seeds 0, 1, 2 and tested; this script evaluates the seeds' saved models again with
the repeat / new split. Seconds are the seeds' training seconds. The other rows are earlier runs:
the baselines with session-rec's default hyper-parameters fitted on all training sessions, and
one-epoch smoke runs of STAMP (`--set train.epochs=1 --set train.refit=false`), which show where
the first epoch stands, not the models' accuracy.

What a 600 s budget buys differs by dataset. On Yoochoose 1/64 STAMP trains four epochs (≈ 100 s
an epoch on one thread with memrec's allocator, 37k items). On Diginetica an epoch (817k
training clicks, a full softmax over 43k items, d = 100) took 490–850 s at load 3–4, so every
STAMP row there trained **one epoch**: its trial ran past the budget to the end of that epoch
and stopped, and the seeds retrain that one epoch. Those rows say where one epoch stands, not
what STAMP reaches; the recipe (10 epochs chosen on validation, then a refit on all training
sessions) reached P@20 / MRR@20 44.35 / 14.40 on Diginetica in an earlier stop. The
training-free neighbourhood rows are unaffected by the budget. A fair Diginetica comparison
of the neural rows needs a budget of several epochs (≈ 3,000 s) for every row.
"""


def _cell(runs: list[dict], group: str, metric: str) -> str:
    import statistics
    values = [r["metrics"][group][metric] for r in runs]
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f}"


def report() -> None:
    results = json.loads(RESULTS.read_text())
    lines = ["# Repeats vs new items on the session datasets", "",
             "Written by `benchmarks/session_repeat.py report` from `session_repeat.json` "
             "(how each row was run: the script's docstring). Session protocol on the SR-GNN test "
             "files: each prefix ranks all items for its next click. P@20 = HR@20, MRR@20, in %; "
             "a *repeat* case's target is already in its prefix. Baselines: session-rec's default "
             "hyper-parameters (k = 100, sample 500; STAN λ1 1.02, λ2 5 days, λ3 2.05), not tuned. "
             "Mean ± std over seeds where there are several.", ""]
    for dataset, runs in results.items():
        first = next(iter(runs.values()))[0]["metrics"]
        share = first["repeat"]["cases"] / first["all"]["cases"]
        lines += [f"## {dataset}", "",
                  f"{first['all']['cases']:,} test cases, {first['repeat']['cases']:,} repeats ({share:.1%}).", "",
                  "| model | seeds | P@20 | MRR@20 | P@20 repeat | MRR@20 repeat | P@20 new | MRR@20 new | s (per run) | load 1 min |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for label, rows in runs.items():
            seeds = ",".join(str(r["seed"]) for r in rows) if rows[0]["seed"] is not None else "–"
            seconds = "/".join(f"{r['seconds']:.0f}" for r in rows)
            load = "/".join(f"{max(r['load_1min']):.1f}" for r in rows)
            lines.append(f"| {label} | {seeds} | " + " | ".join(
                _cell(rows, g, m) for g in ("all", "repeat", "new") for m in ("P@20", "MRR@20"))
                + f" | {seconds} | {load} |")
        lines.append("")
    lines += [NOTES]
    REPORT.write_text("\n".join(lines))
    print(f"wrote {REPORT}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("baselines")
    b.add_argument("dataset", choices=DATASETS)
    b.add_argument("--models", default=",".join(BASELINES))
    s = sub.add_parser("stamp")
    s.add_argument("dataset", choices=DATASETS)
    s.add_argument("--repeat", action="store_true", help="model.repeat = true: the copy read")
    s.add_argument("--seeds", default="0")
    s.add_argument("--set", dest="overrides", action="append", default=[], help="SECTION.KEY=VALUE")
    s.add_argument("--label", default=None, help="the row's name (default stamp / stamp+copy)")
    lb = sub.add_parser("leaderboard", help="split the finished leaderboard rows of DATASET")
    lb.add_argument("dataset", choices=DATASETS)
    lb.add_argument("--rows", default="", help="only these rows (comma list; default: every finished one)")
    sub.add_parser("report")
    args = parser.parse_args()
    if args.command == "baselines":
        run_baselines(args.dataset, args.models.split(","))
    elif args.command == "stamp":
        run_stamp(args.dataset, args.repeat, [int(s) for s in args.seeds.split(",")], args.overrides, args.label)
    elif args.command == "leaderboard":
        run_leaderboard(args.dataset, set(filter(None, args.rows.split(","))) or None)
    else:
        report()


if __name__ == "__main__":
    main()
