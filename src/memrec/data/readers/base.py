"""What every reader returns (:class:`Dataset`) and the small file helpers they share."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..interactions import IdMap, Interactions
from ...errors import DataError
from ..splits import Split

# Folder names that say how a dataset is stored rather than which dataset it is.
_GENERIC_FOLDERS = {"raw", "recbole", "data", "dataset", "datasets", "atomic", "files", ""}


@dataclass(frozen=True, eq=False)
class Dataset:
    """A dataset as read from disk.

    Parameters
    ----------
    name : str
        Short name, e.g. ``"ml-100k"`` (the folder or file stem).
    interactions : Interactions
        Every interaction in the dataset; for a shipped split, all parts together.
    given_split : Split or None
        The split that ships with the files (CMN npz, NCF files, session pickles), else ``None``.
    extras : dict[str, pandas.DataFrame]
        Side files: ``"item"`` / ``"user"`` features, ``"kg"`` triples (``head``, ``relation``,
        ``tail`` as str), ``"link"`` (``item``, ``entity``) and ``"negatives"`` (``user``,
        ``item`` raw ids: a label file's label-0 rows, sampled negatives that are not interactions).
    notes : tuple of str
        One-line notes on what the reader decided (e.g. the label-0 rows it set apart), which
        ``memrec data info`` and ``memrec train`` print.
    """

    name: str
    interactions: Interactions
    given_split: Split | None = None
    extras: dict[str, pd.DataFrame] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


def require_path(path: str | Path) -> Path:
    """``Path(path)`` if it exists, else the one-line error users expect from a shell."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    return path


def dataset_name(path: Path) -> str:
    """A readable dataset name: the folder's name, skipping storage-layout folders like ``raw``."""
    for part in [path, *path.parents]:
        if part.name.lower() not in _GENERIC_FOLDERS:
            return part.name
    return path.resolve().name


def read_first_line(path: Path, max_bytes: int = 1 << 16) -> str:
    """First non-empty line of a text file (BOM and line end stripped), ``""`` if none.

    Reads a bounded prefix only, so sniffing a 20 GB file costs nothing.
    """
    with open(path, "rb") as fh:
        head = fh.read(max_bytes)
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff")
    for line in text.splitlines():
        if line.strip():
            return line.rstrip("\r\n")
    return ""


def is_pickle(path: Path) -> bool:
    """True when the file starts like a pickle (protocol 2+ opcode), whatever its extension."""
    with open(path, "rb") as fh:
        return fh.read(1) == b"\x80"


def int_ids_or_str(values: pd.Series) -> pd.Series:
    """Id column as int64 when every value is an integer, else as str (ids are never floats)."""
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().all() and (numeric % 1 == 0).all():
        return numeric.astype(np.int64)
    return values.astype(str)


def dense_or_factorized(*columns: np.ndarray) -> tuple[list[np.ndarray], IdMap]:
    """Index id columns with one shared map: identity when the raw ids are small non-negative
    integers (they already are indices, as in NCF/CMN files), else order of first appearance.

    "Small" means the identity map wastes at most half its rows on ids that never occur, so
    papers' item numbering is kept without blowing up a sparse id space.
    """
    joined = np.concatenate([np.asarray(c).ravel() for c in columns])
    if joined.dtype.kind in "iu" and len(joined) and joined.min() >= 0:
        n = int(joined.max()) + 1
        if n <= 2 * len(np.unique(joined)):
            return [np.asarray(c, dtype=np.int64) for c in columns], IdMap.range(n)
    codes, id_map = IdMap.factorize(joined)
    bounds = np.cumsum([0] + [np.asarray(c).size for c in columns])
    return ([codes[a:b].astype(np.int64).reshape(np.shape(c))
             for a, b, c in zip(bounds[:-1], bounds[1:], columns)], id_map)


def concat_parts(parts: list[Interactions]) -> Interactions:
    """Concatenate interactions that share id maps (train + test of a shipped split)."""
    first = parts[0]
    cat = lambda name: (None if getattr(first, name) is None  # noqa: E731
                        else np.concatenate([getattr(p, name) for p in parts]))
    return Interactions(np.concatenate([p.user for p in parts]),
                        np.concatenate([p.item for p in parts]), first.users, first.items,
                        timestamp=cat("timestamp"), rating=cat("rating"), session=cat("session"),
                        meta=dict(first.meta))


def find_nested(folder: Path, pattern: str) -> list[Path]:
    """Files matching ``pattern`` in ``folder``, else in its immediate subfolders.

    Dataset folders often keep one layout per subfolder (``ml-100k/raw``, ``ml-100k/recbole``);
    looking one level down lets users pass the dataset folder itself.
    """
    found = sorted(p for p in folder.glob(pattern) if p.is_file())
    if not found:
        found = sorted(p for p in folder.glob(f"*/{pattern}") if p.is_file())
    return found


# Extensions of plain interaction files a folder may hold (the ``csv`` format's candidates).
TEXT_SUFFIXES = (".csv", ".tsv", ".txt", ".dat", ".data", ".tab", "")
_NOT_DATA = ("readme", "source", "license", "licence", "changelog")


def single_text_file(folder: Path) -> Path | None:
    """The one plain interactions file of a folder (``amazon-games/Video.txt``), ignoring
    documentation files; ``None`` when there are none or several."""
    found = [p for p in sorted(folder.iterdir()) if p.is_file()
             and p.suffix.lower() in TEXT_SUFFIXES and not p.name.startswith(".")
             and not p.stem.lower().startswith(_NOT_DATA)]
    return found[0] if len(found) == 1 else None
