"""Keep freed memory inside the process instead of handing it back to the kernel (glibc only).

glibc serves every allocation above its mmap threshold (at most 32 MiB) with a fresh ``mmap``
and returns it with ``munmap`` when freed. A full-softmax training step allocates several
tensors of that size (512 prefixes × 17,745 items × 4 bytes is 36 MB: logits, their softmax,
the gradient), so every step maps new pages and the kernel zeroes each one on first touch:
on Yoochoose 1/64 that was a third of STAMP's epoch spent in the kernel. Turning ``mmap`` off
for the heap and never trimming it lets the next step reuse the same pages — the effect the
PyTorch CPU tuning guide gets from preloading jemalloc or tcmalloc, without a library to
install. Measured in ``benchmarks/allocator.py``.

The cost: the process keeps its peak heap until it exits (resident memory does not fall
after a large step). That suits a training or serving process, which reaches its peak again
and again; the ``memrec`` command turns it on at start, library users call
:func:`keep_freed_memory` themselves. ``MEMREC_MALLOC=system`` keeps glibc's defaults.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

#: ``mallopt`` parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4


def keep_freed_memory() -> bool:
    """Tell glibc's allocator to serve large blocks from the heap and keep freed memory;
    True when it took effect (False on other C libraries, or with ``MEMREC_MALLOC=system``)."""
    if os.environ.get("MEMREC_MALLOC", "").strip().lower() == "system":
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):        # not glibc (macOS, Windows, musl builds)
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # the trim threshold is an int: 2 GiB − 1 is "never" for a heap top left free
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))


__all__ = ["keep_freed_memory"]
