"""Read public recommender datasets into :class:`Dataset` objects.

One entry point, :func:`load`, picks a reader from :data:`FORMATS` by name or by
:func:`detect_format`. Every reader returns the same :class:`Dataset`: all interactions, the
split shipped with the files (if any) and side tables. Bad input raises
:class:`~memrec.data.interactions.DataError` with a one-line message naming the file (and the
line, for malformed rows).

Example
-------
>>> ds = load("data/ml-100k")                       # doctest: +SKIP
>>> ds = load("ratings.txt", "csv", columns=["user", "-", "item"], sep="\\t")  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

from ...errors import DataError
from .base import Dataset, dataset_name, require_path
from .cmn import read_cmn
from .delimited import read_csv
from .detect import detect_format
from .kg import dataset_kg_file, load_kg, read_kg, read_ripplenet
from .movielens import read_movielens
from .ncf import read_ncf
from .recbole import read_recbole
from .session import read_session

#: Format name -> reader. Every reader takes a path (file or folder) and returns a Dataset;
#: only ``csv`` also takes ``columns`` and ``sep``.
FORMATS: dict[str, Callable[..., Dataset]] = {
    "csv": read_csv,
    "movielens": read_movielens,
    "recbole": read_recbole,
    "ncf": read_ncf,
    "cmn": read_cmn,
    "session": read_session,
    "kg": read_kg,
    "ripplenet": read_ripplenet,
}


def load(path: str | Path, format: str | None = None, *, columns: list[str] | None = None,
         sep: str | None = None) -> Dataset:
    """Read the dataset at ``path`` (a file or a dataset folder).

    Parameters
    ----------
    path : str or Path
    format : str, optional
        A key of :data:`FORMATS`; ``None`` detects it from file names and the first line.
    columns : list of str, optional
        ``csv`` only: the role of each field in file order (``user``, ``item``, ``rating``,
        ``timestamp``, ``session``, or ``-`` to skip it).
    sep : str, optional
        ``csv`` only: one of ``,`` ``\\t`` ``::`` ``;`` and space; detected when omitted.
    """
    path = require_path(path)
    if path.is_file():
        _check_text(path)
    target = path
    if format is None:
        detected = detect_format(path)
        if detected is None:
            raise DataError(f"{path}: cannot tell the format (known: {', '.join(FORMATS)}); "
                            "pass --format")
        format, target = detected
    elif format not in FORMATS:
        raise DataError(f"unknown format {format!r} (known: {', '.join(FORMATS)})")
    if format == "csv":
        dataset = read_csv(target, columns=columns, sep=sep)
    elif columns is not None or sep is not None:
        raise DataError(f"--columns and --sep apply to the csv format, not {format}")
    else:
        dataset = FORMATS[format](target)
    return replace(dataset, name=dataset_name(path)) if path.is_dir() else dataset


def knowledge_graph_file(path: str | Path, format: str | None = None) -> Path | None:
    """The knowledge-graph file of the dataset at ``path`` as ``format`` (None: detected) reads
    it — ``*.kg`` beside a RecBole ``.inter``, a KGCN ``kg.txt``, a RippleNet ``kg_final.txt`` —
    or ``None`` when that dataset has no graph."""
    path = require_path(path)
    detected = detect_format(path) if format is None else (format, path)
    return None if detected is None else dataset_kg_file(*detected)


#: byte-order marks of encodings the readers do not take (they read UTF-8, then Latin-1)
_OTHER_ENCODINGS = {b"\xff\xfe": "UTF-16 (little-endian)", b"\xfe\xff": "UTF-16 (big-endian)"}


def _check_text(path: Path) -> None:
    """An empty file, or text in an encoding the readers cannot take, said plainly (rather
    than as an unknown format or a rating of '\\x00r\\x00a...')."""
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        raise DataError(f"{path}: the file is empty")
    for mark, encoding in _OTHER_ENCODINGS.items():
        if head.startswith(mark):
            raise DataError(f"{path}: the text is {encoding}; save it as UTF-8")


__all__ = ["Dataset", "FORMATS", "load", "load_kg", "knowledge_graph_file", "detect_format", "DataError"]
