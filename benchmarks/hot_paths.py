"""Micro-benchmarks of issue 20's hot paths: each old implementation (``tests/hot_path_references``)
against its replacement, back to back in one process.

* the affine scan (NMRN's micro-batch write, RUM-F's training unroll), forward + backward, and a
  whole NMRN ``stream_step`` micro-batch with the old scan patched in;
* ``erase_add_final`` (RUM-F encoding every ML-100K user for full ranking, NMRN's over-budget
  path) and ``KSR.encode`` (the same users, ML-100K's 14 relation slots);
* ``rank_counts`` with 1, a few hundred and thousands of held-out items per request, and the
  largest single allocation it makes as T grows (the old relevant-vs-relevant comparison
  allocated [B, T, T]).

One torch thread. Timings alternate old and new, ``--repeats`` times each, and report medians and
the old/new ratio; the 1-minute load average is read before and after every case (the machine is
shared, so only ratios measured back to back mean much). History lengths are ML-100K's real
per-user counts (``$MEMREC_SHARED_DATA/ml-100k/raw/u.data``; lognormal stand-ins without it).

    PYTHONPATH=src .venv/bin/python benchmarks/hot_paths.py              # ~3 min
    PYTHONPATH=src .venv/bin/python benchmarks/hot_paths.py --quick      # smaller, for a check

Results: ``benchmarks/results/hot_paths.{md,json}``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))                                  # tests.hot_path_references

from memrec import metrics  # noqa: E402
from memrec.memory import erase_add  # noqa: E402
from memrec.memory.state import MemoryState  # noqa: E402
from memrec.memory.write import affine_scan, erase_add_final  # noqa: E402
from memrec.models.ksr import KSR  # noqa: E402
from memrec.models.nmrn import NMRN  # noqa: E402
from tests.hot_path_references import (reference_affine_scan, reference_erase_add_final,  # noqa: E402
                                       reference_ksr_encode, reference_rank_counts)

RESULTS = ROOT / "benchmarks" / "results"
DATA = Path(os.environ.get("MEMREC_SHARED_DATA", ROOT.parent / "shared" / "data"))


def load() -> float:
    return os.getloadavg()[0]


def compare(name: str, old, new, repeats: int, **shape) -> dict:
    """Median seconds of ``old()`` and ``new()``, called alternately after one warm-up each."""
    before = load()
    old(), new()
    times = {"old": [], "new": []}
    for _ in range(repeats):
        for label, fn in (("old", old), ("new", new)):
            start = time.perf_counter()
            fn()
            times[label].append(time.perf_counter() - start)
    row = {"case": name, **shape, "old_s": statistics.median(times["old"]),
           "new_s": statistics.median(times["new"]), "repeats": repeats,
           "load_before": before, "load_after": load()}
    row["ratio"] = row["old_s"] / row["new_s"]
    print(f"{name:58s} old {row['old_s'] * 1e3:9.2f} ms  new {row['new_s'] * 1e3:9.2f} ms  "
          f"×{row['ratio']:5.2f}  load {before:.2f}→{row['load_after']:.2f}", flush=True)
    return row


def user_lengths(quick: bool) -> np.ndarray:
    """Events per user: ML-100K's 943 users (20 … 737 ratings) or a lognormal stand-in."""
    path = DATA / "ml-100k" / "raw" / "u.data"
    if path.exists():
        users = np.loadtxt(path, dtype=np.int64, usecols=0)
        lengths = np.bincount(users)[1:]
    else:
        lengths = np.minimum(np.random.default_rng(0).lognormal(4.2, 0.9, 943).astype(int) + 20, 737)
    return lengths[:128] if quick else lengths


def right_padded(lengths: np.ndarray) -> torch.Tensor:
    L = torch.as_tensor(lengths)
    return torch.arange(int(L.max()))[None, :] < L[:, None]


# -- 1. affine scan -----------------------------------------------------------------------------
def scan_case(B: int, T: int, M: int, D: int, repeats: int, label: str) -> dict:
    g = torch.Generator().manual_seed(0)
    leaves = [torch.randn(B, M, D, generator=g).requires_grad_(),
              torch.rand(B, T, M, D, generator=g).requires_grad_(),
              torch.randn(B, T, M, D, generator=g).requires_grad_()]
    probe = torch.randn(B, T, M, D, generator=g)

    def run(scan):
        return lambda: torch.autograd.grad((scan(*leaves) * probe).sum(), leaves)
    path = "log-depth" if erase_add._log_depth(B * M * D, leaves[0].device) else "loop"
    return compare(f"affine_scan fwd+bwd, {label} ({path})", run(reference_affine_scan),
                   run(affine_scan), repeats, B=B, T=T, M=M, D=D, path=path)


