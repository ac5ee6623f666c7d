"""Data-parallel scaling on this machine: one training epoch with 1 and with 2 processes
(``memrec train --nproc``), back to back on the same split, global batch and recipe: 1 process ×
1 thread, 2 processes × 1 thread (the scaling efficiency t₁ / (2 · t₂) of data parallelism), and
1 process × 2 threads (the same two cores used by torch's intra-op threads instead).

    python benchmarks/distributed.py [--models gru4rec,stamp] [--epochs 1]

GRU4Rec on ML-100K and STAMP on Yoochoose 1/64, their shipped configs (no refit). Reported per
model: seconds per training epoch (from the run's log.jsonl, validation excluded), and the whole
command's wall time; the load average beside each.
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


#: (processes, threads per process)
LAYOUTS = ((1, 1), (2, 1), (1, 2))


def run(model: str, nproc: int, threads: int, epochs: int, workdir: Path) -> dict:
    data, config = CASES[model]
    out = workdir / f"{model}-{nproc}x{threads}"
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
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
            for nproc, threads in LAYOUTS:           # one heavy job at a time
                rows.append(run(model, nproc, threads, args.epochs, Path(workdir)))
                print(json.dumps({k: v for k, v in rows[-1].items() if k != "metrics"}), flush=True)
    out = ROOT / "benchmarks" / "results"
    (out / "distributed.json").write_text(json.dumps({"rows": rows, "platform": platform.platform(),
                                                       "cpu_count": os.cpu_count()}, indent=1))
    lines = ["# Data-parallel scaling on this machine (gloo, CPU)", "",
             f"{os.cpu_count()} cores; the same global batch (shipped config), {args.epochs} epoch(s), no "
             "refit; back to back, one run at a time. Epoch seconds exclude validation. Efficiency = "
             "t(1 × 1) / (2 · t(2 × 1)); speed-up = t(1 × 1) / t.", "",
             "| model | data | processes × threads | s/epoch | speed-up | efficiency | wall s (whole run) | load avg (start → end) |",
             "|---|---|---|---|---|---|---|---|"]
    for model in args.models.split(","):
        mine = [r for r in rows if r["model"] == model]
        base = _epoch(mine[0])
        for r in mine:
            t = _epoch(r)
            efficiency = f"{base / (r['nproc'] * t):.2f}" if r["nproc"] > 1 else ""
            lines.append(f"| {model} | {r['data']} | {r['nproc']} × {r['threads_per_process']} | {t:.1f} | "
                         f"{base / t:.2f} | {efficiency} | {r['wall_seconds']:.1f} | "
                         f"{r['load_average_start']:.2f} → {r['load_average_end']:.2f} |")
    lines += ["", f"{platform.platform()}."]
    (out / "distributed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _epoch(row: dict) -> float:
    return sum(row["epoch_seconds"]) / len(row["epoch_seconds"])


if __name__ == "__main__":
    main()
