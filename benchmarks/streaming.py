"""NMRN (GAN / uniform / popularity negatives, fast / exact mode) beside the library's other models
under the streaming protocol (:mod:`memrec.streaming`).

The stream: all interactions of ``../shared/data/<dataset>`` in time order (ML-100K: timestamps;
amazon-games: each user's file order, users interleaved by relative position). The first 50 %
trains offline (its last 10 % chooses the epoch); the rest is 5 consecutive slices; each slice is
first scored (every event's user, all items ranked, HR@10 / NDCG@10), then fed to the model
(``frozen``, ``retrain`` or ``online``). One process per run (peak RSS, one torch thread).

    PYTHONPATH=src .venv/bin/python benchmarks/streaming.py run ml-100k            # the whole suite
    PYTHONPATH=src .venv/bin/python benchmarks/streaming.py run ml-100k --only nmrn-gan,pop-frozen
    PYTHONPATH=src .venv/bin/python benchmarks/streaming.py run amazon-games --only nmrn-gan --extra train.epochs=8
    PYTHONPATH=src .venv/bin/python benchmarks/streaming.py report                 # tables only

Results: ``benchmarks/results/streaming.json`` (a run of the same dataset and label is replaced)
and ``streaming.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from common import child_env, peak_rss_mb

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
DATA_PATHS = {"ml-100k": DATA / "ml-100k" / "raw", "amazon-games": DATA / "amazon-games"}

#: label → (model, update, overrides); configs/<model>_<dataset>.toml when it exists
SUITE = {
    "nmrn-gan": ("nmrn", "online", []),
    "nmrn-uniform": ("nmrn", "online", ['train.sampler="uniform"']),
    "nmrn-popularity": ("nmrn", "online", ['train.sampler="popularity"', "train.sampler_alpha=0.75"]),
    "nmrn-gan-frozen": ("nmrn", "frozen", []),
    "nmrn-gan-per-user": ("nmrn", "online", ['model.scope="per_user"']),
    "pop-frozen": ("pop", "frozen", []),
    "pop-retrain": ("pop", "retrain", []),
    "bprmf-frozen": ("bprmf", "frozen", []),
    "bprmf-retrain": ("bprmf", "retrain", []),
    "gru4rec-frozen": ("gru4rec", "frozen", []),
    "rumf-frozen": ("rumf", "frozen", []),
    "rumi-frozen": ("rumi", "frozen", []),
}
#: the fast-mode cost: NMRN with uniform negatives, micro-batch 256 vs exact event by event,
#: both for a fixed 2 offline epochs and online updates (the exact mode is ~100× slower)
EXACT = {
    "nmrn-uniform-2ep-batch256": ("nmrn", "online", ['train.sampler="uniform"', "train.epochs=2", "train.patience=0"]),
    "nmrn-uniform-2ep-exact": ("nmrn", "online", ['train.sampler="uniform"', "train.epochs=2", "train.patience=0",
                                                  'train.stream_mode="exact"']),
}
RUNS = {**SUITE, **EXACT}
HEADLINE = ("HR@10", "NDCG@10", "warm_HR@10", "warm_NDCG@10")


def config_path(model: str, dataset: str) -> Path | None:
    for name in (f"{model}_{dataset}.toml", f"{model}_ml-100k.toml"):
        if (ROOT / "configs" / name).is_file():
            return ROOT / "configs" / name
    return None


# -- child: one streaming run -------------------------------------------------------------------
def run_child(spec: dict) -> dict:
    import torch
    torch.set_num_threads(1)
    from memrec.data.readers import load
    from memrec.streaming import StreamConfig, run_stream
    from memrec.training.config import load_config

    config = load_config(spec["model"], spec["config"], spec["overrides"])
    data = load(spec["data"]).interactions
    start = time.perf_counter()
    result = run_stream(config, data, StreamConfig(update=spec["update"]),
                        echo=lambda line: print(line, file=sys.stderr, flush=True))
    result.update(label=spec["label"], dataset=spec["dataset"], overrides=spec["overrides"],
                  config_file=spec["config"], total_seconds=time.perf_counter() - start,
                  peak_rss_mb=peak_rss_mb(), torch_threads=torch.get_num_threads())
    return result


def spawn(label: str, dataset: str, extra: list[str]) -> dict:
    model, update, overrides = RUNS[label]
    overrides = [*overrides, *extra]
    cfg = config_path(model, dataset)
    spec = {"label": label, "dataset": dataset, "model": model, "update": update,
            "config": str(cfg) if cfg else None, "overrides": overrides, "data": str(DATA_PATHS[dataset])}
    load_before = os.getloadavg()[0]
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                          env=child_env(1), stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{label} on {dataset} failed (exit {proc.returncode})")
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    record["loadavg_1min"] = [load_before, os.getloadavg()[0]]
    return record


# -- report -------------------------------------------------------------------------------------
def load_results() -> dict:
    path = RESULTS / "streaming.json"
    return json.loads(path.read_text()) if path.is_file() else {"runs": []}


def markdown(results: dict) -> str:
    lines = ["# Streaming protocol", "",
             "Time-ordered stream; first 50 % offline (last 10 % of it for early stopping), then 5 "
             "consecutive slices, each scored (all items ranked; the user's known items excluded) "
             "and then fed to the model. `warm`: events of users with history before the slice. "
             "Update events/s: events fed per second of update (frozen: memory writes only).", ""]
    for dataset in DATA_PATHS:
        runs = [r for r in results["runs"] if r["dataset"] == dataset]
        if not runs:
            continue
        head = ["run", "model", "update", "negatives"] + [f"mean {m}" for m in HEADLINE] + \
               ["update events/s", "offline s", "best epoch", "peak RSS MB"]
        lines += [f"## {dataset}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in runs:
            m = r["mean"]
            negatives = r["config"]["train"]["sampler"] if r["model"] == "nmrn" else "–"
            cells = [r["label"], r["model"], r["update"], negatives]
            cells += [f"{m.get(k, float('nan')):.4f}" for k in HEADLINE]
            cells += [f"{m['update_events_per_s']:,.0f}", f"{r['offline']['seconds']:.0f}",
                      str(r["offline"]["best_epoch"]), f"{r['peak_rss_mb']:.0f}"]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", "Per slice (HR@10 / NDCG@10):", "",
                  "| run | " + " | ".join(f"slice {s['slice']}" for s in runs[0]["slices"]) + " |",
                  "|---|" + "---|" * len(runs[0]["slices"])]
        for r in runs:
            lines.append(f"| {r['label']} | " + " | ".join(
                f"{s['HR@10']:.4f} / {s['NDCG@10']:.4f}" for s in r["slices"]) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


def write(results: dict) -> None:
    from memrec.fileio import atomic_write_bytes, atomic_write_json
    atomic_write_json(RESULTS / "streaming.json", results)
    atomic_write_bytes(RESULTS / "streaming.md", markdown(results).encode())


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        print(json.dumps(run_child(json.loads(sys.argv[2]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run")
    run.add_argument("dataset", choices=tuple(DATA_PATHS))
    run.add_argument("--only", default=None, help="comma list of run labels (default: the suite)")
    run.add_argument("--extra", action="append", default=[], metavar="SECTION.KEY=VALUE",
                     help="an override for every run of this call (e.g. a shorter train.epochs)")
    sub.add_parser("report")
    args = parser.parse_args()
    results = load_results()
    if args.cmd == "run":
        labels = args.only.split(",") if args.only else list(SUITE)
        for label in labels:
            if label not in RUNS:
                raise SystemExit(f"unknown run {label!r}; known: {', '.join(RUNS)}")
        for label in labels:
            print(f"{dt.datetime.now():%H:%M:%S} {label} on {args.dataset}", flush=True)
            record = spawn(label, args.dataset, args.extra)
            record["machine"] = {"python": platform.python_version(), "cpu_count": os.cpu_count(),
                                 "date": f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%dT%H:%MZ}"}
            results["runs"] = [r for r in results["runs"]
                               if not (r["dataset"] == args.dataset and r["label"] == label)] + [record]
            write(results)
            m = record["mean"]
            print(f"  mean HR@10 {m['HR@10']:.4f} NDCG@10 {m['NDCG@10']:.4f} "
                  f"warm HR@10 {m.get('warm_HR@10', float('nan')):.4f} "
                  f"update {m['update_events_per_s']:,.0f} ev/s  ({record['total_seconds']:.0f}s)", flush=True)
    else:
        write(results)
    print((RESULTS / "streaming.md").read_text())


if __name__ == "__main__":
    main()
