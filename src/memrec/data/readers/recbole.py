"""RecBole atomic files (``recbole`` format).

Tab-separated files whose header types each field (``user_id:token  item_id:token
rating:float  timestamp:float``). ``<stem>.inter`` holds the interactions; the siblings
``<stem>.item`` / ``.user`` go to ``extras["item"]`` / ``["user"]``, ``.kg`` to ``extras["kg"]``
(``head``, ``relation``, ``tail`` as str) and ``.link`` to ``extras["link"]`` (``item``,
``entity``). Fields the library has no use for are ignored. A ``label`` field (RecBole's
click-through datasets) follows the label rule of :mod:`.delimited`: label-1 rows are the
interactions, label-0 rows go to ``extras["negatives"]``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from ...errors import DataError
from .base import Dataset, dataset_name, find_nested, int_ids_or_str, read_first_line
from .delimited import ALIASES, negatives_note, normalize_name, read_labelled

# Atomic-file field names -> memrec column names (extras keep other names as they are).
RENAME = {"user_id": "user", "item_id": "item", "head_id": "head", "relation_id": "relation",
          "tail_id": "tail", "entity_id": "entity"}
_ID_COLUMNS = ("user", "item")
_KG_COLUMNS = ("head", "relation", "tail")


def find_inter_file(folder: Path) -> Path:
    """The one ``.inter`` file of a RecBole dataset folder."""
    found = find_nested(folder, "*.inter")
    if len(found) != 1:
        what = "no .inter file" if not found else "several .inter files: " + ", ".join(
            p.name for p in found)
        raise DataError(f"{folder}: {what}; pass the .inter file itself")
    return found[0]


def inter_roles(header: str) -> list[str]:
    """Roles (``--columns`` style) for the fields of an ``.inter`` header: ``user_id`` ->
    user, ``session_id`` -> session, ... ; unknown fields and repeats are skipped (``-``)."""
    roles: list[str] = []
    for field in header.split("\t"):
        role = ALIASES.get(normalize_name(field))
        roles.append(role if role and role not in roles else "-")
    return roles


def read_atomic(path: Path) -> pd.DataFrame:
    """Any atomic file as a frame: names without the type suffix (renamed per :data:`RENAME`),
    ``float`` fields numeric, ``user``/``item`` ids int64 when all-integer, the rest str."""
    try:
        frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False,
                            quoting=csv.QUOTE_NONE, encoding="utf-8")
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise DataError(f"{path.name}: cannot parse ({str(err).splitlines()[0]})") from None
    names, types = zip(*(c.split(":", 1) if ":" in c else (c, "token") for c in frame.columns))
    frame.columns = [RENAME.get(n, n) for n in names]
    for name, kind in zip(frame.columns, types):
        if kind == "float":
            frame[name] = pd.to_numeric(frame[name], errors="coerce")
        elif name in _ID_COLUMNS:
            frame[name] = int_ids_or_str(frame[name])
    return frame


def read_kg_atomic(path: Path) -> pd.DataFrame:
    """A ``.kg`` file as ``head, relation, tail`` str columns."""
    frame = read_atomic(path)
    missing = [c for c in _KG_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{path.name}: missing field(s) {', '.join(c + '_id' for c in missing)}")
    return frame[list(_KG_COLUMNS)].astype(str)


def read_link_atomic(path: Path) -> pd.DataFrame:
    """A ``.link`` file as ``item`` (typed like interaction ids) and ``entity`` (str)."""
    frame = read_atomic(path)
    if not {"item", "entity"} <= set(frame.columns):
        raise DataError(f"{path.name}: expected fields item_id and entity_id")
    return frame[["item", "entity"]].assign(entity=frame["entity"].astype(str))


def read_recbole(path: Path) -> Dataset:
    """``recbole`` format: a folder holding one ``.inter`` file, or the ``.inter`` file."""
    inter = find_inter_file(path) if path.is_dir() else path
    if inter.suffix != ".inter":
        raise DataError(f"{inter.name}: the recbole format reads a .inter file")
    roles = inter_roles(read_first_line(inter))
    interactions, negatives = read_labelled(inter, columns=roles, sep="\t", header=True, fmt="recbole")
    extras: dict[str, pd.DataFrame] = {} if negatives is None else {"negatives": negatives}
    notes = () if negatives is None else (negatives_note(inter, interactions, negatives),)
    for key, suffix, reader in (("item", ".item", read_atomic), ("user", ".user", read_atomic),
                                ("kg", ".kg", read_kg_atomic), ("link", ".link", read_link_atomic)):
        sibling = inter.parent / (inter.stem + suffix)
        if sibling.is_file():
            extras[key] = reader(sibling)
    name = inter.stem if inter.stem else dataset_name(inter.parent)
    return Dataset(name, interactions, None, extras, notes)
