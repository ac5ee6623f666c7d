"""CMN on citeulike-a (the paper's own split): accuracy beside the baselines, and speed.

    PYTHONPATH=src .venv/bin/python benchmarks/cmn_citeulike.py speed      # ragged vs padded, ~5 min
    PYTHONPATH=src .venv/bin/python benchmarks/cmn_citeulike.py baselines  # Pop..BPR-MF, ~15 min
    PYTHONPATH=src .venv/bin/python benchmarks/cmn_citeulike.py collect RUN_DIR [RUN_DIR ...] [--full]

``speed`` times training steps (batch 128 positives x 4 negatives) and the sampled evaluation of
CMN-3 with ragged and with padded attention, each in its own process (peak RSS per path).
``baselines`` trains the baselines on the same split (validation carved from train, exactly as
``memrec train`` does) and tests them with both protocols. ``collect`` adds finished CMN run
folders (``memrec train cmn ... --out RUN_DIR``) to the table; with ``--full`` it first ranks
all items for runs tested on the sampled protocol only (a few minutes per run). Results go to
``benchmarks/results/cmn_citeulike.{json,md}``; each mode updates its own section.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import peak_rss_mb

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "citeulike-a"
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
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["speed", "baselines", "collect"])
    parser.add_argument("runs", nargs="*", help="CMN run folders (collect)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--models", default=",".join(BASELINES), help="baselines to run")
    parser.add_argument("--full", action="store_true", help="collect: add full-ranking metrics")
    args = parser.parse_args()
    results = load_results()
    if args.mode == "speed":
        results["speed"] = [run_child(["speed", a, str(args.steps)]) for a in ("ragged", "padded")]
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
