"""RUM-I, RUM-F, FPMC, GRU4Rec beside BPR-MF, Pop and the item-based baselines on user sequences.

Datasets: ``../shared/data/amazon-games`` (SASRec's "Games", file order = time) and
``../shared/data/ml-100k`` (timestamps). One split per dataset: leave-one-out (last item → test,
the one before → valid), 100 fixed sampled negatives per user, split seed 0; every run checks
the split fingerprint. Models use ``configs/<model>_<dataset>.toml`` (falling back to the
ML-100K config for the baselines that have no dataset-specific one). Gradient models run with
several training seeds, each run a child process that calls :func:`memrec.runs.train_run`
(exactly ``memrec train``) and reports its peak RSS, training examples/s and seconds per epoch.

    PYTHONPATH=src .venv/bin/python benchmarks/sequential_users.py run ml-100k --seeds 0,1,2
    PYTHONPATH=src .venv/bin/python benchmarks/sequential_users.py run amazon-games --seeds 0
    PYTHONPATH=src .venv/bin/python benchmarks/sequential_users.py report    # tables only

``run`` adds to ``benchmarks/results/sequential_users.json`` (runs of the same model, dataset and
seed are replaced) and rewrites ``sequential_users.md``; RecBole 1.2.1's FPMC and GRU4Rec on the
same splits come from ``benchmarks/recbole_sequential.py`` (``results/recbole_sequential.json``)
and are shown beside ours when present.
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

from common import child_env, fmt, mean_std, peak_rss_mb, split_fingerprint

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
DATASETS = ("ml-100k", "amazon-games")
SEQUENTIAL = ("rumi", "rumf", "fpmc", "gru4rec")
BASELINES = ("pop", "itemknn", "rp3beta", "ease", "bprmf")
GRADIENT = set(SEQUENTIAL) | {"bprmf"}
METRICS = ("HR@10", "NDCG@10")
PROTOCOLS = ("full", "sampled")


def config_path(model: str, dataset: str) -> Path | None:
    for name in (f"{model}_{dataset}.toml", f"{model}_ml-100k.toml"):
        if (ROOT / "configs" / name).is_file():
            return ROOT / "configs" / name
    return None


# -- child: one training run ------------------------------------------------------------------
def run_child(spec: dict) -> dict:
    import torch
    from memrec.runs import train_run
    from memrec.training.config import load_config

    config = load_config(spec["model"], spec["config"], spec["overrides"])
    out = Path(spec["out"])
    results = train_run(config, spec["data"], out, progress=False, echo=lambda line: None)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    epochs = [r for r in log if "examples_per_s" in r]
    return {
        "model": spec["model"], "dataset": spec["dataset"], "seed": config.train.seed,
        "config": spec["config"], "overrides": spec["overrides"],
        "best_epoch": results["best_epoch"], "epochs_run": log[-1]["epoch"] if log else 0,
        "train_seconds": results["train_seconds"], "eval_seconds": results["eval_seconds"],
        "seconds_per_epoch": mean_std([r["seconds"] for r in epochs])["mean"] if epochs else 0.0,
        "examples_per_s": mean_std([r["examples_per_s"] for r in epochs])["mean"] if epochs else 0.0,
        "test": {p: {m: results["metrics"][p][m] for m in METRICS} for p in results["metrics"]},
        "peak_rss_mb": peak_rss_mb(), "torch_threads": torch.get_num_threads(),
        "split": split_fingerprint(out / "split.npz"),
    }


def spawn(model: str, dataset: str, seed: int, workdir: Path, threads: int | None,
          extra: list[str]) -> dict:
    cfg = config_path(model, dataset)
    overrides = [f"train.seed={seed}", *extra]
    spec = {"model": model, "dataset": dataset, "config": str(cfg) if cfg else None,
            "overrides": overrides, "out": str(workdir / f"{model}_{dataset}_{seed}"),
            "data": str(DATA / dataset)}
    load_before = os.getloadavg()[0]          # the machine may be shared: record how busy it was
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                          env=child_env(threads), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{model} on {dataset} (seed {seed}) failed:\n{proc.stderr[-3000:]}")
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    record["loadavg_1min"] = [load_before, os.getloadavg()[0]]
    return record


# -- report -------------------------------------------------------------------------------------
def load_results() -> dict:
    path = RESULTS / "sequential_users.json"
    return json.loads(path.read_text()) if path.is_file() else {"runs": []}


def summarise(runs: list[dict]) -> dict:
    out = {"seeds": [r["seed"] for r in runs], "best_epochs": [r["best_epoch"] for r in runs]}
    for p in PROTOCOLS:
        for m in METRICS:
            out[f"{p}/{m}"] = mean_std([r["test"][p][m] for r in runs])
    for key in ("seconds_per_epoch", "examples_per_s", "train_seconds", "peak_rss_mb"):
        out[key] = mean_std([r[key] for r in runs])
    return out


def recbole_rows(dataset: str) -> list[dict]:
    """RecBole's runs on ``dataset`` from ``recbole_sequential.json`` ({dataset: {name: run}})."""
    path = RESULTS / "recbole_sequential.json"
    runs = json.loads(path.read_text()).get(dataset, {}) if path.is_file() else {}
    return [{"name": name, **run} for name, run in runs.items()]


