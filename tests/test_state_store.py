"""The state store contract (``memrec.serving.store``), run on every store alike.

:class:`MemoryStore` is the reference; :class:`SQLiteStore` and :class:`RedisStore` must give
the same records, log, checkpoints and refusals, and lose no update when threads (and, for the
stores shared between processes, separate processes) append to one key at once. The Redis runs
use a real ``redis-server`` (skipped where it is not installed) with one key prefix per test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from memrec.serving.store import SHARED_KEY, Event, MemoryStore, Record, StaleCheckpoint
from memrec.serving.sqlite_store import SQLiteStore

from .servers import redis_server

SRC = Path(__file__).resolve().parents[1] / "src"
CK, OTHER_CK = "a" * 64, "b" * 64


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    pytest.importorskip("redis", reason="the redis client is not installed (pip install redis)")
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


def new_redis_store(url: str):
    """A Redis store under a prefix of its own, so the tests sharing a server never meet."""
    from memrec.serving.redis_store import RedisStore
    return RedisStore(url, prefix=f"test-{uuid.uuid4().hex[:12]}:")


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store(request, tmp_path):
    if request.param == "memory":
        made = MemoryStore()
    elif request.param == "sqlite":
        made = SQLiteStore(tmp_path / "s.db")
    else:
        made = new_redis_store(request.getfixturevalue("redis_url"))
    yield made
    made.close()


def put(state: bytes):
    """A transition that stores ``state`` for every key it read."""
    return lambda records: {key: state for key in records}


def chain(user: str, item: str):
    """A transition that appends ``item`` to the user's state (``b"a,b,c"``), after checking
    that the state it reads is exactly the items logged for the user: a store that handed out
    a stale state or a torn record fails here."""
    def transition(records: dict[str, Record]) -> dict[str, bytes]:
        record = records[user]
        expected = ",".join(record.items).encode() if record.items else None
        if record.state != expected:
            raise AssertionError(f"torn record: state {record.state!r}, items {record.items}")
        new = item.encode()
        return {user: new if record.state is None else record.state + b"," + new}
    return transition


def assert_chain_consistent(store, user: str, count: int) -> None:
    """The user's state holds its logged items, in log order, and none was lost."""
    logged = [e.item for e in store.log() if e.user == user]
    assert len(logged) == count and len(set(logged)) == count
    assert store.read([user])[user] == Record(",".join(logged).encode(), tuple(logged))


# -- the contract ----------------------------------------------------------------------------

def test_a_new_store_is_empty(store):
    assert store.read(["u"]) == {"u": Record()}
    assert store.checkpoint() is None
    assert list(store.log()) == []


def test_append_stores_events_and_states(store):
    events = [Event("u1", "a", 1700000000), Event("u2", "c", None, "buy"), Event("u1", "b")]
    store.append(events, ["u1"], put(b"s1"), CK)
    assert list(store.log()) == events
    assert store.read(["u1", "u2", "u3"]) == {"u1": Record(b"s1", ("a", "b")),
                                              "u2": Record(None, ("c",)), "u3": Record()}
    assert store.checkpoint() == CK


def test_transition_reads_the_records_before_the_batch(store):
    store.append([Event("u", "a")], ["u"], put(b"one"), CK)
    seen = []
    store.append([Event("u", "b")], ["u", SHARED_KEY],
                 lambda records: seen.append(dict(records)) or {"u": b"two", SHARED_KEY: b"g"}, CK)
    assert seen == [{"u": Record(b"one", ("a",)), SHARED_KEY: Record()}]
    assert store.read(["u", SHARED_KEY]) == {"u": Record(b"two", ("a", "b")),
                                             SHARED_KEY: Record(b"g")}


def test_a_none_state_is_stored_and_forgotten(store):
    store.append([], ["u"], put(None), CK)
    assert store.read(["u"])["u"] == Record()
    assert store.forget("u") is True
    assert store.forget("u") is False


def test_a_failing_transition_stores_nothing(store):
    store.append([Event("u", "a")], ["u"], put(b"kept"), CK)

    def fail(records):
        raise ValueError("model refused the batch")

    with pytest.raises(ValueError, match="refused"):
        store.append([Event("u", "b"), Event("v", "c")], ["u", "v"], fail, CK)
    assert list(store.log()) == [Event("u", "a")]
    assert store.read(["u", "v"]) == {"u": Record(b"kept", ("a",)), "v": Record()}


