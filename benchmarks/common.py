"""Helpers shared by the benchmark scripts (run as ``python benchmarks/<script>.py``, so this
module is importable as ``common``)."""

from __future__ import annotations

import hashlib
import os
import resource
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def peak_rss_mb() -> float:
    """This process's peak RSS. ``VmHWM`` where there is /proc: on Linux ``ru_maxrss`` carries
    the parent's peak over ``fork``/``exec``, so a child started by a big parent would report it."""
    try:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def split_fingerprint(path: Path) -> str:
    """sha256 over the split's arrays (names and bytes), independent of zip metadata."""
    import numpy as np
    digest = hashlib.sha256()
    with np.load(path, allow_pickle=False) as z:
        for name in sorted(z.files):
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(z[name]).tobytes())
    return digest.hexdigest()[:16]


def child_env(threads: int | None) -> dict:
    """Environment of a child: memrec importable; ``threads`` caps torch/OpenMP/MKL threads."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return env


def mean_std(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0, "n": len(values)}


def fmt(stat: dict, digits: int = 4) -> str:
    if stat["n"] > 1:
        return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"
    return f"{stat['mean']:.{digits}f}"