def markdown(results: dict) -> str:
    lines = ["# Sequential user models (leave-one-out)", ""]
    head = ["model", "runs"] + [f"{p} {m}" for p in PROTOCOLS for m in METRICS] + [
        "s/epoch", "train ex/s", "train s", "best epoch", "peak RSS MB"]
    for dataset in DATASETS:
        runs = [r for r in results["runs"] if r["dataset"] == dataset]
        if not runs:
            continue
        prints = {r["split"] for r in runs}
        lines += [f"## {dataset}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for model in SEQUENTIAL + BASELINES:
            mine = [r for r in runs if r["model"] == model]
            if not mine:
                continue
            s = summarise(mine)
            gradient = model in GRADIENT
            cells = [model, str(len(mine))] + [fmt(s[f"{p}/{m}"]) for p in PROTOCOLS for m in METRICS]
            cells += [fmt(s["seconds_per_epoch"], 1) if gradient else "–",
                      fmt(s["examples_per_s"], 0) if gradient else "–",
                      fmt(s["train_seconds"], 1), ", ".join(map(str, s["best_epochs"])) if gradient else "–",
                      fmt(s["peak_rss_mb"], 0)]
            lines.append("| " + " | ".join(cells) + " |")
        for r in recbole_rows(dataset):
            cells = [r["name"], "1"] + [f"{r[p][m]:.4f}" for p in PROTOCOLS for m in METRICS]
            cells += [f"{r['seconds_per_epoch']:.1f}", "–", f"{r['train_seconds']:.1f}",
                      str(r["best_epoch"]), f"{r['peak_rss_mb']:.0f}"]
            lines.append("| " + " | ".join(cells) + " |")
        loads = [x for r in runs for x in r["loadavg_1min"]]
        lines += ["", f"Split fingerprint(s): {', '.join(sorted(prints))}. 1-min load average around "
                  f"the runs {min(loads):.1f}–{max(loads):.1f} on {os.cpu_count()} CPUs "
                  "(≈1 = one core busy with the run; more: shared machine, times inflated).", ""]
    lines += ["Test item metrics, mean ± std (n−1) over training seeds; full = rank every item except "
              "the user's train+valid items; sampled = the test item vs 100 fixed negatives. "
              "s/epoch and ex/s = training only (every prefix of every training sequence is one "
              "example for the sequential models, one (user, item) pair for BPR-MF). "
              "RecBole rows: RecBole 1.2.1 trained on the same split (benchmarks/recbole_sequential.py), "
              "scored with our full and sampled protocols.",
              "", f"Machine: torch threads per run {results.get('torch_threads', '?')}, "
              f"{results.get('machine', '')}; updated {results.get('date', '')}."]
    return "\n".join(lines) + "\n"


# -- speed: one training epoch, ours and RecBole's, back to back -------------------------------------
def time_ours(model: str, dataset: str, batch_size: int, threads: int) -> dict:
    """One training epoch of our model with its shipped config at ``batch_size`` (a fresh process;
    validation and test on the sampled protocol only, to keep the run short)."""
    with tempfile.TemporaryDirectory() as tmp:
        spec = {"model": model, "dataset": dataset, "config": str(config_path(model, dataset)),
                "overrides": ["train.epochs=1", f"train.batch_size={batch_size}",
                              "train.valid_protocol=\"sampled\"", "train.test_protocols=\"sampled\""],
                "out": str(Path(tmp) / "run"), "data": str(DATA / dataset)}
        proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                              env=child_env(threads), capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{model} speed run failed:\n{proc.stderr[-3000:]}")
        record = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"seconds_per_epoch": record["seconds_per_epoch"], "examples_per_s": record["examples_per_s"],
            "peak_rss_mb": record["peak_rss_mb"]}


def time_recbole(model: str, dataset: str, folder: Path, threads: int, venv: Path) -> dict:
    from recbole_sequential import run_recbole
    report, _ = run_recbole(model, dataset, folder, 1, 0, venv, threads)
    return {"seconds_per_epoch": report["history"][0]["seconds"], "peak_rss_mb": report["peak_rss_mb"]}


def speed(dataset: str, models: list[str], batch_size: int, threads: int, venv: Path) -> dict:
    """Per model: our epoch, then RecBole's (FPMC, GRU4Rec) right after, same batch size and
    threads, so the ratio sees the same machine load."""
    from recbole_sequential import export_split
    peers = {"fpmc": "FPMC", "gru4rec": "GRU4Rec", "stamp": "STAMP"}
    out = {"dataset": dataset, "batch_size": batch_size, "threads": threads, "models": {},
           "date": dt.datetime.now().astimezone().isoformat(timespec="seconds")}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / f"{dataset}-loo"
        export_split(dataset, folder)
        for model in models:
            row = {"ours": time_ours(model, dataset, batch_size, threads),
                   "loadavg_1min": os.getloadavg()[0]}
            if model in peers:
                row["recbole"] = time_recbole(peers[model], dataset, folder, threads, venv)
                row["speedup"] = row["recbole"]["seconds_per_epoch"] / row["ours"]["seconds_per_epoch"]
            out["models"][model] = row
            print(f"{model}: {json.dumps(row)}", file=sys.stderr, flush=True)
    return out


