"""CMN on citeulike-a (the paper's own split): accuracy beside the baselines, and speed.

    PYTHONPATH=src .venv/bin/python benchmarks/cmn_citeulike.py speed      # ragged vs padded, ~5 min
    PYTHONPATH=src .venv/bin/python benchmarks/cmn_citeulike.py baselines  # Pop..BPR-MF, ~15 min
    PYTHONPATH=src .venv/bin/python benchmarks/cmn_citeulike.py collect RUN_DIR [RUN_DIR ...] [--full]
    PYTHONPATH=src .venv/bin/python benchmarks/cmn_citeulike.py fast [--name N] [--set K=V ...] [--full]
    PYTHONPATH=src .venv/bin/python benchmarks/cmn_citeulike.py fast-record RUN_DIR --wall S --load L [--full]

``speed`` times training steps (batch 128 positives x 4 negatives) and the sampled evaluation of
CMN-3 with ragged and with padded attention, each in its own process (peak RSS per path).
``baselines`` trains the baselines on the same split (validation carved from train, exactly as
``memrec train`` does) and tests them with both protocols. ``collect`` adds finished CMN run
folders (``memrec train cmn ... --out RUN_DIR``) to the table; with ``--full`` it first ranks
all items for runs tested on the sampled protocol only (a few minutes per run). ``fast`` times
the fast recipe (``configs/cmn_citeulike-a_fast.toml``, with ``--set`` overrides: issue 20's
experiments) end to end as ``memrec train cmn`` on one thread, the wall clock of the whole command
(data, GMF pretraining, training, validation, the sampled test) beside the 1-minute load average
before and after; with ``--full`` it then ranks all items (timed apart: not part of the recipe's
wall time). ``fast-record`` adds a run timed outside this script. Results go to
``benchmarks/results/cmn_citeulike.{json,md}``; each mode updates its own section.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import peak_rss_mb

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MEMREC_SHARED_DATA") or ROOT.parent / "shared" / "data") / "citeulike-a"
FAST_CONFIG = ROOT / "configs" / "cmn_citeulike-a_fast.toml"
RESULTS = ROOT / "benchmarks" / "results" / "cmn_citeulike.json"
BASELINES = ("pop", "itemknn", "rp3beta", "ease", "bprmf")
PAPER = {"CMN (Dacrema et al. TOIS re-run)": {"HR@10": 0.8746, "NDCG@10": 0.6790},
         "CMN (Dacrema et al. RecSys'19 re-run)": {"HR@10": 0.8910, "NDCG@10": 0.6942},
         "RP3beta, tuned (same study)": {"HR@10": 0.9002, "NDCG@10": 0.7447}}


def speed_child(attention: str, steps: int) -> dict:
    """Time ``steps`` training steps and one sampled evaluation of CMN-3 in this process."""
    import torch
    from memrec.data.readers import load
    from memrec.evaluation import Evaluator
    from memrec.models import build
    from memrec.training.config import load_config
    from memrec.training.tasks import make_task
    from memrec.training.trainer import deterministic_algorithms, make_optimizer
    split = load(DATA).given_split
    cfg = load_config("cmn", ROOT / "configs" / "cmn_citeulike-a.toml").train
    torch.manual_seed(0)
    model = build("cmn", split.train.n_users, split.train.n_items, {"hops": 3, "attention": attention})
    model.prepare(split.train)
    task = make_task(model, split.train, cfg)
    optimizer = make_optimizer(cfg, model.parameter_groups(cfg.weight_decay))
    batches = task.batches(torch.Generator().manual_seed(0))
    with deterministic_algorithms(True):
        start = time.perf_counter()
        for _ in range(steps):
            loss = task.loss(model, next(batches))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        step_s = (time.perf_counter() - start) / steps
    start = time.perf_counter()
    Evaluator(split, "test", protocols=("sampled",), batch_size=256).evaluate(model)
    sampled_s = time.perf_counter() - start
    return {"attention": attention, "positives_per_step": cfg.batch_size, "seconds_per_step": step_s,
            "epoch_seconds_estimate": step_s * task.n_examples / cfg.batch_size,
            "sampled_eval_seconds": sampled_s, **full_ranking_speed(model, attention),
            "peak_rss_mb": peak_rss_mb(), "threads": torch.get_num_threads()}


def full_ranking_speed(model, attention: str, users: int = 32) -> dict:
    """Seconds to score every item for all users, extrapolated from ``users`` users: the shared
    layout (``score_all``) and pair scoring in item chunks through this attention path. The
    padded path is not timed: one item chunk pads to the largest neighbourhood (311) and would
    need ~11 GB."""
    import torch
    from memrec.models.base import Query
    if attention == "padded":
        return {}
    query, scale = Query.for_users(range(users)), model.n_users / users
    paths = {"layout": model.score_all, "item_chunks": model._score_all_by_item_chunks}
    out = {}
    with torch.no_grad():
        for name, score_all in paths.items():
            start = time.perf_counter()
            score_all(query)
            out[f"full_eval_seconds_{name}"] = (time.perf_counter() - start) * scale
    return out


def run_child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True,
                         text=True, check=True,
                         env={"PYTHONPATH": str(ROOT / "src"), "PATH": "", "OMP_NUM_THREADS": "1"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def baseline_child(model: str, out_dir: str) -> dict:
    from memrec.runs import train_run
    from memrec.training.config import load_config
    config = load_config(model, overrides=["data.split=given", 'train.valid_protocol="sampled"'])
    results = train_run(config, DATA, Path(out_dir) / model, progress=False, echo=lambda _: None)
    return {**results, "peak_rss_mb": peak_rss_mb()}


def full_ranking(run: Path) -> tuple[dict, float]:
    from memrec.runs import evaluate_run
    start = time.perf_counter()
    metrics = evaluate_run(run, ("full",))["full"]
    return metrics, time.perf_counter() - start


def fast_run(name: str, overrides: list[str], out_root: Path, full: bool) -> dict:
    """``memrec train cmn`` with the fast config (and overrides) on one thread, timed whole."""
    out = out_root / name
    command = [sys.executable, "-m", "memrec", "train", "cmn", "--data", str(DATA), "--config",
               str(FAST_CONFIG), "--out", str(out), "--no-progress"]
    for override in overrides:
        command += ["--set", override]
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    subprocess.run(command, check=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src"),
                                             "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    wall = time.perf_counter() - start
    return fast_record(out, wall, (load_before, os.getloadavg()[0]), overrides, full)


def fast_record(run: Path, wall: float, loads: tuple[float, ...], overrides: list[str],
                full: bool) -> dict:
    """One fast-recipe row from a run folder and its measured wall time. A run stopped by hand
    (no ``results.json``: its validation curve was already behind) keeps its curve, no test."""
    finished = (run / "results.json").is_file()
    config = json.loads((run / "run.json").read_text())["config"]["train"]
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    trained = [e for e in log if e["stage"] == "train"]
    r = json.loads((run / "results.json").read_text()) if finished else {
        "best_epoch": None, "eval_seconds": 0.0, "metrics": {},
        "train_seconds": sum(e["seconds"] for e in trained)}
    row = {"overrides": overrides, "wall_seconds": wall, "load_1min": list(loads),
           "batch_size": config["batch_size"], "lr": config["lr"],
           "weight_decay": config["weight_decay"], "pretrain_epochs": config["pretrain_epochs"],
           "pretrain_batch_size": config["pretrain_batch_size"] or config["batch_size"],
           "n_negatives": config["n_negatives"], "eval_every": config["eval_every"],
           "pretrain_seconds": sum(e["seconds"] for e in log if e["stage"] == "pretrain"),
           "epochs_run": len(trained), "best_epoch": r["best_epoch"],
           "train_seconds": r["train_seconds"], "test_eval_seconds": r["eval_seconds"],
           "valid_ndcg10": [round(e["valid"]["sampled"]["NDCG@10"], 4) for e in trained if "valid" in e],
           "metrics": r["metrics"]}
    if full and finished and "full" not in row["metrics"]:
        row["metrics"]["full"], row["full_eval_seconds"] = full_ranking(run)
    return row


def fast_markdown(rows: dict) -> list[str]:
    """The "Fast recipe (issue 20)" table: one row per timed run, failures included."""
    lines = ["", "## Fast recipe (issue 20)", "",
             "CMN-3, `memrec train cmn` end to end on one thread of the shared 2-core machine: wall s "
             "counts reading the data, GMF pretraining, training, per-epoch validation and the sampled "
             "test; full ranking is timed apart. Load = 1-minute load average before / after.", "",
             "| run | batch × negatives | lr | L2 | GMF epochs × batch | epochs (best) | wall s | GMF s | train s | "
             "sampled HR@10 | sampled NDCG@10 | full NDCG@10 | load | valid NDCG@10 by epoch |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in sorted(rows.items()):          # runs are named A, B, ... in the order tried
        m = r["metrics"]
        cell = lambda p, k: f"{m[p][k]:.4f}" if p in m else "–"  # noqa: E731
        best = "stopped by hand" if r["best_epoch"] is None else r["best_epoch"]
        lines.append(
            f"| {name} | {r['batch_size']} × {r['n_negatives']} | {r['lr']:g} | {r['weight_decay']:g} | "
            f"{r['pretrain_epochs']} × {r['pretrain_batch_size']} | "
            f"{r['epochs_run']} ({best}) | {r['wall_seconds']:.0f} | {r['pretrain_seconds']:.0f} | "
            f"{r['train_seconds']:.0f} | {cell('sampled', 'HR@10')} | {cell('sampled', 'NDCG@10')} | "
            f"{cell('full', 'NDCG@10')} | {' / '.join(f'{x:.2f}' for x in r['load_1min'])} | "
            f"{' '.join(f'{x:.3f}' for x in r['valid_ndcg10'])} |")
    return lines


def load_results() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}


def save(results: dict) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    RESULTS.with_suffix(".md").write_text(markdown(results))


def markdown(results: dict) -> str:
    lines = ["# CMN on citeulike-a (the paper's split: 1 test positive + 100 negatives per user)", "",
             "| model | sampled HR@10 | sampled NDCG@10 | full HR@10 | full NDCG@10 | train s |",
             "|---|---|---|---|---|---|"]
    for name, r in results.get("accuracy", {}).items():
        m = r.get("metrics", {})
        cell = lambda p, k: f"{m[p][k]:.4f}" if p in m and k in m[p] else "–"  # noqa: E731
        lines.append(f"| {name} | {cell('sampled', 'HR@10')} | {cell('sampled', 'NDCG@10')} | "
                     f"{cell('full', 'HR@10')} | {cell('full', 'NDCG@10')} | {r.get('train_seconds', 0):.0f} |")
    for name, m in PAPER.items():
        lines.append(f"| {name} | {m['HR@10']:.4f} | {m['NDCG@10']:.4f} | – | – | – |")
    if "speed" in results:
        lines += ["", "## Speed (CMN-3 training steps of P positives x 4 negatives, 1 thread)", "",
                  "| attention | P | s/step | epoch s (est.) | sampled eval s | full eval s, shared layout (est.) "
                  "| full eval s, item chunks (est.) | peak RSS MB | threads |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in results["speed"]:
            full = lambda k: f"{r[k]:.0f}" if k in r else "–"  # noqa: E731
            lines.append(f"| {r['attention']} | {r['positives_per_step']} | {r['seconds_per_step']:.3f} | {r['epoch_seconds_estimate']:.0f} | "
                         f"{r['sampled_eval_seconds']:.1f} | {full('full_eval_seconds_layout')} | "
                         f"{full('full_eval_seconds_item_chunks')} | {r['peak_rss_mb']:.0f} | {r['threads']} |")
    if "fast" in results:
        lines += fast_markdown(results["fast"])
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["speed", "baselines", "collect", "fast", "fast-record"])
    parser.add_argument("runs", nargs="*", help="CMN run folders (collect, fast-record)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--models", default=",".join(BASELINES), help="baselines to run")
    parser.add_argument("--full", action="store_true", help="collect / fast: add full-ranking metrics")
    parser.add_argument("--name", default="fast",
                        help="fast: the row's name (and run folder); fast-record: the row's name "
                             "(default: the run folder's)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="fast: a config override, SECTION.KEY=VALUE (repeatable)")
    parser.add_argument("--out", default=None, help="fast: where run folders go (default: a temp folder)")
    parser.add_argument("--wall", type=float, help="fast-record: the run's measured wall seconds")
    parser.add_argument("--load", type=float, nargs="+", help="fast-record: 1-minute load averages")
    args = parser.parse_args()
    results = load_results()
    if args.mode == "speed":
        results["speed"] = [run_child(["speed", a, str(args.steps)]) for a in ("ragged", "padded")]
    elif args.mode == "fast":
        out_root = Path(args.out or tempfile.mkdtemp(prefix="cmn_fast_"))
        results.setdefault("fast", {})[args.name] = fast_run(args.name, args.overrides, out_root, args.full)
    elif args.mode == "fast-record":
        for run in map(Path, args.runs):
            name = run.name if args.name == "fast" else args.name
            results.setdefault("fast", {})[name] = fast_record(run, args.wall, tuple(args.load),
                                                               args.overrides, args.full)
    elif args.mode == "baselines":
        with tempfile.TemporaryDirectory() as tmp:
            for model in args.models.split(","):
                results.setdefault("accuracy", {})[model] = run_child(["baseline", model, tmp])
    else:
        for run in map(Path, args.runs):
            r = json.loads((run / "results.json").read_text())
            if args.full and "full" not in r["metrics"]:
                r["metrics"]["full"], r["full_eval_seconds"] = full_ranking(run)
            hops = r["params"].get("hops", 2)
            results.setdefault("accuracy", {})[f"CMN-{hops} ({run.name})"] = r
    save(results)
    print(markdown(results))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, *rest = sys.argv[2:]
        result = speed_child(rest[0], int(rest[1])) if kind == "speed" else baseline_child(*rest)
        print(json.dumps(result))
    else:
        main()
