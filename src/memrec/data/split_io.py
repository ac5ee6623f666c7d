"""Store a split (with its fixed negatives and next-item cases) as one ``.npz`` of plain arrays.

A run folder keeps the exact split it was trained on, so ``memrec evaluate`` scores the same
held-out items against the same sampled negatives later, without re-reading the raw data.
Loaded with ``allow_pickle=False``: the file holds arrays only.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ..fileio import atomic_write_bytes
from ..errors import CheckpointError
from .interactions import IdMap, Interactions
from .splits import Candidates, NextItemCases, Split

_COLUMNS = ("user", "item", "timestamp", "rating", "session")
_PARTS = ("train", "valid", "test")


def save_split(path: str | Path, split: Split) -> None:
    arrays: dict[str, np.ndarray] = {"kind": np.array(split.kind)}
    for part in _PARTS:
        data: Interactions | None = getattr(split, part)
        if data is None:
            continue
        for col in _COLUMNS:
            values = getattr(data, col)
            if values is not None:
                arrays[f"{part}.{col}"] = values
    for part in ("valid", "test"):
        neg: Candidates | None = getattr(split, f"{part}_negatives")
        if neg is not None:
            arrays[f"{part}_negatives.users"] = neg.users
            arrays[f"{part}_negatives.negatives"] = neg.negatives
        cases: NextItemCases | None = getattr(split, f"{part}_cases")
        if cases is not None:
            for name in ("indptr", "items", "targets", "users", "times"):
                if getattr(cases, name) is not None:
                    arrays[f"{part}_cases.{name}"] = getattr(cases, name)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def load_split(path: str | Path, users: IdMap, items: IdMap) -> Split:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: missing (not a memrec run folder?)")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # zipfile / format errors
        raise CheckpointError(f"{path}: corrupt split file ({type(e).__name__})") from None
    parts = {}
    for part in _PARTS:
        if f"{part}.user" in arrays:
            cols = {c: arrays.get(f"{part}.{c}") for c in _COLUMNS}
            parts[part] = Interactions(cols.pop("user"), cols.pop("item"), users, items, **cols)
    extra = {}
    for part in ("valid", "test"):
        if f"{part}_negatives.users" in arrays:
            extra[f"{part}_negatives"] = Candidates(arrays[f"{part}_negatives.users"],
                                                    arrays[f"{part}_negatives.negatives"])
        if f"{part}_cases.indptr" in arrays:
            extra[f"{part}_cases"] = NextItemCases(*(arrays[f"{part}_cases.{n}"] for n in
                                                     ("indptr", "items", "targets", "users")),
                                                   times=arrays.get(f"{part}_cases.times"))
    return Split(kind=str(arrays["kind"]), **parts, **extra)