def speed_markdown(runs: dict) -> str:
    lines = ["# One training epoch, ours vs RecBole 1.2.1 (same split, batch size and threads)", "",
             "| dataset | batch | model | ours s/epoch | ours ex/s | ours peak MB | RecBole s/epoch | "
             "RecBole peak MB | RecBole / ours |", "|---|---|---|---|---|---|---|---|---|"]
    for run in runs.values():
        for model, row in run["models"].items():
            o, r = row["ours"], row.get("recbole")
            lines.append(f"| {run['dataset']} | {run['batch_size']} | {model} | {o['seconds_per_epoch']:.1f} | "
                         f"{o['examples_per_s']:.0f} | {o['peak_rss_mb']:.0f} | "
                         + (f"{r['seconds_per_epoch']:.1f} | {r['peak_rss_mb']:.0f} | {row['speedup']:.2f}× |"
                            if r else "– | – | – |"))
    lines += ["", "Training time of one epoch only (no evaluation), one thread each, ours first and "
              "RecBole's right after for the same model. Ours trains every prefix of a user's "
              "sequence from one pass over it; RecBole has one row (history cut to 50 items) per "
              "prefix. Peak MB = the process's VmHWM (RecBole's includes its data loading).", ""]
    return "\n".join(lines)


def key(run: dict) -> tuple:
    return run["model"], run["dataset"], run["seed"]


def save(results: dict, new: list[dict] = ()) -> dict:
    """Merge ``new`` runs into the file as it is now (another dataset's benchmark may be writing
    it too), replacing runs with the same model, dataset and seed; rewrite json and markdown."""
    current = load_results()
    replaced = {key(r) for r in new}
    current["runs"] = [r for r in current["runs"] if key(r) not in replaced] + list(new)
    current.update({k: v for k, v in results.items() if k != "runs"})
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name, text in (("sequential_users.json", json.dumps(current, indent=2) + "\n"),
                       ("sequential_users.md", markdown(current))):
        tmp = RESULTS / (name + ".tmp")
        tmp.write_text(text)
        tmp.replace(RESULTS / name)
    return current


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(run_child(json.loads(sys.argv[2]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train and test models on one dataset")
    run.add_argument("dataset", choices=DATASETS)
    run.add_argument("--models", default=",".join(SEQUENTIAL + BASELINES))
    run.add_argument("--seeds", default="0", help="training seeds of the gradient models, e.g. 0,1,2")
    run.add_argument("--threads", type=int, default=1)
    run.add_argument("--set", dest="extra", action="append", default=[],
                     help="extra config override for every run (e.g. train.epochs=5 for a smoke run)")
    sub.add_parser("report", help="rewrite the markdown from the json")
    sp = sub.add_parser("speed", help="one training epoch, ours and RecBole's, back to back")
    sp.add_argument("dataset", choices=DATASETS)
    sp.add_argument("--models", default=",".join(SEQUENTIAL))
    sp.add_argument("--batch-size", type=int, default=2048, help="RecBole's default train_batch_size")
    sp.add_argument("--threads", type=int, default=1)
    sp.add_argument("--venv", type=Path, default=ROOT.parent / "recbole-venv")
    args = parser.parse_args()
    results: dict = {}
    if args.command == "speed":
        path = RESULTS / "sequential_speed.json"
        runs = json.loads(path.read_text()) if path.is_file() else {}
        runs[f"{args.dataset}/{args.batch_size}"] = speed(args.dataset, args.models.split(","),
                                                          args.batch_size, args.threads, args.venv)
        path.write_text(json.dumps(runs, indent=2) + "\n")
        path.with_suffix(".md").write_text(speed_markdown(runs))
        print(speed_markdown(runs))
        return
    if args.command == "run":
        import torch
        seeds = [int(s) for s in args.seeds.split(",")]
        mine: list[dict] = []
        with tempfile.TemporaryDirectory() as tmp:
            for model in args.models.split(","):
                for seed in (seeds if model in GRADIENT else [0]):
                    record = spawn(model, args.dataset, seed, Path(tmp), args.threads, args.extra)
                    print(f"{model} {args.dataset} seed {seed}: full NDCG@10 "
                          f"{record['test']['full']['NDCG@10']:.4f}, {record['seconds_per_epoch']:.1f} s/epoch",
                          file=sys.stderr, flush=True)
                    results.update(date=dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                                   torch_threads=record["torch_threads"],
                                   machine=f"torch {torch.__version__}, Python {platform.python_version()}, "
                                           f"{platform.platform()}")
                    mine.append(record)
                    save(results, mine)              # after every run: a crash loses nothing
    print(markdown(save(results)))


if __name__ == "__main__":
    main()
