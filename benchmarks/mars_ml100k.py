"""MARS (reconstruction) beside the baselines: ML-100K leave-one-out, ML-100K with the paper's
metric family (per-user random split, Recall@M / MAP@M, M = 20…100), and citeulike-a's own split.

Sections (run one or several; each writes its part of the results file as soon as it ends):

* ``loo`` — leave-one-out on ML-100K, split seed 0: the split of
  ``benchmarks/results/baselines_ml100k.json`` (checked by the split fingerprint), so the
  baselines' numbers there are quoted, not rerun. MARS with the shipped config over
  ``--seeds`` training seeds, plus one-seed ablations (additive attention, no leave-self-out,
  no MLP).
* ``random`` — the paper's protocol family (spec §2(e)): per-user random 70/10/20
  train/valid/test split, every non-training item ranked, Recall@M and MAP@M for
  M ∈ {20, 40, 60, 80, 100}; MARS and the baselines with their shipped ML-100K configs.
* ``citeulike`` — citeulike-a with its own split (1 test positive + 100 negatives per user,
  validation carved from train), MARS vs the numbers of ``benchmarks/results/cmn_citeulike.json``.

Every run is ``memrec.runs.prepare_split`` + ``Recommender.fit_split`` + ``Evaluator`` — what
``memrec train`` does — in this process, one at a time, 1 thread.

    PYTHONPATH=src .venv/bin/python benchmarks/mars_ml100k.py loo random citeulike --seeds 2

Writes ``benchmarks/results/mars.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from common import fmt, mean_std, peak_rss_mb, split_fingerprint

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
ML100K = SHARED / "ml-100k" / "raw" / "u.data"
CITEULIKE = SHARED / "citeulike-a" / "citeulike-a.npz"
RESULTS = ROOT / "benchmarks" / "results"
PAPER_KS = (20, 40, 60, 80, 100)
BASELINES = ("pop", "itemknn", "rp3beta", "ease", "bprmf")
ABLATIONS = {"additive attention": ["model.attention=\"additive\""],
             "no leave-self-out": ["model.leave_self_out=false"],
             "no MLP (mlp_layers 0)": ["model.mlp_layers=0"]}


#: set from the command line: extra --set overrides for every gradient run (epoch caps), and a
#: callback that saves the results file after every run
CAPS: list[str] = []
SAVE = lambda: None  # noqa: E731


def config_path(model: str, dataset: str = "ml-100k") -> Path | None:
    path = ROOT / "configs" / f"{model}_{dataset}.toml"
    return path if path.is_file() else None


def run_one(model: str, data: Path, overrides: list[str], seed: int, ks=(5, 10, 20),
            protocols=("full", "sampled"), dataset: str = "ml-100k") -> dict:
    """Train + test one configuration; the split is saved to fingerprint it."""
    import torch
    from memrec.data.split_io import save_split
    from memrec.evaluation import Evaluator
    from memrec.recommender import Recommender
    from memrec.runs import prepare_split
    from memrec.training.config import load_config
    torch.set_num_threads(1)
    caps = CAPS if model in ("mars", "bprmf") else []
    config = load_config(model, config_path(model, dataset), overrides + caps + [f"train.seed={seed}"])
    _, split = prepare_split(data, config.data)
    with tempfile.TemporaryDirectory() as tmp:
        save_split(Path(tmp) / "split.npz", split)
        fingerprint = split_fingerprint(Path(tmp) / "split.npz")
    rec = Recommender.from_config(config).fit_split(split, progress=False, echo=lambda line: None)
    start = time.perf_counter()
    metrics = Evaluator(split, "test", protocols=protocols, ks=ks,
                        batch_size=config.train.eval_batch_size).evaluate(rec.model_)
    print(f"  {model} {' '.join(overrides + caps)} seed {seed}: best epoch "
          f"{rec.result_.best_epoch}, {rec.result_.train_seconds:.0f}s", flush=True)
    return {"model": model, "overrides": overrides + caps, "seed": seed, "metrics": metrics,
            "best_epoch": rec.result_.best_epoch, "train_seconds": rec.result_.train_seconds,
            "eval_seconds": time.perf_counter() - start, "split_fingerprint": fingerprint,
            "peak_rss_mb": peak_rss_mb()}


def section_loo(seeds: int, out: dict, ablations=tuple(ABLATIONS), baselines=()) -> dict:
    out.setdefault("mars", [])
    out.setdefault("ablations", {})
    for s in range(seeds):
        out["mars"].append(run_one("mars", ML100K, [], s))
        SAVE()
    for name in ablations:
        out["ablations"][name] = run_one("mars", ML100K, ABLATIONS[name], 0)
        SAVE()
    return out


def section_random(seeds: int, out: dict, ablations=(), baselines=BASELINES) -> dict:
    split = ["data.split=\"random\"", "data.test_frac=0.2", "data.valid_frac=0.1",
             "train.test_protocols=\"full\""]
    out.setdefault("mars", [])
    for s in range(seeds):
        out["mars"].append(run_one("mars", ML100K, split, s, PAPER_KS, ("full",)))
        SAVE()
    for name in baselines:
        out[name] = [run_one(name, ML100K, split, 0, PAPER_KS, ("full",))]
        SAVE()
    return out


def section_citeulike(seeds: int, out: dict, ablations=(), baselines=()) -> dict:
    out.setdefault("mars", [])
    for s in range(seeds):
        out["mars"].append(run_one("mars", CITEULIKE, [], s, dataset="citeulike-a",
                                   protocols=("sampled", "full")))
        SAVE()
    return out


# -- report ---------------------------------------------------------------------------------------
def stat(runs: list[dict], protocol: str, metric: str) -> str:
    return fmt(mean_std([r["metrics"][protocol][metric] for r in runs]))


def loo_table(results: dict) -> list[str]:
    base = json.loads((RESULTS / "baselines_ml100k.json").read_text())
    metrics = ("HR@10", "NDCG@10", "MRR@10")
    lines = ["| model | runs | " + " | ".join(f"full {m}" for m in metrics) + " | "
             + " | ".join(f"sampled {m}" for m in metrics) + " | best epoch | train s |",
             "|---" * (2 + 2 * len(metrics) + 2) + "|"]
    rows = [("MARS (shipped config)", results["mars"])]
    rows += [(f"MARS, {name}", [run]) for name, run in results["ablations"].items()]
    rows = [(name, runs) for name, runs in rows if runs]
    for name, runs in rows:
        cells = [stat(runs, p, m) for p in ("full", "sampled") for m in metrics]
        lines.append(f"| {name} | {len(runs)} | " + " | ".join(cells) + " | "
                     + ", ".join(str(r["best_epoch"]) for r in runs) + " | "
                     + fmt(mean_std([r["train_seconds"] for r in runs]), 1) + " |")
    lines += baseline_rows(base, metrics)
    prints = {r["split_fingerprint"] for _, runs in rows for r in runs}
    lines += ["", f"Split fingerprint(s) of the MARS runs: {', '.join(sorted(prints))} "
              "(baselines_ml100k: 0638029ff77b02f0 — baseline rows are quoted from "
              "`benchmarks/results/baselines_ml100k.json`, same split)."]
    return lines


def baseline_rows(base: dict, metrics) -> list[str]:
    """Quote the baselines file's summary rows (``full/HR@10``-style keys, mean/std/n)."""
    lines = []
    for row in base["summary"]:
        cells = [fmt(row[f"{p}/{m}"]) for p in ("full", "sampled") for m in metrics]
        lines.append(f"| {row['model']} (quoted) | {row['full/HR@10']['n']} | " + " | ".join(cells)
                     + " | " + ", ".join(map(str, row["best_epochs"])) + " | "
                     + fmt(row["train_seconds"], 1) + " |")
    return lines


