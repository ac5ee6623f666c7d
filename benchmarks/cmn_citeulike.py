"""CMN on citeulike-a (the paper's own split): accuracy beside the baselines, and speed.

    PYTHONPATH=src .venv/bin/python benchmarks/cmn_citeulike.py speed      # ragged vs padded, ~5 min
    PYTHONPATH=src .venv/bin/python benchmarks/cmn_citeulike.py baselines  # Pop..BPR-MF, ~15 min
    PYTHONPATH=src .venv/bin/python benchmarks/cmn_citeulike.py collect RUN_DIR [RUN_DIR ...]

``speed`` times training steps (batch 128 positives x 4 negatives) and the sampled evaluation of
CMN-3 with ragged and with padded attention, each in its own process (peak RSS per path).
``baselines`` trains the baselines on the same split (validation carved from train, exactly as
``memrec train`` does) and tests them with both protocols. ``collect`` adds finished CMN run
folders (``memrec train cmn ... --out RUN_DIR``) to the table. Results go to
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
    return {"attention": attention, "seconds_per_step": step_s,
            "epoch_seconds_estimate": step_s * task.n_examples / cfg.batch_size,
            "sampled_eval_seconds": time.perf_counter() - start, "peak_rss_mb": peak_rss_mb(),
            "threads": torch.get_num_threads()}


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
        lines += ["", "## Speed (CMN-3, batch 128 positives x 4 negatives)", "",
                  "| attention | s/step | epoch s (est.) | sampled eval s | peak RSS MB | threads |",
                  "|---|---|---|---|---|---|"]
        for r in results["speed"]:
            lines.append(f"| {r['attention']} | {r['seconds_per_step']:.3f} | {r['epoch_seconds_estimate']:.0f} | "
                         f"{r['sampled_eval_seconds']:.1f} | {r['peak_rss_mb']:.0f} | {r['threads']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["speed", "baselines", "collect"])
    parser.add_argument("runs", nargs="*", help="CMN run folders (collect)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--models", default=",".join(BASELINES), help="baselines to run")
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
