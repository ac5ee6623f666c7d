"""``memrec.allocator``: large freed blocks stay in the process's heap, so a training step's next
allocation of the same size reuses its pages (checked in a child: the setting is per process)."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[1] / "src")
CHILD = textwrap.dedent("""
    import ctypes
    import numpy as np
    from memrec.allocator import keep_freed_memory

    class MallInfo2(ctypes.Structure):  # glibc's struct mallinfo2 (glibc >= 2.33)
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
            "fordblks", "keepcost")]

    on = keep_freed_memory()
    block = np.empty(16 * 2**20, dtype=np.float32)   # 64 MB, written so its pages are mapped
    block.fill(1.0)
    del block
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2
    info = libc.mallinfo2()
    print(on, info.fordblks)            # bytes free in the heap, kept for the next allocation
""")


def _child(malloc: str) -> tuple[str, int]:
    """(whether the setting took, bytes free in the heap after a 64 MB block was freed)"""
    env = {**os.environ, "PYTHONPATH": SRC, "MEMREC_MALLOC": malloc}
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    on, kept = out.stdout.split()
    return on, int(kept)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's (Linux)")
def test_a_freed_large_block_stays_in_the_heap():
    on, kept = _child("")
    if on != "True":
        pytest.skip("this C library has no glibc mallopt")
    assert kept >= 64 * 2**20            # the whole block, ready for the next step
    off, default_kept = _child("system")
    assert off == "False" and default_kept < 64 * 2**20   # glibc's default unmapped it


def test_the_memrec_command_sets_it_and_python_m_too():
    from memrec import cli
    assert cli.run.__doc__ and "allocator" in cli.run.__doc__
    text = (Path(SRC) / "memrec" / "__main__.py").read_text()
    assert "run()" in text
