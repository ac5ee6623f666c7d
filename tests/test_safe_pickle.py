"""The restricted unpickler: plain data loads, anything that could run code is refused."""

import io
import os
import pickle

import numpy as np
import pytest

from memrec.errors import DataError
from memrec.data.safe_pickle import safe_load


class _Exploit:
    """Unpickling this with plain ``pickle.loads`` would run a shell command."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_refuses_os_system_and_never_runs_it(tmp_path):
    target = tmp_path / "pwned"
    payload = pickle.dumps([1, _Exploit(target)])
    with pytest.raises(DataError, match=r"evil\.pkl: refusing to unpickle (posix|nt|os)\.system "
                                        r"\(data files may only hold plain containers"):
        safe_load(payload, source="evil.pkl")
    assert not target.exists()


@pytest.mark.parametrize("module,name", [("builtins", "eval"), ("__builtin__", "getattr"),
                                         ("subprocess", "Popen"), ("numpy", "load"),
                                         ("copyreg", "_reconstructor")])
def test_refuses_other_globals(module, name):
    payload = f"c{module}\n{name}\n.".encode()  # protocol 0 GLOBAL opcode, then STOP
    with pytest.raises(DataError, match=f"x: refusing to unpickle {module}.{name}"):
        safe_load(payload, source="x")


def test_refuses_codecs_encode_other_than_latin1():
    payload = b"c_codecs\nencode\n(Vabc\nVrot13\ntR."
    with pytest.raises(DataError, match="not a valid data pickle"):
        safe_load(payload, source="x")


@pytest.mark.parametrize("protocol", [0, 2, 3, 4, 5])
def test_plain_containers_round_trip(protocol):
    value = {"a": [1, 2.5, 3 + 4j], (1, "b"): {1, 2}, "f": frozenset({3}), "by": b"\x00\xff",
             "t": True, "n": None}
    assert safe_load(pickle.dumps(value, protocol=protocol), source="x") == value


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_numpy_arrays_and_scalars_load(protocol):
    value = {np.int64(7): (np.uint32(3), np.arange(6, dtype=np.float32).reshape(2, 3)),
             "obj": np.array([{"k": [1, 2]}, None], dtype=object),
             "fortran": np.asfortranarray(np.arange(6).reshape(2, 3))}
    loaded = safe_load(io.BytesIO(pickle.dumps(value, protocol=protocol)), source="x")
    assert list(loaded) == [7, "obj", "fortran"]
    assert loaded[7][0] == 3 and loaded[7][1].dtype == np.float32
    np.testing.assert_array_equal(loaded[7][1], [[0, 1, 2], [3, 4, 5]])
    assert loaded["obj"][0] == {"k": [1, 2]} and loaded["obj"][1] is None
    np.testing.assert_array_equal(loaded["fortran"], np.arange(6).reshape(2, 3))


def test_truncated_pickle_is_a_data_error():
    with pytest.raises(DataError, match="short.pkl: not a valid data pickle"):
        safe_load(pickle.dumps(list(range(100)))[:-5], source="short.pkl")