def nmrn_case(scope: str, batch: int, repeats: int) -> dict:
    """One stream_step micro-batch and its backward (the write runs twice: the truncated
    gradient through the last micro-batch, then the new write)."""
    torch.manual_seed(0)
    model = NMRN(943, 1682, dim=64, slots=20, scope=scope)
    g = torch.Generator().manual_seed(1)
    users = torch.randint(0, 943, (batch,), generator=g)
    items = torch.randint(0, 1682, (batch,), generator=g)
    candidates = torch.randint(0, 1682, (batch, 2), generator=g)
    model.stream_step(users, items, candidates)                        # a pending write to redo

    def step(scan):
        def run():
            erase_add.affine_scan = scan
            try:
                scores = model.stream_step(users, items, candidates)
                scores.sum().backward()
            finally:
                erase_add.affine_scan = affine_scan
        return run
    return compare(f"NMRN stream_step + backward, {scope}, {batch} events", step(reference_affine_scan),
                   step(affine_scan), repeats, scope=scope, batch=batch, slots=20, dim=64)


# -- 2. erase_add_final, 3. KSR.encode ----------------------------------------------------------
@torch.no_grad()
def final_case(lengths: np.ndarray, repeats: int) -> dict:
    mask = right_padded(lengths)
    B, T = mask.shape
    K, d = 20, 64
    g = torch.Generator().manual_seed(2)
    state = MemoryState(torch.zeros(B, K, d), torch.ones(B, K, dtype=torch.bool))
    w = torch.softmax(torch.randn(B, T, K, generator=g), -1)
    e, a = torch.rand(B, T, d, generator=g), torch.randn(B, T, d, generator=g)
    return compare(f"erase_add_final (RUM-F encode), {B} users ≤ {T} events",
                   lambda: reference_erase_add_final(state, w, e, a, mask),
                   lambda: erase_add_final(state, w, e, a, mask), repeats,
                   B=B, T=T, events=int(lengths.sum()), K=K, D=d)


@torch.no_grad()
def ksr_case(lengths: np.ndarray, repeats: int) -> dict:
    mask = right_padded(lengths)
    B, T = mask.shape
    torch.manual_seed(0)
    model = KSR(B, 1682, dim=64, hidden=128, kg_dim=64, relations=14, kg=None).eval()
    history = torch.randint(0, 1682, (B, T), generator=torch.Generator().manual_seed(3)) * mask
    users = torch.arange(B)
    return compare(f"KSR.encode (official, 14 slots), {B} users ≤ {T} events",
                   lambda: reference_ksr_encode(model, users, history, mask),
                   lambda: model.encode(users, history, mask), repeats,
                   B=B, T=T, events=int(lengths.sum()), slots=14, kg_dim=64, hidden=128)


# -- 4. rank counts -------------------------------------------------------------------------------
def ranking_inputs(B: int, C: int, T: int):
    g = torch.Generator().manual_seed(T)
    scores = torch.randint(0, 50, (B, C), generator=g).float()       # ties, as a popularity score has
    relevant = torch.argsort(torch.rand(B, C, generator=g), dim=1)[:, :T]
    return scores, relevant, torch.rand(B, T, generator=g) > 0.1


def counts_case(B: int, C: int, T: int, repeats: int) -> dict:
    scores, relevant, mask = ranking_inputs(B, C, T)
    return compare(f"rank_counts, {B} requests × {C} candidates, T = {T}",
                   lambda: reference_rank_counts(scores, relevant, mask),
                   lambda: metrics.rank_counts(scores, relevant, mask), repeats, B=B, C=C, T=T)


def largest_allocation(fn) -> int:
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return max((e.cpu_memory_usage for e in prof.events()), default=0)


def memory_case(B: int, C: int, T: int) -> dict:
    scores, relevant, mask = ranking_inputs(B, C, T)
    before = load()
    row = {"B": B, "C": C, "T": T,
           "old_bytes": largest_allocation(lambda: reference_rank_counts(scores, relevant, mask)),
           "new_bytes": largest_allocation(lambda: metrics.rank_counts(scores, relevant, mask)),
           "load_before": before, "load_after": load()}
    print(f"rank_counts largest allocation, T = {T:5d}: old {row['old_bytes'] / 2**20:8.1f} MiB, "
          f"new {row['new_bytes'] / 2**20:6.2f} MiB  load {before:.2f}→{row['load_after']:.2f}", flush=True)
    return row


