"""Atomic file writes: readers see either the old file or the complete new one, never half.

Used for everything memrec writes that a user may already have: checkpoints, run results,
split files, logs. Write to a temporary file in the same folder, fsync, then ``os.replace``.
A growing log (a run's ``log.jsonl``) is appended a line at a time instead (:func:`append_line`).
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path

import torch

from .errors import CheckpointError, DataError


def check_output_file(path: str | Path) -> None:
    """Refuse, before any work, an output file that could not be written: one that exists, or
    whose folder is missing or read-only. The error names the user's path."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if path.exists():
        raise DataError(f"{path} already exists; choose another --out")
    if not folder.is_dir():
        raise DataError(f"{path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise DataError(f"{path}: folder {folder} is not writable")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def append_line(path: str | Path, line: str) -> None:
    """Append one line (newline added) with a single ``write`` to a file opened for appending,
    then fsync: rewriting a whole log every epoch would cost its length each time. A crash can
    at worst leave a torn last line, which the log's reader drops."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def atomic_torch_save(obj, path: str | Path) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def safe_torch_load(path: str | Path) -> dict:
    """``torch.load(weights_only=True)`` with a clear error for a missing or corrupt file. Every
    tensor is read onto the CPU, whichever device saved it: a checkpoint written on a GPU loads on
    a machine without one (callers move the model where they want it)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for truncated / foreign files
        raise CheckpointError(f"{path}: corrupt or not a memrec checkpoint ({type(e).__name__})") from None