def test_a_failing_first_transition_leaves_the_store_new(store):
    with pytest.raises(ZeroDivisionError):
        store.append([Event("u", "a")], ["u"], lambda records: {"u": bytes(1 // 0)}, CK)
    assert store.checkpoint() is None and list(store.log()) == []


def test_another_checkpoint_is_refused_whole(store):
    store.append([Event("u", "a")], ["u"], put(b"s"), CK)
    with pytest.raises(StaleCheckpoint):
        store.append([Event("u", "b")], ["u"], put(b"new"), OTHER_CK)
    assert list(store.log()) == [Event("u", "a")]
    assert store.read(["u"])["u"] == Record(b"s", ("a",))
    assert store.checkpoint() == CK


def test_forget_deletes_the_users_events_and_state_only(store):
    events = [Event("u", "a", 1), Event("v", "b", 2), Event("u", "c", 3), Event("v", "d", 4)]
    store.append(events, ["u", "v"], put(b"s"), CK)
    assert store.forget("u") is True
    assert list(store.log()) == [events[1], events[3]]
    assert store.read(["u", "v"]) == {"u": Record(), "v": Record(b"s", ("b", "d"))}
    assert store.forget("u") is False
    assert store.forget("never-seen") is False
    store.append([Event("u", "e")], ["u"], put(b"again"), CK)       # a forgotten user may return
    assert store.read(["u"])["u"] == Record(b"again", ("e",))


def test_replace_states_drops_every_state_and_keeps_the_log(store):
    events = [Event("u", "a"), Event("v", "b")]
    store.append(events, ["u", "v", SHARED_KEY], put(b"old"), CK)
    store.replace_states({"u": b"new", "w": None}, OTHER_CK)
    assert store.checkpoint() == OTHER_CK
    assert list(store.log()) == events
    assert store.read(["u", "v", "w", SHARED_KEY]) == {
        "u": Record(b"new", ("a",)), "v": Record(None, ("b",)), "w": Record(), SHARED_KEY: Record()}
    with pytest.raises(StaleCheckpoint):
        store.append([Event("u", "c")], ["u"], put(b"stale"), CK)
    store.append([Event("u", "c")], ["u"], put(b"fresh"), OTHER_CK)
    assert store.read(["u"])["u"] == Record(b"fresh", ("a", "c"))


def test_ids_are_kept_verbatim(store):
    odd = ["u:1", "état", "*", "", "a b", "x\ny", "🙂"]
    store.append([Event(u, u + "-item") for u in odd], odd,
                 lambda records: {u: u.encode() for u in records}, CK)
    assert store.read(odd) == {u: Record(u.encode(), (u + "-item",)) for u in odd}
    assert store.forget("u:1") and store.read(["u:1"])["u:1"] == Record()
    assert [e.user for e in store.log()] == odd[1:]


# -- concurrency -----------------------------------------------------------------------------

def test_threads_appending_to_one_key_lose_no_update(store):
    threads, per_thread, errors = 16, 12, []

    def work(t: int) -> None:
        try:
            for i in range(per_thread):
                item = f"t{t}-{i}"
                store.append([Event("u", item)], ["u"], chain("u", item), CK)
        except BaseException as err:          # noqa: BLE001 - reported by the main thread
            errors.append(err)

    workers = [threading.Thread(target=work, args=(t,), daemon=True) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert not any(w.is_alive() for w in workers), "appends still running after 30 s"
    assert not errors, errors[:3]
    assert_chain_consistent(store, "u", threads * per_thread)


def test_a_failing_write_among_concurrent_ones_fails_alone(store):
    # a group commit (SQLite) puts concurrent appends in one transaction: the failing one must
    # be undone alone and raise in its own caller, the others commit
    outcomes: dict[int, str] = {}

    def work(t: int) -> None:
        item = f"t{t}"
        transition = chain("u", item)
        if t % 4 == 0:
            def transition(records, item=item):
                raise ValueError(f"refused {item}")
        try:
            store.append([Event("u", item)], ["u"], transition, CK)
            outcomes[t] = "ok"
        except ValueError as err:
            outcomes[t] = str(err)

    workers = [threading.Thread(target=work, args=(t,), daemon=True) for t in range(24)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert outcomes == {t: f"refused t{t}" if t % 4 == 0 else "ok" for t in range(24)}
    assert_chain_consistent(store, "u", 18)


#: one writer process: appends ``count`` chained items to user ``u`` of the store at ``url``
WRITER = """
import sys
root, url, prefix, tag, count, checkpoint = sys.argv[1:]
sys.path.insert(0, root)
from memrec.serving.backends import open_store
from memrec.serving.store import Event
from memrec.serving.redis_store import RedisStore
from tests.test_state_store import chain
store = RedisStore(url, prefix) if url.startswith("redis://") else open_store(url)
print("ready", flush=True)
sys.stdin.readline()                      # "go": both writers start appending together
for i in range(int(count)):
    item = f"{tag}-{i}"
    store.append([Event("u", item)], ["u"], chain("u", item), checkpoint)
store.close()
"""


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_processes_appending_to_one_key_lose_no_update(kind, tmp_path, request):
    if kind == "sqlite":
        store = SQLiteStore(tmp_path / "s.db")
        url, prefix = f"sqlite:///{store.path}", ""
    else:
        store = new_redis_store(request.getfixturevalue("redis_url"))
        url, prefix = store.url, store.prefix
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(SRC), os.environ.get("PYTHONPATH")) if p)}
    root, count = str(Path(__file__).resolve().parents[1]), 60
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, root, url, prefix, f"p{n}",
                                 str(count), CK], env=env, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for n in range(2)]
    try:
        for writer in writers:              # a writer that fails to start says why below
            writer.stdout.readline()
        for writer in writers:
            writer.stdin.write("go\n")
            writer.stdin.flush()
        for writer in writers:
            _, err = writer.communicate(timeout=30)
            assert writer.returncode == 0, err
    finally:
        for writer in writers:
            writer.kill()
            writer.wait()
    assert_chain_consistent(store, "u", 2 * count)
    store.close()
