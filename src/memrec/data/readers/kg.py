"""Knowledge-graph triples and their item linkage (``kg`` and ``ripplenet`` formats).

Three layouts are read: RecBole ``.kg`` / ``.link`` atomic files; KGCN-style text files
(``kg.txt`` or ``kg_final.txt``: ``head<TAB>relation<TAB>tail``, with ``item_index2entity_id.txt``:
``item<TAB>entity``); and the preprocessed files of RippleNet / KGCN / KGNN-LS / CKAN
(``ripplenet`` format): ``ratings_final.txt`` (``user<TAB>item<TAB>label``, integer ids, label 1
an interaction, 0 a sampled negative) beside ``kg_final.txt`` (integer head, relation, tail),
where the item ids *are* the first entity ids — item i is entity i, no linkage file.

:func:`load_kg` returns the triples (``head``, ``relation``, ``tail`` as str) and the link frame
(``item``, ``entity``). A KGCN folder such as lastfm-kg also loads as a :class:`Dataset` whose
interactions come from its ratings file (``user_artists.dat``); a RippleNet folder as one whose
interactions are the label-1 rows of ``ratings_final.txt``, its label-0 rows (sampled negatives,
not interactions) set apart in ``extras["negatives"]`` with a note.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from ...errors import DataError
from .base import Dataset, dataset_name, int_ids_or_str
from .delimited import negatives_note, read_delimited, read_labelled
from .recbole import read_kg_atomic, read_link_atomic

KG_FILES = ("kg.txt", "kg_final.txt")
LINK_FILE = "item_index2entity_id.txt"
INTERACTION_FILES = ("user_artists.dat", "ratings.csv", "ratings.dat")
#: the ripplenet format: labelled interactions beside the graph whose first entity ids are the items
RIPPLENET_RATINGS = "ratings_final.txt"
RIPPLENET_KG = "kg_final.txt"
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


def is_ripplenet_folder(folder: Path) -> bool:
    return (folder / RIPPLENET_RATINGS).is_file()


def find_kg_file(path: Path, *, raw_ids: bool = False) -> Path | None:
    """The graph file of a folder (or the file itself): ``*.kg``, ``kg.txt``, ``kg_final.txt``.
    In a RippleNet folder ``kg_final.txt`` comes first (its ids are ``ratings_final.txt``'s),
    unless ``raw_ids`` asks for the graph of the raw-id files (``kg.txt`` + linkage)."""
    if path.is_file():
        return path
    first = (RIPPLENET_KG,) if is_ripplenet_folder(path) and not raw_ids else ()
    for pattern in (*first, "*.kg", *KG_FILES):
        found = sorted(path.glob(pattern))
        if found:
            return found[0]
    return None


def _kg_file(path: Path, *, raw_ids: bool = False) -> Path:
    found = find_kg_file(path, raw_ids=raw_ids)
    if found is None:
        raise DataError(f"{path}: no knowledge graph ({', '.join(('*.kg',) + KG_FILES)})")
    return found


def link_source(kg: Path) -> Path | None:
    """The file the item links of graph file ``kg`` come from: the ``.link`` beside a ``.kg``,
    ``ratings_final.txt`` beside a RippleNet ``kg_final.txt`` (item i is entity i), else
    ``item_index2entity_id.txt``; ``None`` when there is none."""
    if kg.suffix == ".kg":
        link = kg.with_name(kg.stem + ".link")
    elif kg.name == RIPPLENET_KG and is_ripplenet_folder(kg.parent):
        link = kg.parent / RIPPLENET_RATINGS
    else:
        link = kg.parent / LINK_FILE
    return link if link.is_file() else None


def identity_links(ratings: Path) -> pd.DataFrame:
    """RippleNet's linkage: every item id of ``ratings_final.txt`` (label 0 rows too) is the
    entity of the same id. ``item`` int64 when all-integer, ``entity`` str."""
    try:
        items = pd.read_csv(ratings, sep=r"\s+", header=None, usecols=[1], dtype=str,
                            keep_default_na=False, engine="c")[1]
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError):
        raise DataError(_bad_tsv_line(ratings, 3)) from None
    items = pd.Series(items.unique())
    return pd.DataFrame({"item": int_ids_or_str(items), "entity": items.astype(str)})


def load_kg(path: str | Path, *, raw_ids: bool = False) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """``(triples, link)`` from a ``.kg`` file, a ``kg.txt`` / ``kg_final.txt`` file, or a
    folder holding one (see :func:`find_kg_file` for which, :func:`link_source` for the links).

    ``link`` (``item``, ``entity``) is ``None`` when no linkage sits beside the graph.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    kg = _kg_file(path, raw_ids=raw_ids)
    link = link_source(kg)
    if kg.suffix == ".kg":
        return read_kg_atomic(kg), read_link_atomic(link) if link else None
    if link is not None and link.name == RIPPLENET_RATINGS:
        return read_kg_text(kg), identity_links(link)
    return read_kg_text(kg), read_link_text(link) if link else None


def read_kg(path: Path) -> Dataset:
    """``kg`` format: a KGCN folder (ratings file + ``kg.txt`` + linkage) as a Dataset."""
    folder = path if path.is_dir() else path.parent
    ratings = next((folder / n for n in INTERACTION_FILES if (folder / n).is_file()), None)
    if ratings is None:
        raise DataError(f"{folder}: no interactions file ({', '.join(INTERACTION_FILES)}) "
                        "beside the knowledge graph")
    interactions = read_delimited(ratings, fmt="kg")
    triples, link = load_kg(folder, raw_ids=True)
    extras = {"kg": triples} if link is None else {"kg": triples, "link": link}
    return Dataset(dataset_name(folder), interactions, None, extras)


def read_ripplenet(path: Path) -> Dataset:
    """``ripplenet`` format: a folder holding ``ratings_final.txt`` [+ ``kg_final.txt``], or
    either file. Label-1 rows are the interactions; label-0 rows (the sampled negatives those
    papers train and test CTR on) are not, and are kept as ``extras["negatives"]`` with a note."""
    folder = path if path.is_dir() else path.parent
    ratings = folder / RIPPLENET_RATINGS
    if not ratings.is_file():
        raise DataError(f"{folder}: no {RIPPLENET_RATINGS} (the ripplenet format's user, item, label file)")
    interactions, negatives = read_labelled(ratings, columns=["user", "item", "label"], header=False,
                                            fmt="ripplenet")
    extras = {"negatives": negatives}          # never None: the columns name a label
    if (folder / RIPPLENET_KG).is_file():
        triples, link = load_kg(folder / RIPPLENET_KG)
        extras.update(kg=triples, link=link)
    return Dataset(dataset_name(folder), interactions, None, extras,
                   (negatives_note(ratings, interactions, negatives),))


def dataset_kg_file(fmt: str, target: Path) -> Path | None:
    """The graph file that goes with a dataset read as ``fmt`` from ``target`` (what
    :func:`memrec.data.readers.load` hands that format's reader), ``None`` if it has none."""
    if fmt == "recbole":
        inter = target if target.is_file() else None
        if inter is None:
            from .recbole import find_inter_file
            inter = find_inter_file(target)
        kg = inter.with_suffix(".kg")
        return kg if kg.is_file() else None
    folder = target if target.is_dir() else target.parent
    if fmt == "kg":
        return find_kg_file(folder, raw_ids=True)
    if fmt == "ripplenet":
        return folder / RIPPLENET_KG if (folder / RIPPLENET_KG).is_file() else None
    return None
