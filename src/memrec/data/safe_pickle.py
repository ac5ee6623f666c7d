"""Load pickled *data* without letting the file run code.

Several public recommender datasets ship as pickles (SR-GNN/STAMP session lists, the object
array inside CMN's ``.npz``). ``pickle.load`` on such a file executes whatever callable the file
names, so a downloaded dataset could run ``os.system``. :func:`safe_load` uses an unpickler whose
``find_class`` admits only plain containers, numbers and NumPy's array reconstructors; anything
else raises :class:`~memrec.data.interactions.DataError` before it is called.
"""

from __future__ import annotations

import builtins
import io
import pickle
from typing import BinaryIO

import numpy as np

from ..errors import DataError

try:  # NumPy >= 2 keeps the reconstructors in numpy._core; numpy.core is a deprecated alias.
    from numpy._core import multiarray as _multiarray
    from numpy._core.numeric import _frombuffer
except ImportError:  # pragma: no cover - NumPy 1.x
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]
    from numpy.core.numeric import _frombuffer  # type: ignore[no-redef]


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """Stand-in for ``_codecs.encode`` as NumPy uses it in protocol-2 pickles of array bytes.

    Python-3 pickles of NumPy arrays carry raw buffers as ``_codecs.encode(str, "latin1")``; the
    real function would accept any codec, so only the latin-1 spelling is let through.
    """
    if encoding.lower().replace("-", "").replace("_", "") not in ("latin1", "iso88591"):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r}")
    if not isinstance(text, str):
        raise pickle.UnpicklingError("_codecs.encode of a non-string")
    return text.encode("latin1")


_BUILTINS = ("dict", "list", "tuple", "set", "frozenset", "int", "float", "complex", "str",
             "bytes", "bytearray", "bool")

#: (module, name) -> the object ``find_class`` returns. Nothing outside this table is importable.
ALLOWED: dict[tuple[str, str], object] = {
    **{("builtins", name): getattr(builtins, name) for name in _BUILTINS},
    **{(module, "_reconstruct"): _multiarray._reconstruct
       for module in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(module, "scalar"): _multiarray.scalar
       for module in ("numpy.core.multiarray", "numpy._core.multiarray")},
    # protocol-5 pickles rebuild contiguous arrays from their buffer with this one
    **{(module, "_frombuffer"): _frombuffer
       for module in ("numpy.core.numeric", "numpy._core.numeric")},
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}

# Python-2 pickles name the builtins module differently.
_MODULE_ALIASES = {"__builtin__": "builtins"}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals in :data:`ALLOWED`."""

    def __init__(self, file: BinaryIO, *, source: str):
        super().__init__(file, encoding="latin1")
        self.source = source

    def find_class(self, module: str, name: str):
        found = ALLOWED.get((_MODULE_ALIASES.get(module, module), name))
        if found is None:
            raise DataError(f"{self.source}: refusing to unpickle {module}.{name} "
                            "(data files may only hold plain containers and numbers)")
        return found

    def persistent_load(self, pid):
        raise DataError(f"{self.source}: refusing to unpickle a persistent reference "
                        "(data files may only hold plain containers and numbers)")


def safe_load(data: bytes | bytearray | memoryview | BinaryIO, *, source: str):
    """Unpickle ``data`` (bytes or a binary file object) allowing only plain data.

    ``source`` names the file in error messages. A refused global, a truncated or corrupt stream
    all raise :class:`DataError` with a one-line message.
    """
    fileobj = io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
    try:
        return RestrictedUnpickler(fileobj, source=source).load()
    except DataError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, OverflowError, MemoryError) as err:
        raise DataError(f"{source}: not a valid data pickle ({type(err).__name__}: {err})") from None
