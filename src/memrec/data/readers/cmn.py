"""Collaborative Memory Network ``.npz`` files (``cmn`` format, Ebesu et al. 2018).

``train_data`` is a uint32 [N, 2] array of (user, item) pairs; ``test_data`` a 0-d object array
holding a pickled dict ``{user: (positive item, [negative items])}``. ``np.load(allow_pickle=True)``
would execute whatever that pickle names, so the archive is read as a zip: each ``.npy`` header
is parsed with :mod:`numpy.lib.format`, plain arrays are taken from their bytes, and object
arrays go through :func:`memrec.data.safe_pickle.safe_load`.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from ..interactions import IdMap, Interactions
from ...errors import DataError
from ..safe_pickle import safe_load
from ..splits import Candidates, Split
from .base import Dataset, find_nested


def read_npy_bytes(data: bytes, *, source: str) -> np.ndarray:
    """Decode one ``.npy`` member without ``allow_pickle``: plain dtypes are copied from the
    buffer, object dtypes are unpickled by the restricted unpickler."""
    stream = io.BytesIO(data)
    try:
        version = npy_format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = npy_format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, fortran, dtype = npy_format.read_array_header_2_0(stream)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except ValueError as err:
        raise DataError(f"{source}: not a .npy array ({err})") from None
    if dtype.hasobject:
        array = safe_load(stream, source=source)
        if not isinstance(array, np.ndarray) or array.shape != shape:
            raise DataError(f"{source}: pickled payload is not a {shape} array")
        return array
    count = int(np.prod(shape, dtype=np.int64))
    offset = stream.tell()
    if len(data) - offset < count * dtype.itemsize:
        raise DataError(f"{source}: truncated array data")
    flat = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    return flat.reshape(shape, order="F" if fortran else "C").copy(order="C")


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` archive, by member name without ``.npy``."""
    try:
        with zipfile.ZipFile(path) as archive:
            return {name.removesuffix(".npy"):
                    read_npy_bytes(archive.read(name), source=f"{path.name}:{name}")
                    for name in archive.namelist() if name.endswith(".npy")}
    except zipfile.BadZipFile:
        raise DataError(f"{path.name}: not an .npz (zip) archive") from None


def _test_dict_arrays(test: object, source: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``{user: (pos, [negs])}`` -> (users, positives, negatives [U, N]), sorted by user."""
    if isinstance(test, np.ndarray) and test.shape == ():
        test = test.item()
    if not isinstance(test, dict) or not test:
        raise DataError(f"{source}: test_data should hold a non-empty dict "
                        "{user: (positive, [negatives])}")
    users = np.fromiter(test.keys(), dtype=np.int64, count=len(test))
    order = np.argsort(users, kind="stable")
    try:
        pairs = list(test.values())
        positives = np.fromiter((p[0] for p in pairs), dtype=np.int64, count=len(pairs))
        negatives = np.array([np.asarray(p[1], dtype=np.int64) for p in pairs])
    except (TypeError, ValueError, IndexError):
        raise DataError(f"{source}: test_data values should be (positive, [negatives])") from None
    if negatives.ndim != 2:
        raise DataError(f"{source}: test users have different numbers of negatives")
    return users[order], positives[order], negatives[order]


def read_cmn(path: Path) -> Dataset:
    """``cmn`` format: a CMN ``.npz`` (or a folder holding exactly one)."""
    if path.is_dir():
        found = find_nested(path, "*.npz")
        if len(found) != 1:
            raise DataError(f"{path}: expected one .npz file, found {len(found)}")
        path = found[0]
    arrays = read_npz(path)
    missing = {"train_data", "test_data"} - set(arrays)
    if missing:
        raise DataError(f"{path.name}: missing array(s) {', '.join(sorted(missing))}")
    train = arrays["train_data"]
    if train.ndim != 2 or train.shape[1] != 2 or train.dtype.kind not in "iu":
        raise DataError(f"{path.name}: train_data should be an integer [N, 2] array")
    if len(train) == 0:
        raise DataError(f"{path.name}: no interactions")
    users, positives, negatives = _test_dict_arrays(arrays["test_data"], f"{path.name}:test_data")
    user = np.concatenate([train[:, 0].astype(np.int64), users])
    item = np.concatenate([train[:, 1].astype(np.int64), positives])
    if min(user.min(), item.min(), negatives.min(initial=0)) < 0:
        raise DataError(f"{path.name}: negative ids")
    interactions = Interactions(
        user.astype(np.int32), item.astype(np.int32), IdMap.range(int(user.max()) + 1),
        IdMap.range(int(max(item.max(), negatives.max(initial=0))) + 1),
        meta={"source": str(path), "format": "cmn"})
    split = Split("given", interactions.take(np.arange(len(train))),
                  interactions.take(np.arange(len(train), len(interactions))),
                  test_negatives=Candidates(users, negatives))
    return Dataset(path.stem, interactions, split)
