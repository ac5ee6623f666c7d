"""Baselines on MovieLens-100K: accuracy, time and memory, one subprocess per model run.

Every rating of the raw ``u.data`` is an interaction; the split is leave-one-out with 100 fixed
sampled negatives per user and the split seed fixed (``data.seed = 0``), so every run sees the
same split (checked: each run reports a fingerprint of its ``split.npz`` arrays). Models use the
shipped ``configs/<model>_ml-100k.toml`` (``pop`` has none: defaults). Gradient models run
several training seeds (``train.seed``); closed-form models are deterministic and run once.

Each run is a child process (``--child``) that calls :func:`memrec.runs.train_run` — exactly what
``memrec train`` does — and reports, at its end, its own peak RSS, imports included (``VmHWM``:
on Linux ``ru_maxrss`` inherits the parent's peak across fork/exec). ``--tune`` adds a small
validation-only sanity check of a few hyper-parameters.

    PYTHONPATH=src .venv/bin/python benchmarks/baselines_ml100k.py            # ~12 min on 2 CPUs (bprmf)
    PYTHONPATH=src .venv/bin/python benchmarks/baselines_ml100k.py --tune     # + ~8 min

Writes ``benchmarks/results/baselines_ml100k.json`` and ``.md``.
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
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k" / "raw" / "u.data"
RESULTS = ROOT / "benchmarks" / "results"
MODELS = ("pop", "itemknn", "rp3beta", "ease", "bprmf")
GRADIENT_MODELS = {"bprmf"}
METRICS = ("HR@10", "NDCG@10", "MRR@10")
PROTOCOLS = ("full", "sampled")
# validation-only sanity grid: model -> list of --set overrides
TUNING = {
    "bprmf": [["train.lr=0.001"], ["train.lr=0.005"]],
    "ease": [[f"model.l2={v}"] for v in (25.0, 50.0, 100.0, 250.0, 500.0, 1000.0)],
    "rp3beta": [[f"model.beta={v}"] for v in (0.3, 0.4, 0.5, 0.6, 0.7)],
}


def config_path(model: str) -> Path | None:
    path = ROOT / "configs" / f"{model}_ml-100k.toml"
    return path if path.is_file() else None


# -- child: one training run ------------------------------------------------------------------
def run_child(spec: dict) -> dict:
    """Train + test one configuration in this process; return what the parent records."""
    import torch
    from memrec.runs import train_run
    from memrec.training.config import load_config

    config = load_config(spec["model"], spec["config"], spec["overrides"])
    out = Path(spec["out"])
    results = train_run(config, spec["data"], out, progress=False, echo=lambda line: None)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    best = next((r for r in log if r["epoch"] == results["best_epoch"]), log[-1])
    return {
        "model": spec["model"], "overrides": spec["overrides"], "seed": config.train.seed,
        "best_epoch": results["best_epoch"], "epochs_run": log[-1]["epoch"],
        "train_seconds": results["train_seconds"], "eval_seconds": results["eval_seconds"],
        "test": {p: {m: results["metrics"][p][m] for m in METRICS} for p in results["metrics"]},
        "valid": best.get("valid"),
        "peak_rss_mb": peak_rss_mb(),
        "torch_threads": torch.get_num_threads(),
        "split": split_fingerprint(out / "split.npz"),
    }


def spawn(model: str, overrides: list[str], workdir: Path, data: Path, threads: int | None) -> dict:
    """Run one configuration in a fresh Python process and return its record."""
    out = workdir / "_".join([model, *(o.replace("=", "-") for o in overrides)])
    cfg = config_path(model)
    spec = {"model": model, "config": str(cfg) if cfg else None, "overrides": overrides,
            "out": str(out), "data": str(data)}
    env = child_env(threads)
    load_before = os.getloadavg()[0]  # the machine may be shared: record how busy it was
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{model} {overrides} failed:\n{proc.stderr[-3000:]}")
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    record["loadavg_1min"] = [load_before, os.getloadavg()[0]]
    return record


# -- parent: the benchmark --------------------------------------------------------------------
def import_rss_mb() -> float:
    """Peak RSS of a child that only imports memrec and torch: the floor under every run."""
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import torch, memrec.runs; "
            "from common import child_env, fmt, mean_std, peak_rss_mb, split_fingerprint; print(peak_rss_mb())")
    out = subprocess.run([sys.executable, "-c", code], env=child_env(None), capture_output=True,
                         text=True, check=True)
    return float(out.stdout.strip())


def split_statistics(data: Path) -> dict:
    from memrec.runs import prepare_split
    from memrec.training.config import DataConfig

    _, split = prepare_split(data, DataConfig(split="loo", n_negatives=100, seed=0))
    train = split.train
    return {"users": train.n_users, "items": train.n_items,
            "interactions": len(train) + len(split.valid) + len(split.test),
            "train": len(train), "valid": len(split.valid), "test": len(split.test),
            "test_users": int(len(split.test_negatives.users)), "negatives_per_user": 100}


def same_config(model: str, overrides: list[str], other: list[str]) -> bool:
    """Whether two override lists give the same run config (then one run serves both)."""
    from memrec.training.config import load_config
    cfg = config_path(model)
    return load_config(model, cfg, ["train.seed=0", *overrides]).to_json() == \
        load_config(model, cfg, ["train.seed=0", *other]).to_json()


def summarise(model: str, runs: list[dict]) -> dict:
    cfg = config_path(model)
    out = {"model": model, "config": str(cfg.relative_to(ROOT)) if cfg else None,
           "seeds": [r["seed"] for r in runs], "best_epochs": [r["best_epoch"] for r in runs]}
    for p in PROTOCOLS:
        for m in METRICS:
            out[f"{p}/{m}"] = mean_std([r["test"][p][m] for r in runs])
    for key in ("train_seconds", "eval_seconds", "peak_rss_mb"):
        out[key] = mean_std([r[key] for r in runs])
    return out


def markdown(report: dict) -> str:
    s, m = report["split"], report["machine"]
    loads = [x for r in report["runs"] + report["tuning"] for x in r["loadavg_1min"]]
    head = ["model", "runs"] + [f"{p} {x}" for p in PROTOCOLS for x in METRICS] + [
        "train s", "eval s", "peak RSS MB"]
    lines = ["# Baselines on MovieLens-100K (leave-one-out)", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in report["summary"]:
        cells = [row["model"], str(len(row["seeds"]))]
        cells += [fmt(row[f"{p}/{x}"]) for p in PROTOCOLS for x in METRICS]
        cells += [fmt(row["train_seconds"], 2), fmt(row["eval_seconds"], 2), fmt(row["peak_rss_mb"], 0)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["",
              "Metrics on the test item, mean ± std (n−1) over training seeds where runs > 1; "
              "full = rank all items except the user's train+valid items, sampled = the test item "
              "vs 100 fixed negatives. eval s = test evaluation, both protocols. Peak RSS = the "
              f"child process's own peak (VmHWM), which includes {report['import_rss_mb']:.0f} MB for "
              "importing torch + memrec alone.", "",
              f"Split: {s['interactions']:,} interactions, {s['users']:,} users, {s['items']:,} items; "
              f"train {s['train']:,} / valid {s['valid']:,} / test {s['test']:,}; "
              f"{s['test_users']:,} test users × {s['negatives_per_user']} negatives; "
              f"split fingerprint {report['split_fingerprint']} (identical for every run).", "",
              f"Machine: {m['nproc']} CPUs (nproc), torch {m['torch']} with {m['torch_threads']} "
              f"thread(s) per run, Python {m['python']}, {m['platform']}; run {report['date']}. 1-min load "
              f"average around the runs: {min(loads):.1f}–{max(loads):.1f} (≈1 = one core busy with "
              "the benchmark; more means the machine was shared and times are inflated). "
              f"Command: `{report['command']}`."]
    if report.get("tuning"):
        lines += ["", "## Validation sanity check (validation item, full ranking; not test)", "",
                  "| model | setting | valid NDCG@10 | valid HR@10 | best epoch |",
                  "|---|---|---|---|---|"]
        for t in report["tuning"]:
            v = t["valid"]["full"]
            lines.append(f"| {t['model']} | {' '.join(t['overrides'])} | {v['NDCG@10']:.4f} | "
                         f"{v['HR@10']:.4f} | {t['best_epoch']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="ML-100K u.data")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--seeds", type=int, default=3, help="training seeds for gradient models")
    parser.add_argument("--tune", action="store_true", help="also run the validation sanity grid")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch/OpenMP threads per run (default: torch's default, one per core)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_child(json.loads(args.child))))
        return

    import torch
    runs, tuning = [], []
    with tempfile.TemporaryDirectory(prefix="memrec-bench-") as tmp:
        for model in args.models:
            seeds = range(args.seeds) if model in GRADIENT_MODELS else [0]
            for seed in seeds:
                runs.append(spawn(model, [f"train.seed={seed}"], Path(tmp), args.data, args.threads))
                print(f"{model} seed {seed}: {runs[-1]['test']}", file=sys.stderr, flush=True)
        if args.tune:
            for model, grid in TUNING.items():
                for overrides in grid if model in args.models else []:
                    same = next((r for r in runs if r["model"] == model and r["seed"] == 0
                                 and same_config(model, overrides, r["overrides"])), None)
                    record = dict(same or spawn(model, overrides, Path(tmp) / "tune", args.data,
                                                args.threads), overrides=overrides)
                    record.pop("test")  # selection looks at validation only
                    tuning.append(record)
                    print(f"tune {model} {overrides}: valid {record['valid']['full']['NDCG@10']:.4f}",
                          file=sys.stderr, flush=True)
    fingerprints = {r["split"] for r in runs + tuning}
    if len(fingerprints) != 1:
        raise RuntimeError(f"runs saw different splits: {fingerprints}")
    report = {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join(["benchmarks/baselines_ml100k.py", *sys.argv[1:]]),
        "data": str(args.data), "split": split_statistics(args.data),
        "split_fingerprint": fingerprints.pop(), "import_rss_mb": import_rss_mb(),
        "machine": {"nproc": os.cpu_count(), "torch_threads": runs[0]["torch_threads"],
                    "torch": torch.__version__, "python": platform.python_version(),
                    "platform": platform.platform()},
        "summary": [summarise(m, [r for r in runs if r["model"] == m]) for m in args.models],
        "runs": runs, "tuning": tuning,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "baselines_ml100k.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "baselines_ml100k.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
