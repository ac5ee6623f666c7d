"""Knowledge-graph triples and their item linkage (``kg`` format).

Two layouts are read: RecBole ``.kg`` / ``.link`` atomic files, and KGCN-style text files
(``kg.txt`` or ``kg_final.txt``: ``head<TAB>relation<TAB>tail``, with ``item_index2entity_id.txt``:
``item<TAB>entity``). :func:`load_kg` returns the triples (``head``, ``relation``, ``tail`` as
str) and the link frame (``item``, ``entity``). A KGCN folder such as lastfm-kg also loads as a
:class:`Dataset` whose interactions come from its ratings file (``user_artists.dat``).
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from ...errors import DataError
from .base import Dataset, dataset_name, int_ids_or_str
from .delimited import read_delimited
from .recbole import read_kg_atomic, read_link_atomic

KG_FILES = ("kg.txt", "kg_final.txt")
LINK_FILE = "item_index2entity_id.txt"
INTERACTION_FILES = ("user_artists.dat", "ratings.csv", "ratings.dat")
_TRIPLE = ["head", "relation", "tail"]


def _bad_tsv_line(path: Path, n_fields: int) -> str:
    """The first line without exactly ``n_fields`` non-empty tab-separated fields."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            fields = line.rstrip("\r\n").split("\t")
            if len(fields) != n_fields:
                return f"{path.name} line {number}: expected {n_fields} fields, found {len(fields)}"
            if not all(f.strip() for f in fields):
                return f"{path.name} line {number}: empty field"
    return f"{path.name}: cannot parse"


def read_tsv(path: Path, names: list[str]) -> pd.DataFrame:
    """A header-less tab-separated file of exactly ``len(names)`` str fields per line."""
    try:
        frame = pd.read_csv(path, sep="\t", header=None, names=names, dtype=str,
                            keep_default_na=False, quoting=csv.QUOTE_NONE, engine="c")
    except (pd.errors.ParserError, UnicodeDecodeError):
        raise DataError(_bad_tsv_line(path, len(names))) from None
    if frame.isna().any().any() or (frame == "").any().any():
        raise DataError(_bad_tsv_line(path, len(names)))
    if len(frame) and [f.lower() for f in frame.iloc[0]] in (names, ["h", "r", "t"]):
        frame = frame.iloc[1:].reset_index(drop=True)  # a header line after all
    return frame


def read_kg_text(path: Path) -> pd.DataFrame:
    """KGCN ``kg.txt``: ``head, relation, tail`` str columns."""
    triples = read_tsv(path, _TRIPLE)
    if triples.empty:
        raise DataError(f"{path.name}: no triples")
    return triples


def read_link_text(path: Path) -> pd.DataFrame:
    """KGCN ``item_index2entity_id.txt``: ``item`` (int64 when all-integer) and ``entity`` (str)."""
    frame = read_tsv(path, ["item", "entity"])
    return frame.assign(item=int_ids_or_str(frame["item"]))


def _kg_file(path: Path) -> Path:
    if path.is_file():
        return path
    for pattern in ("*.kg", *KG_FILES):
        found = sorted(path.glob(pattern))
        if found:
            return found[0]
    raise DataError(f"{path}: no knowledge graph ({', '.join(('*.kg',) + KG_FILES)})")


def load_kg(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """``(triples, link)`` from a ``.kg`` file, a ``kg.txt`` file, or a folder holding either.

    ``link`` (``item``, ``entity``) is ``None`` when no linkage file sits beside the graph.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    kg = _kg_file(path)
    if kg.suffix == ".kg":
        link = kg.with_name(kg.stem + ".link")
        return read_kg_atomic(kg), read_link_atomic(link) if link.is_file() else None
    link = kg.parent / LINK_FILE
    return read_kg_text(kg), read_link_text(link) if link.is_file() else None


def read_kg(path: Path) -> Dataset:
    """``kg`` format: a KGCN folder (ratings file + ``kg.txt`` + linkage) as a Dataset."""
    folder = path if path.is_dir() else path.parent
    ratings = next((folder / n for n in INTERACTION_FILES if (folder / n).is_file()), None)
    if ratings is None:
        raise DataError(f"{folder}: no interactions file ({', '.join(INTERACTION_FILES)}) "
                        "beside the knowledge graph")
    interactions = read_delimited(ratings, fmt="kg")
    triples, link = load_kg(folder)
    extras = {"kg": triples} if link is None else {"kg": triples, "link": link}
    return Dataset(dataset_name(folder), interactions, None, extras)
