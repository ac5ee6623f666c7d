"""What ``memrec.allocator.keep_freed_memory`` (on in the ``memrec`` command) buys: one training
epoch per case, glibc's default allocator (``MEMREC_MALLOC=system``) and then ours, back to back,
same data, config, seed and threads.

    PYTHONPATH=src .venv/bin/python benchmarks/allocator.py [--threads 1] [--cases stamp,gru4rec]

Reports the epoch's training seconds (``log.jsonl``), the whole command's wall seconds, the
child's peak resident memory (``wait4``'s rusage) and minor page faults (pages the kernel had to
map and zero), with the 1-minute load average at the start of each run, in
benchmarks/results/allocator.{json,md}.
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

from common import ROOT, child_env

from memrec.fileio import atomic_write_bytes, atomic_write_json

DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results" / "allocator.json"
#: name: (model, dataset, shipped config or None)
CASES = {
    "stamp": ("stamp", "yoochoose1_64", "stamp_yoochoose1_64.toml"),
    "gru4rec": ("gru4rec", "ml-100k", "gru4rec_ml-100k.toml"),
    "sasrec": ("sasrec", "ml-100k", None),
    "bprmf": ("bprmf", "ml-100k", "bprmf_ml-100k.toml"),
}
ALLOCATORS = {"glibc default": "system", "memrec (keep freed memory)": ""}


def one_epoch(case: str, allocator: str, threads: int) -> dict:
    model, dataset, config = CASES[case]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        command = [sys.executable, "-m", "memrec", "train", model, "--data", str(DATA / dataset),
                   *(["--config", str(ROOT / "configs" / config)] if config else []),
                   "--set", "train.epochs=1", "--set", "train.refit=false", "--out", str(out)]
        env = {**child_env(threads), "MEMREC_MALLOC": ALLOCATORS[allocator]}
        load, start = os.getloadavg()[0], time.perf_counter()
        child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{case} with {allocator}: exit {status}\n{child.stderr.read()[-2000:]}")
        epoch = json.loads((out / "log.jsonl").read_text().splitlines()[0])
    return {"case": case, "allocator": allocator, "epoch_seconds": epoch["seconds"], "wall_seconds": wall,
            "peak_rss_mb": usage.ru_maxrss / 1024, "minor_faults": usage.ru_minflt,
            "load_1min": load, "threads": threads}


def report(rows: list[dict]) -> str:
    lines = ["# Allocator: glibc's default vs memrec's (keep freed memory)", "",
             "Written by `benchmarks/allocator.py` (how: its docstring). One training epoch per row, "
             "the two allocators back to back on the same data, config, seed and threads.", "",
             "| case | allocator | epoch s | wall s | peak RSS MB | minor page faults | speed-up (epoch) | threads | load 1 min |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        base = next(r for r in rows if r["case"] == row["case"] and r["allocator"] == "glibc default")
        model, dataset, _ = CASES[row["case"]]
        lines.append(f"| {model} on {dataset} | {row['allocator']} | {row['epoch_seconds']:.1f} | "
                     f"{row['wall_seconds']:.1f} | {row['peak_rss_mb']:.0f} | {row['minor_faults']:,} | "
                     f"{base['epoch_seconds'] / row['epoch_seconds']:.2f}× | {row['threads']} | {row['load_1min']:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cases", default=",".join(CASES))
    args = parser.parse_args()
    rows = []
    for case in args.cases.split(","):
        for allocator in ALLOCATORS:
            rows.append(one_epoch(case, allocator, args.threads))
            print(json.dumps(rows[-1]), flush=True)
    atomic_write_json(RESULTS, rows)
    atomic_write_bytes(RESULTS.with_suffix(".md"), report(rows).encode())


if __name__ == "__main__":
    main()
