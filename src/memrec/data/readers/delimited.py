"""Delimited text files (``csv`` format): one interaction per line, columns mapped to roles.

The file is sniffed from its first lines (separator, header, which field is the user/item/
rating/timestamp/session), then parsed in one pass by Arrow's multi-threaded CSV reader, which
reads 20M rows in seconds. Only when that fails, or leaves a required value empty, is the file
re-scanned line by line in Python to name the first bad line; the normal path has no Python loop
over rows.

Label columns (the rule, documented in ``docs/data-formats.md``). A ``label`` column (a header
naming ``label``, or ``--columns …,label``) holds 1 for an interaction and 0 for a *sampled
negative*, as in the click-through files of RippleNet/KGCN (``ratings_final.txt``): label-1 rows
are the interactions; label-0 rows are not interactions, and are returned apart (the readers keep
them as the dataset's ``negatives`` table, with a note). Any other label value is an error naming
the line. A header-less file whose third field — read as a rating by position — holds only 0 and 1
is refused: it may be a label with sampled negatives, which would silently become interactions;
a header line (``user,item,label`` or ``user,item,rating``) or ``--columns`` says which.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ..interactions import IdMap, Interactions
from ...errors import DataError
from .base import Dataset, single_text_file

ROLES = ("user", "item", "rating", "timestamp", "session", "label")
SKIP = "-"
SEPARATORS = ("::", "\t", ",", ";", " ")  # detection order: the most specific first
_ID_ROLES = ("user", "item", "session")

# Header names (normalised: lower case, no ':type' suffix, no '_', '-', ' ') -> role.
ALIASES: dict[str, str] = {
    **dict.fromkeys(["user", "userid", "uid", "users", "customerid", "reviewerid", "visitorid",
                     "username"], "user"),
    **dict.fromkeys(["item", "itemid", "iid", "items", "movieid", "artistid", "productid", "asin",
                     "isbn", "bookid", "trackid", "songid", "businessid", "articleid"], "item"),
    **dict.fromkeys(["rating", "ratings", "score", "weight", "stars", "overall", "bookrating",
                     "playcount"], "rating"),
    **dict.fromkeys(["timestamp", "time", "ts", "datetime", "unixtime", "unixreviewtime", "date",
                     "timeframe", "eventdate", "eventtime"], "timestamp"),
    **dict.fromkeys(["session", "sessionid"], "session"),
    **dict.fromkeys(["label", "labels"], "label"),
}


@dataclass(frozen=True)
class Layout:
    """How a delimited file is laid out: what :func:`sniff_layout` found or was told."""

    sep: str
    header_line: int  # 1-based line number of the header; 0 = no header
    roles: tuple[str | None, ...]  # one per field in file order; None = skipped
    date_timestamp: bool = False   # timestamps are date strings, not numbers
    by_position: bool = False      # roles guessed from the field count (no header, no --columns)

    @property
    def quoted(self) -> bool:
        """Comma/semicolon files may quote fields; tab/space/'::' files are taken literally."""
        return self.sep in (",", ";")


# -- sniffing ---------------------------------------------------------------------------------
def read_head_lines(path: Path, n: int = 2, max_bytes: int = 1 << 16) -> tuple[list[str], int]:
    """The first ``n`` non-empty lines, from a bounded prefix of the file, and the 1-based
    line number of the first of them (blank lines before a header count for Arrow's skip)."""
    with open(path, "rb") as fh:
        head = fh.read(max_bytes)
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff")
    numbered = [(k, line) for k, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if len(head) == max_bytes and len(numbered) > 1:
        numbered = numbered[:-1]  # the last line may be cut off
    return [line for _, line in numbered[:n]], (numbered[0][0] if numbered else 0)


def detect_separator(line: str) -> str:
    """The first of :data:`SEPARATORS` found in ``line``."""
    for sep in SEPARATORS:
        if sep in line:
            return sep
    raise DataError(f"cannot tell the separator of {line[:60]!r}; pass --sep")


def split_fields(line: str, sep: str, quoted: bool = False) -> list[str]:
    if quoted:
        return next(csv.reader([line], delimiter=sep))
    return line.split(sep)


def normalize_name(name: str) -> str:
    """``'user_id:token'`` -> ``'userid'``, ``'User-ID'`` -> ``'userid'``."""
    name = name.strip().strip('"\'').split(":")[0].lower()
    return name.replace("_", "").replace("-", "").replace(" ", "")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def looks_like_header(first: list[str], second: list[str] | None) -> bool:
    """A header names a known column, or has text where the data below has numbers."""
    if any(normalize_name(f) in ALIASES for f in first):
        return True
    if second is None or len(second) != len(first):
        return False
    return any(_is_number(b) and not _is_number(a) for a, b in zip(first, second))


def default_roles(n_fields: int) -> tuple[str | None, ...]:
    """user,item[,rating[,timestamp]] by field count; any further fields are skipped."""
    if n_fields < 2:
        raise DataError("expected at least 2 fields (user and item)")
    named = ("user", "item", "rating", "timestamp")[:n_fields]
    return named + (None,) * (n_fields - len(named))


def roles_from_header(names: list[str]) -> tuple[str | None, ...] | None:
    """Map header names to roles via :data:`ALIASES`; the first field of each role wins.
    ``None`` when the header names neither an item nor a user/session."""
    roles: list[str | None] = []
    for name in names:
        role = ALIASES.get(normalize_name(name))
        roles.append(role if role not in roles else None)
    if "item" in roles and ("user" in roles or "session" in roles):
        return tuple(roles)
    return None


def parse_columns(columns: list[str] | str) -> tuple[str | None, ...]:
    """Validate a ``--columns`` mapping such as ``["user", "-", "item", "rating"]``."""
    if isinstance(columns, str):
        columns = columns.split(",")
    roles: list[str | None] = []
    for name in (c.strip() for c in columns):
        if name == SKIP:
            roles.append(None)
        elif name not in ROLES:
            raise DataError(f"unknown column {name!r}: use {', '.join(ROLES)} or '-' to skip")
        elif name in roles:
            raise DataError(f"column {name!r} named twice")
        else:
            roles.append(name)
    return tuple(roles)


def check_roles(roles: tuple[str | None, ...], where: str) -> None:
    if "item" not in roles or not ("user" in roles or "session" in roles):
        raise DataError(f"{where}: columns must include item and user (or session); "
                        "pass --columns, e.g. user,item,rating,timestamp")


def sniff_layout(path: Path, *, columns=None, sep: str | None = None,
                 header: bool | None = None) -> Layout:
    """Work out separator, header and roles from the first two lines (and the arguments)."""
    lines, first_line = read_head_lines(path)
    if not lines:
        raise DataError(f"{path.name}: no interactions")
    if sep is not None and sep not in SEPARATORS:
        raise DataError(f"unsupported separator {sep!r}: use one of "
                        + " ".join(repr(s) for s in SEPARATORS))
    sep = sep or detect_separator(lines[0])
    quoted = sep in (",", ";")
    first = split_fields(lines[0], sep, quoted)
    second = split_fields(lines[1], sep, quoted) if len(lines) > 1 else None
    if header is None:
        header = looks_like_header(first, second)
    by_position = False
    if columns is not None:
        roles = parse_columns(columns)
        if len(roles) != len(first):
            raise DataError(f"{path.name}: --columns names {len(roles)} fields but the file "
                            f"has {len(first)} per line")
    else:
        by_position = not header
        roles = (roles_from_header(first) if header else None) or default_roles(len(first))
        if header and roles_from_header(first) is None:
            # the header names its columns but not an item and a user: guessing by position
            # would silently read, say, a rating column as items
            raise DataError(f"{path.name}: the header ({', '.join(first)}) has no item and user "
                            "(or session) column; pass --columns, e.g. user,item,rating,timestamp")
    check_roles(roles, path.name)
    data_line = second if header else first
    date_timestamp = False
    if "timestamp" in roles and data_line is not None and len(data_line) == len(roles):
        date_timestamp = not _is_number(data_line[roles.index("timestamp")])
    return Layout(sep, first_line if header else 0, roles, date_timestamp,
                  by_position=by_position)


# -- fast path --------------------------------------------------------------------------------
def _arrow_source(path: Path, sep: str):
    """What Arrow reads: the path itself, or for '::' files the bytes with '::' -> one byte.

    Arrow needs a one-character delimiter. Replacing '::' in memory (one C pass, ~2x the file
    size transiently) keeps ids or fields containing a single ':' intact, unlike splitting on ':'.
    """
    if len(sep) == 1:
        return str(path), sep
    data = path.read_bytes()
    for stand_in in (b"\x1f", b"\x1e", b"\x1d"):
        if stand_in not in data:
            return pa.BufferReader(data.replace(sep.encode(), stand_in)), stand_in.decode()
    raise DataError(f"{path.name}: cannot parse {sep!r}-separated file containing \\x1d-\\x1f")


def _read_arrow(path: Path, layout: Layout, encoding: str = "utf8") -> pa.Table:
    names = [f"f{k}" for k in range(len(layout.roles))]
    types = {names[k]: (pa.string() if role in _ID_ROLES
                        or (role == "timestamp" and layout.date_timestamp) else pa.float64())
             for k, role in enumerate(layout.roles) if role}
    source, delimiter = _arrow_source(path, layout.sep)
    return pacsv.read_csv(
        source,
        read_options=pacsv.ReadOptions(column_names=names, skip_rows=layout.header_line,
                                       block_size=16 << 20, encoding=encoding),
        parse_options=pacsv.ParseOptions(delimiter=delimiter,
                                         quote_char='"' if layout.quoted else False),
        convert_options=pacsv.ConvertOptions(include_columns=list(types), column_types=types,
                                             strings_can_be_null=False,
                                             quoted_strings_can_be_null=False))


#: id values that mean "no id" in exported tables (pandas / R / SQL), refused as ids
MISSING_IDS = ["", "NA", "N/A", "NaN", "nan", "null", "NULL", "None"]


def _index_ids(column: pa.ChunkedArray) -> tuple[np.ndarray, IdMap] | None:
    """(codes, id map) for an id column read as strings: int64 raw ids when every id is an
    integer, else the strings. ``None`` if an id is empty (the caller reports the line)."""
    trimmed = pc.utf8_trim_whitespace(column)
    if pc.any(pc.is_in(trimmed, value_set=pa.array(MISSING_IDS))).as_py():
        return None
    try:
        ints = pc.cast(trimmed, pa.int64()).to_numpy()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        encoded = trimmed.combine_chunks().dictionary_encode()  # order of first appearance
        raw = encoded.dictionary.to_numpy(zero_copy_only=False).astype(str)
        return encoded.indices.to_numpy().astype(np.int32), IdMap(raw)
    return IdMap.factorize(ints)


def _float_column(column: pa.ChunkedArray, role: str) -> np.ndarray | None:
    """A float64 column, ``None`` when a value was empty, NaN or infinite, or a timestamp was
    negative (the caller reports the line)."""
    if column.null_count:
        return None
    values = column.to_numpy()
    if not np.isfinite(values).all() or (role == "timestamp" and (values < 0).any()):
        return None
    return values


def _date_column(column: pa.ChunkedArray) -> np.ndarray | None:
    """Date strings -> seconds since the epoch (UTC); ``None`` when one does not parse."""
    stamps = pd.to_datetime(pd.Series(column.to_numpy(zero_copy_only=False)), utc=True,
                            errors="coerce", format="mixed")
    if stamps.isna().any():
        return None
    return (stamps - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(np.float64)


def _columns_from_table(table: pa.Table, layout: Layout) -> dict | None:
    """Role -> converted column; ``None`` if a required value is missing or malformed (a label
    other than 0 or 1 included)."""
    out: dict = {}
    for k, role in enumerate(layout.roles):
        if role is None:
            continue
        column = table.column(f"f{k}")
        if role in _ID_ROLES:
            value = _index_ids(column)
        elif role == "timestamp" and layout.date_timestamp:
            value = _date_column(column)
        else:
            value = _float_column(column, role)
        if value is None or (role == "label" and not np.isin(value, (0.0, 1.0)).all()):
            return None
        out[role] = value
    return out


# -- error path -------------------------------------------------------------------------------
def _numbered_rows(fh, layout: Layout):
    """(physical line number, fields) of each non-blank line, split like the fast path does."""
    if layout.quoted:  # one reader for the file: quoted fields may even span lines
        reader = csv.reader(fh, delimiter=layout.sep)
        return ((reader.line_num, fields) for fields in reader if fields)
    sep = layout.sep
    return ((number, line.rstrip("\r\n").split(sep))
            for number, line in enumerate(fh, start=1) if line.strip())


def _number_problem(value: str) -> str | None:
    """Why a rating or time field is not usable: not a number, or NaN / infinite."""
    try:
        number = float(value)
    except ValueError:
        return "is not a number"
    return None if math.isfinite(number) else "is not a finite number"


def _shown(value: str, limit: int = 40) -> str:
    """A field as an error message quotes it: a 30-million-digit number is cut short."""
    value = value.strip()
    return repr(value) if len(value) <= limit else repr(value[:limit]) + f"... ({len(value):,} characters)"


def _date_ok(value: str) -> bool:
    try:
        pd.Timestamp(value.strip())
    except (ValueError, TypeError):
        return False
    return True


def _row_problem(fields: list[str], layout: Layout) -> str | None:
    """What is wrong with one split line, or ``None``."""
    if len(fields) != len(layout.roles):
        return f"expected {len(layout.roles)} fields, found {len(fields)}"
    for role, value in zip(layout.roles, fields):
        if role in _ID_ROLES and not value.strip():
            return f"empty {role} id"
        if role in _ID_ROLES and value.strip() in MISSING_IDS:
            # e.g. Diginetica's anonymous clicks: read as an id they would make one huge user
            return f"missing {role} id ({value.strip()!r})"
        if role == "timestamp" and layout.date_timestamp:
            if not _date_ok(value):
                return f"timestamp {value.strip()!r} is not a date"
        elif role in ("rating", "timestamp") and _number_problem(value):
            return f"{role} {_shown(value)} {_number_problem(value)}"
        elif role == "timestamp" and float(value) < 0:
            return f"timestamp {_shown(value)} is negative (seconds since 1970 expected)"
        elif role == "label" and (_number_problem(value) or float(value) not in (0.0, 1.0)):
            return f"label {_shown(value)} is not 0 or 1 (1: an interaction, 0: a sampled negative)"
    return None


def first_bad_line(path: Path, layout: Layout) -> str | None:
    """Scan the file in Python and describe its first malformed line, e.g.
    ``"u.data line 17: expected 4 fields, found 2"``. Only runs after the fast path failed."""
    with open(path, encoding="utf-8", errors="replace", newline="") as fh:
        for number, fields in _numbered_rows(fh, layout):
            problem = _row_problem(fields, layout)
            if problem and number != layout.header_line:
                return f"{path.name} line {number}: {problem}"
    return None


def _raise_bad_input(path: Path, layout: Layout, cause: str) -> NoReturn:
    raise DataError(first_bad_line(path, layout) or f"{path.name}: cannot parse ({cause})")


# -- entry points -----------------------------------------------------------------------------
def read_delimited(path: Path, *, columns=None, sep: str | None = None,
                   header: bool | None = None, fmt: str = "csv") -> Interactions:
    """Read a delimited interactions file into :class:`Interactions` (see the module doc).

    Integer ids stay int64 raw ids; any non-integer id makes that column's raw ids strings.
    Without a timestamp column the file order is the time order. A file with a label column
    must be read with :func:`read_labelled` (its label-0 rows are not interactions).
    """
    interactions, negatives = read_labelled(path, columns=columns, sep=sep, header=header, fmt=fmt)
    if negatives is not None:
        raise DataError(f"{path.name}: a label column (1: interaction, 0: sampled negative) where "
                        "this format expects none; read it with --format csv")
    return interactions


def read_labelled(path: Path, *, columns=None, sep: str | None = None, header: bool | None = None,
                  fmt: str = "csv") -> tuple[Interactions, pd.DataFrame | None]:
    """:func:`read_delimited` for files that may hold a label column: (the label-1 rows as
    interactions, the label-0 rows as a ``user``, ``item`` frame of raw ids), or (all rows,
    ``None``) without a label column."""
    layout = sniff_layout(path, columns=columns, sep=sep, header=header)
    try:
        table = _read_arrow(path, layout)
    except pa.ArrowInvalid as err:
        if "UTF8" not in str(err):
            _raise_bad_input(path, layout, str(err).splitlines()[0])
        try:  # not UTF-8: older files (MovieLens, Book-Crossing) are latin-1
            table = _read_arrow(path, layout, encoding="latin-1")
        except pa.ArrowInvalid as retry_err:
            _raise_bad_input(path, layout, str(retry_err).splitlines()[0])
    if table.num_rows == 0:
        raise DataError(f"{path.name}: no interactions")
    cols = _columns_from_table(table, layout)
    del table
    if cols is None:
        _raise_bad_input(path, layout, "missing or malformed values")
    _refuse_unnamed_labels(path, layout, cols)
    meta = {"source": str(path), "format": fmt}
    if "label" not in cols:
        return _interactions(cols, meta), None
    positives, negatives = _split_labels(cols)
    if not len(positives["item"][0]):
        raise DataError(f"{path.name}: no interactions (every label is 0: sampled negatives only)")
    return _interactions(positives, meta), negatives


def _refuse_unnamed_labels(path: Path, layout: Layout, cols: dict) -> None:
    """A third field read as a rating *by position* that holds only 0 and 1 may be a label with
    sampled negatives (RippleNet/KGCN ``ratings_final.txt``): refuse to guess (module doc)."""
    if not layout.by_position or "rating" not in cols:
        return
    if set(np.unique(cols["rating"]).tolist()) == {0.0, 1.0}:
        field = layout.roles.index("rating") + 1
        raise DataError(f"{path.name}: field {field} holds only 0 and 1 and no header names it: a "
                        "label with sampled negatives, or a rating? Add a header line, user,item,label "
                        "(label-1 rows are the interactions, label-0 rows are set apart) or "
                        "user,item,rating (every row an interaction), or pass --columns")


def _split_labels(cols: dict) -> tuple[dict, pd.DataFrame]:
    """(the label-1 rows' columns, their ids re-indexed; the label-0 rows' raw user and item ids)."""
    positive = cols["label"] == 1.0
    (user, users), (item, items) = cols["user"] if "user" in cols else cols["session"], cols["item"]
    negatives = pd.DataFrame({"user": users.raw[user[~positive]], "item": items.raw[item[~positive]]})
    kept = {}
    for role, value in cols.items():
        if role == "label":
            continue
        if role in _ID_ROLES:           # ids seen only on negatives are no users or items
            codes, id_map = value
            value = IdMap.factorize(id_map.raw[codes[positive]])
        else:
            value = value[positive]
        kept[role] = value
    return kept, negatives


def _interactions(cols: dict, meta: dict) -> Interactions:
    """Assemble :class:`Interactions`; sessionised data without users uses sessions as users."""
    user, users = cols["user"] if "user" in cols else cols["session"]
    item, items = cols["item"]
    session = None
    if "session" in cols:  # integer session ids are kept, string ones become their codes
        codes, session_map = cols["session"]
        integer = session_map.raw.dtype.kind == "i"
        session = session_map.raw[codes] if integer else codes.astype(np.int64)
    return Interactions(user, item, users, items, timestamp=cols.get("timestamp"),
                        rating=None if "rating" not in cols else cols["rating"].astype(np.float32),
                        session=session, meta=meta)


def read_csv(path: Path, *, columns=None, sep: str | None = None) -> Dataset:
    """``csv`` format: a delimited interactions file; name = the file stem."""
    if path.is_dir():
        found = single_text_file(path)
        if found is None:
            raise DataError(f"{path}: the csv format needs a file (the folder has no single "
                            "interactions file)")
        path = found
    interactions, negatives = read_labelled(path, columns=columns, sep=sep)
    if negatives is None:
        return Dataset(path.stem, interactions)
    return Dataset(path.stem, interactions, extras={"negatives": negatives},
                   notes=(negatives_note(path, interactions, negatives),))


def negatives_note(path: Path, interactions: Interactions, negatives: pd.DataFrame) -> str:
    """What a reader says about the label-0 rows it set apart (the module doc's rule)."""
    return (f"{path.name}: {len(interactions):,} label-1 rows are the interactions; "
            f"{len(negatives):,} label-0 rows are sampled negatives, kept apart as the dataset's "
            "negatives table (not interactions; evaluation draws its own negatives)")