def run(quick: bool, repeats: int) -> dict:
    torch.set_num_threads(1)
    lengths = user_lengths(quick)
    timings = [
        scan_case(1, 256, 20, 64, repeats, "NMRN global memory, 256 events, 20 slots"),
        scan_case(1, 256, 10, 64, repeats, "NMRN global memory, 256 events, 10 slots"),
        scan_case(1, 1024, 20, 64, repeats, "NMRN global memory, 1024 events"),
        scan_case(4, 64, 20, 64, repeats, "4 memories × 64 events"),
        scan_case(64 if quick else 256, 50, 20, 64, repeats, "RUM-F training batch, L = 50"),
        nmrn_case("global", 256, repeats),
        nmrn_case("per_user", 256, repeats),
        final_case(lengths, max(3, repeats // 3)),
        ksr_case(lengths, max(3, repeats // 3)),
        counts_case(1024, 1682, 1, repeats),
        counts_case(943, 1682, 150, repeats),
        counts_case(16, 20_000, 1000 if quick else 4000, max(3, repeats // 3)),
    ]
    memory = [memory_case(16, 20_000, T) for T in ((250, 500, 1000) if quick else (500, 1000, 2000, 4000))]
    return {"date": dt.datetime.now().isoformat(timespec="seconds"), "torch": torch.__version__,
            "python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "threads": torch.get_num_threads(), "quick": quick, "ml100k_lengths": bool((DATA / "ml-100k").exists()),
            "timings": timings, "memory": memory}


def report(result: dict) -> str:
    lines = [
        "# Hot paths: old vs new (issue 20)", "",
        f"{result['date']}, torch {result['torch']}, Python {result['python']}, {result['cpus']} CPUs, "
        f"**{result['threads']} torch thread**{', --quick' if result['quick'] else ''}. "
        "Written by `benchmarks/hot_paths.py`; the old implementations are "
        "`tests/hot_path_references.py` (tested equal to the new ones in `tests/test_hot_paths.py`).",
        "", "Old and new alternate in one process; each figure is the median of the repeats. The machine "
        "is shared: the 1-minute load average before → after each case is beside it, and only the "
        "ratios (measured back to back) should be compared across runs. History lengths: "
        + ("ML-100K's real per-user counts (943 users, 20 … 737 events)." if result["ml100k_lengths"]
           else "lognormal stand-ins (ML-100K's u.data was not found)."), "",
        "| case | shape | old ms | new ms | old/new | repeats | load before → after |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for row in result["timings"]:
        shape = ", ".join(f"{k}={v}" for k, v in row.items()
                          if k not in ("case", "old_s", "new_s", "ratio", "repeats", "load_before", "load_after"))
        lines.append(f"| {row['case']} | {shape} | {row['old_s'] * 1e3:.2f} | {row['new_s'] * 1e3:.2f} | "
                     f"**{row['ratio']:.2f}×** | {row['repeats']} | {row['load_before']:.2f} → {row['load_after']:.2f} |")
    lines += ["", "## rank_counts: largest single allocation as the held-out items T grow", "",
              "B = 16 requests, C = 20,000 candidates (torch profiler, `profile_memory`). The old "
              "relevant-vs-relevant comparison allocated a [B, T, T] tensor (quadratic); the sort "
              "keeps every allocation O(B·(C + T)).", "",
              "| T | old MiB | new MiB | load before → after |", "|---:|---:|---:|---|"]
    for row in result["memory"]:
        lines.append(f"| {row['T']} | {row['old_bytes'] / 2**20:.1f} | {row['new_bytes'] / 2**20:.2f} | "
                     f"{row['load_before']:.2f} → {row['load_after']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller cases (a check, not a result)")
    parser.add_argument("--repeats", type=int, default=9, help="timed calls of each side per case")
    args = parser.parse_args()
    result = run(args.quick, args.repeats)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = "hot_paths_quick" if args.quick else "hot_paths"
    (RESULTS / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{stem}.md").write_text(report(result))
    print(f"wrote {RESULTS / stem}.md")


if __name__ == "__main__":
    main()
