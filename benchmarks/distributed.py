"""Data-parallel scaling on this machine: one training epoch with 1 and with 2 processes
(``memrec train --nproc``), the cores shared out (2 threads for one process, 1 each for two),
back to back on the same split, global batch and recipe.

    python benchmarks/distributed.py [--models gru4rec,stamp] [--epochs 1]

GRU4Rec on ML-100K and STAMP on Yoochoose 1/64, their shipped configs (no refit). Reported per
model: seconds per training epoch (from the run's log.jsonl, validation excluded), the scaling
efficiency t₁ / (2 · t₂), and the whole command's wall time; the load average beside each.
Writes benchmarks/results/distributed.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT

DATA = ROOT.parent / "shared" / "data"
CASES = {"gru4rec": ("ml-100k", "configs/gru4rec_ml-100k.toml"),
         "stamp": ("yoochoose1_64", "configs/stamp_yoochoose1_64.toml")}
CORES = 2


def run(model: str, nproc: int, epochs: int, workdir: Path) -> dict:
    data, config = CASES[model]
    out = workdir / f"{model}-{nproc}"
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, CORES // nproc))}
    command = [sys.executable, "-m", "memrec", "train", model, "--data", str(DATA / data),
               "--config", str(ROOT / config), "--epochs", str(epochs), "--out", str(out),
               "--set", "train.refit=false", "--set", "train.patience=0", "--no-progress"]
    if nproc > 1:
        command += ["--nproc", str(nproc)]
    load = os.getloadavg()[0]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{model} with {nproc} process(es) failed:\n{done.stderr[-2000:]}")
    epochs_log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    seconds = [r["seconds"] for r in epochs_log if r["stage"] == "train"]
    results = json.loads((out / "results.json").read_text())
    return {"model": model, "data": data, "nproc": nproc, "threads_per_process": int(env["OMP_NUM_THREADS"]),
            "epoch_seconds": seconds, "wall_seconds": wall, "world_size": results["world_size"],
            "metrics": results["metrics"], "load_average_start": load, "load_average_end": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="gru4rec,stamp")
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for model in args.models.split(","):
            for nproc in (1, 2):                     # one heavy job at a time
                rows.append(run(model, nproc, args.epochs, Path(workdir)))
                print(json.dumps({k: v for k, v in rows[-1].items() if k != "metrics"}), flush=True)
    out = ROOT / "benchmarks" / "results"
    (out / "distributed.json").write_text(json.dumps({"rows": rows, "platform": platform.platform(),
                                                       "cpu_count": os.cpu_count()}, indent=1))
    lines = ["# Data-parallel scaling on this machine (gloo, CPU)", "",
             f"{os.cpu_count()} cores; 1 process × 2 threads vs 2 processes × 1 thread, the same global "
             f"batch (shipped config), {args.epochs} epoch(s), no refit; back to back. Epoch seconds "
             "exclude validation; efficiency = t₁ / (2 · t₂).", "",
             "| model | data | processes | s/epoch | efficiency | wall s (whole run) | load avg (start → end) |",
             "|---|---|---|---|---|---|---|"]
    for model in args.models.split(","):
        one, two = (next(r for r in rows if r["model"] == model and r["nproc"] == n) for n in (1, 2))
        t1 = sum(one["epoch_seconds"]) / len(one["epoch_seconds"])
        for r in (one, two):
            t = sum(r["epoch_seconds"]) / len(r["epoch_seconds"])
            efficiency = "" if r is one else f"{t1 / (2 * t):.2f}"
            lines.append(f"| {model} | {r['data']} | {r['nproc']} | {t:.1f} | {efficiency} | "
                         f"{r['wall_seconds']:.1f} | {r['load_average_start']:.2f} → {r['load_average_end']:.2f} |")
    lines += ["", f"{platform.platform()}."]
    (out / "distributed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