def random_table(results: dict) -> list[str]:
    cols = [f"{m}@{k}" for m in ("Recall", "MAP") for k in PAPER_KS]
    lines = ["| model | runs | " + " | ".join(cols) + " | train s |", "|---" * (len(cols) + 3) + "|"]
    for name, runs in results.items():
        if not runs:
            continue
        lines.append(f"| {name} | {len(runs)} | " + " | ".join(stat(runs, "full", c) for c in cols)
                     + " | " + fmt(mean_std([r["train_seconds"] for r in runs]), 1) + " |")
    prints = {r["split_fingerprint"] for runs in results.values() for r in runs}
    lines += ["", f"Split fingerprint(s): {', '.join(sorted(prints))} (one split for every row)."]
    return lines


def citeulike_table(results: dict) -> list[str]:
    cmn = json.loads((RESULTS / "cmn_citeulike.json").read_text())["accuracy"]
    lines = ["| model | runs | sampled HR@10 | sampled NDCG@10 | full HR@10 | full NDCG@10 | train s |",
             "|---|---|---|---|---|---|---|"]
    runs = results["mars"]
    lines.append("" if not runs else f"| MARS (shipped config) | {len(runs)} | {stat(runs, 'sampled', 'HR@10')} | "
                 f"{stat(runs, 'sampled', 'NDCG@10')} | {stat(runs, 'full', 'HR@10')} | "
                 f"{stat(runs, 'full', 'NDCG@10')} | "
                 f"{fmt(mean_std([r['train_seconds'] for r in runs]), 0)} |")
    for name, run in cmn.items():                    # quoted: the same split, cmn_citeulike.py
        m = run.get("metrics", {})
        cell = lambda p, k: f"{m[p][k]:.4f}" if p in m and k in m[p] else "–"  # noqa: E731
        lines.append(f"| {name} (quoted) | 1 | {cell('sampled', 'HR@10')} | {cell('sampled', 'NDCG@10')} | "
                     f"{cell('full', 'HR@10')} | {cell('full', 'NDCG@10')} | "
                     f"{run.get('train_seconds', float('nan')):.0f} |")
    lines += ["", "Quoted rows: `benchmarks/results/cmn_citeulike.json` (same given split, "
              "validation carved from train the same way)."]
    return lines


