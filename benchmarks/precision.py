"""bf16 autocast against fp32: STAMP on Yoochoose 1/64 (the shipped recipe), back to back in one
process, same split, batch and threads.

    python benchmarks/precision.py [--epochs 1] [--threads 1]

Per precision: seconds per training epoch and the session protocol's P@20 (= HR@20) and MRR@20 on
the test sessions after ``--epochs`` epochs (no refit). Writes benchmarks/results/precision.{json,md}
with the load average beside every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import replace

import torch

from common import ROOT

from memrec.evaluation import Evaluator
from memrec.recommender import Recommender
from memrec.runs import prepare_split
from memrec.training.config import load_config

DATA = ROOT.parent / "shared" / "data" / "yoochoose1_64"
CONFIG = ROOT / "configs" / "stamp_yoochoose1_64.toml"


def run(precision: str, split, epochs: int) -> dict:
    config = load_config("stamp", CONFIG, [f'train.precision="{precision}"', f"train.epochs={epochs}",
                                           "train.refit=false", "train.patience=0"])
    load = os.getloadavg()[0]
    start = time.perf_counter()
    rec = Recommender.from_config(config).fit_split(split, progress=False)
    seconds = time.perf_counter() - start
    metrics = Evaluator(split, "test", protocols=("session",), ks=(20,)).evaluate(rec.model_)["session"]
    epoch_seconds = [r["seconds"] for r in rec.result_.history if r.get("stage", "train") == "train"]
    return {"precision": precision, "epoch_seconds": epoch_seconds, "fit_seconds": seconds,
            "P@20": metrics["HR@20"], "MRR@20": metrics["MRR@20"], "load_average_start": load,
            "load_average_end": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    _, split = prepare_split(DATA, load_config("stamp", CONFIG).data)
    rows = [run(p, split, args.epochs) for p in ("fp32", "bf16")]
    fp32, bf16 = rows
    speedup = sum(fp32["epoch_seconds"]) / sum(bf16["epoch_seconds"])
    out = ROOT / "benchmarks" / "results"
    record = {"rows": rows, "bf16_speedup": speedup, "epochs": args.epochs, "threads": args.threads,
              "torch": torch.__version__, "platform": platform.platform()}
    (out / "precision.json").write_text(json.dumps(record, indent=1))
    lines = ["# bf16 autocast vs fp32: STAMP on Yoochoose 1/64", "",
             f"Shipped recipe (configs/stamp_yoochoose1_64.toml) for {args.epochs} epoch(s), no refit, "
             f"{args.threads} thread(s), back to back in one process. Test sessions, session protocol.", "",
             "| precision | s/epoch | P@20 | MRR@20 | load avg (start → end) |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['precision']} | {sum(r['epoch_seconds']) / len(r['epoch_seconds']):.1f} | "
                     f"{100 * r['P@20']:.2f} | {100 * r['MRR@20']:.2f} | "
                     f"{r['load_average_start']:.2f} → {r['load_average_end']:.2f} |")
    lines += ["", f"bf16 speed-up: {speedup:.2f}×. torch {torch.__version__}, {platform.platform()}."]
    (out / "precision.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
