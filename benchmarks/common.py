"""Helpers shared by the benchmark scripts (run as ``python benchmarks/<script>.py``, so this
module is importable as ``common``)."""

from __future__ import annotations

import resource


def peak_rss_mb() -> float:
    """This process's peak RSS. ``VmHWM`` where there is /proc: on Linux ``ru_maxrss`` carries
    the parent's peak over ``fork``/``exec``, so a child started by a big parent would report it."""
    try:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