def write_report(results: dict, meta: dict) -> None:
    md = ["# MARS (reconstruction) — results", ""]
    if "loo" in results:
        md += ["## ML-100K, leave-one-out (full ranking; sampled: 100 fixed negatives)", ""]
        md += loo_table(results["loo"]) + [""]
    if "random" in results:
        md += ["## ML-100K, the paper's metric family: per-user random 70/10/20 split, full ranking", ""]
        md += random_table(results["random"]) + [""]
    if "citeulike" in results:
        md += ["## citeulike-a, its own split (1 test positive + 100 negatives per user)", ""]
        md += citeulike_table(results["citeulike"]) + [""]
    md += [f"Machine: {meta['machine']}; run {meta['time']}. Command: `{meta['command']}`. "
           "Metrics are means ± std (n−1) over training seeds where runs > 1; one thread per run."
           + (f" Gradient runs (MARS, BPR-MF) capped with `{' '.join(CAPS)}`." if CAPS else "")]
    (RESULTS / "mars.md").write_text("\n".join(md) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sections", nargs="+", choices=("loo", "random", "citeulike"))
    parser.add_argument("--seeds", type=int, default=2, help="MARS training seeds")
    parser.add_argument("--ablations", default=",".join(ABLATIONS),
                        help="comma list of loo ablations to run ('' = none)")
    parser.add_argument("--baselines", default=",".join(BASELINES),
                        help="comma list of baselines for the random split ('' = none)")
    parser.add_argument("--max-epochs", type=int, default=0,
                        help="cap the epochs of gradient runs (MARS, BPR-MF); 0 = the configs'")
    parser.add_argument("--patience", type=int, default=0, help="override patience (0 = the configs')")
    parser.add_argument("--report-only", action="store_true", help="rewrite the .md from the .json")
    args = parser.parse_args()
    path = RESULTS / "mars.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    meta = {"machine": f"{os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}",
            "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(["benchmarks/mars_ml100k.py", *sys.argv[1:]])}
    if args.report_only:
        write_report(results, results["meta"][args.sections[0]])
        return
    global SAVE
    CAPS.extend([f"train.epochs={args.max_epochs}"] if args.max_epochs else [])
    CAPS.extend([f"train.patience={args.patience}"] if args.patience else [])

    def save():
        path.write_text(json.dumps(results, indent=1))
        write_report(results, meta)
    SAVE = save
    pick = lambda text: tuple(x for x in text.split(",") if x)  # noqa: E731
    for section in args.sections:
        results.setdefault("meta", {})[section] = meta
        results[section] = globals()[f"section_{section}"](
            args.seeds, results.get(section, {}), ablations=pick(args.ablations),
            baselines=pick(args.baselines))
        save()
        print(f"{section} done", flush=True)


if __name__ == "__main__":
    main()
