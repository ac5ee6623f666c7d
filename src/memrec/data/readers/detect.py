"""Guess a file's or folder's format from file names, extensions and the first line.

Each rule names one format and the path its reader should get; the first matching rule wins,
so the order below is the precedence (e.g. MovieLens' raw ``u.data`` before RecBole's
``.inter`` when a folder holds both).
"""

from __future__ import annotations

from pathlib import Path

from .base import find_nested, is_pickle, read_first_line, single_text_file
from .delimited import SEPARATORS, normalize_name
from .kg import INTERACTION_FILES, KG_FILES, LINK_FILE, RIPPLENET_KG, RIPPLENET_RATINGS, is_ripplenet_folder
from .movielens import RATING_FILES, find_ratings_file
from .ncf import SUFFIXES as NCF_SUFFIXES
from .session import TEST_FILE, TRAIN_FILE


def _movielens_csv(path: Path) -> bool:
    """``ratings.csv`` is MovieLens when its header is ``userId,movieId,...``."""
    fields = read_first_line(path).split(",")
    return [normalize_name(f) for f in fields[:2]] == ["userid", "movieid"]


def _has_kg(folder: Path) -> bool:
    return any((folder / name).is_file() for name in KG_FILES)


def detect_file(path: Path) -> tuple[str, Path] | None:
    """(format, path for its reader) for a single file, or ``None``."""
    name = path.name
    if path.suffix == ".npz":
        return "cmn", path
    if name.endswith(NCF_SUFFIXES):
        return "ncf", path
    if path.suffix == ".inter":
        return "recbole", path
    if path.suffix in (".kg", ".link", ".item", ".user"):
        inter = path.with_name(path.stem + ".inter")
        return ("recbole", inter) if inter.is_file() else None
    if name in (TRAIN_FILE, TEST_FILE) and is_pickle(path):
        return "session", path.parent
    if name in ("u.data", "ratings.dat") or (name == "ratings.csv" and _movielens_csv(path)):
        return "movielens", path
    if name in (RIPPLENET_RATINGS, RIPPLENET_KG) and is_ripplenet_folder(path.parent):
        return "ripplenet", path.parent
    if (name in KG_FILES + (LINK_FILE,) + INTERACTION_FILES) and _has_kg(path.parent):
        return "kg", path.parent
    if path.stat().st_size == 0 or is_pickle(path):
        return None
    first = read_first_line(path)
    if any(sep in first for sep in SEPARATORS):
        return "csv", path
    return None


def detect_folder(folder: Path) -> tuple[str, Path] | None:
    """(format, path for its reader) for a dataset folder, or ``None``."""
    if is_ripplenet_folder(folder):
        return "ripplenet", folder  # preprocessed RippleNet/KGCN files: labels, item ids = entity ids
    if _has_kg(folder) and any((folder / n).is_file() for n in INTERACTION_FILES):
        return "kg", folder  # KGCN folders may hold MovieLens ratings: keep their graph
    ratings = find_ratings_file(folder)
    if ratings is not None and (ratings.name in RATING_FILES[:2] or _movielens_csv(ratings)):
        return "movielens", ratings
    sessions = find_nested(folder, TRAIN_FILE)
    if sessions and (sessions[0].parent / TEST_FILE).is_file():
        return "session", sessions[0].parent
    ncf = find_nested(folder, "*.train.rating")
    if len(ncf) == 1:
        return "ncf", ncf[0]
    npz = find_nested(folder, "*.npz")
    if len(npz) == 1:
        return "cmn", npz[0]
    inter = find_nested(folder, "*.inter")
    if len(inter) == 1:
        return "recbole", inter[0]
    single = single_text_file(folder)
    return None if single is None else detect_file(single)


def detect_format(path: Path) -> tuple[str, Path] | None:
    """(format name, path to hand its reader), or ``None`` when nothing matches."""
    return detect_folder(path) if path.is_dir() else detect_file(path)
