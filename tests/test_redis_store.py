"""What only :class:`RedisStore` has: its URL checks, key prefixes, key layout, the optimistic
retry of :meth:`~RedisStore.append`, ``forget`` on a long log, and durability across a server
crash. The shared contract (the same records as the other stores, no lost update) is in
``test_state_store.py``. Needs a real ``redis-server``; skipped where it is not installed.
"""

from __future__ import annotations

import uuid

import pytest

from memrec.errors import ConfigError
from memrec.serving.backends import open_store
from memrec.serving.store import Event, Record

from .servers import free_port, redis_server, start_redis, stop_redis

redis = pytest.importorskip("redis", reason="the redis client is not installed (pip install redis)")
from memrec.serving import redis_store  # noqa: E402 - after the skip: it needs the client
from memrec.serving.redis_store import RedisStore  # noqa: E402

CK = "c" * 64


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    with redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def prefix():
    return f"t{uuid.uuid4().hex[:10]}:"


@pytest.fixture
def store(url, prefix):
    made = RedisStore(url, prefix)
    yield made
    made.close()


@pytest.fixture
def raw(url):
    """A plain client, to look at the keys a store wrote."""
    client = redis.Redis.from_url(url)
    yield client
    client.close()


def put(state):
    return lambda records: {key: state for key in records}


# -- connecting ------------------------------------------------------------------------------

def test_an_unreachable_server_is_a_config_error_naming_the_url():
    url = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(ConfigError, match=f"cannot reach Redis at {url}"):
        RedisStore(url)


def test_the_error_hides_the_password():
    with pytest.raises(ConfigError) as err:
        RedisStore(f"redis://admin:s3cret@127.0.0.1:{free_port()}/0")
    assert "admin:***@127.0.0.1" in str(err.value) and "s3cret" not in str(err.value)


def test_a_malformed_url_is_a_config_error():
    with pytest.raises(ConfigError, match="not a Redis URL"):
        RedisStore("redis://127.0.0.1:port/0")


def test_open_store_opens_redis_urls(url):
    store = open_store(url)
    try:
        assert isinstance(store, RedisStore) and store.prefix == "memrec:"
    finally:
        store.close()


# -- keys ------------------------------------------------------------------------------------

def test_key_layout(store, prefix, raw):
    """The layout the module docstring documents (other tools may read it)."""
    store.append([Event("u", "a", 5, "buy")], ["u", "v"],
                 lambda records: {"u": b"\x00s", "v": None}, CK)
    layout = ["log", "events:u", "state:u", "state:v", "states", "checkpoint", "seq"]
    assert sorted(k.decode() for k in raw.keys(prefix + "*")) == sorted(prefix + k for k in layout)
    member = raw.lrange(prefix + "log", 0, -1)
    assert member == raw.lrange(prefix + "events:u", 0, -1)
    assert redis_store.decode_event(member[0]) == Event("u", "a", 5, "buy")
    assert raw.hgetall(prefix + "state:u") == {b"state": b"\x00s", b"checkpoint": CK.encode()}
    assert raw.hgetall(prefix + "state:v") == {b"checkpoint": CK.encode()}
    assert raw.smembers(prefix + "states") == {b"u", b"v"}
    assert raw.get(prefix + "checkpoint") == CK.encode()


def test_stores_under_other_prefixes_do_not_meet(url, store):
    other = RedisStore(url, store.prefix + "other:")
    try:
        store.append([Event("u", "a")], ["u"], put(b"mine"), CK)
        other.append([Event("u", "b")], ["u"], put(b"theirs"), "d" * 64)
        other.replace_states({}, "e" * 64)
        assert other.forget("u")
        assert store.read(["u"])["u"] == Record(b"mine", ("a",))
        assert list(store.log()) == [Event("u", "a")] and store.checkpoint() == CK
        assert list(other.log()) == []
    finally:
        other.close()


def test_forget_leaves_nothing_of_the_user(store, prefix, raw):
    store.append([Event("u", "a"), Event("v", "b")], ["u", "v"], put(b"s"), CK)
    assert store.forget("u")
    assert not any(b'"user":"u"' in m for m in raw.lrange(prefix + "log", 0, -1))
    assert not raw.exists(prefix + "events:u", prefix + "state:u")
    assert raw.smembers(prefix + "states") == {b"v"}


def test_forget_on_a_log_longer_than_a_batch_keeps_its_order(store):
    events = [Event(f"u{i % 3}", str(i)) for i in range(2500)]
    store.append(events, [], put(None), CK)
    assert store.forget("u1")
    assert list(store.log()) == [e for e in events if e.user != "u1"]
    assert store.read(["u2"])["u2"].items == tuple(e.item for e in events if e.user == "u2")


# -- optimistic locking ----------------------------------------------------------------------

def test_a_round_another_client_overtook_is_computed_again(url, store):
    """The first call's read is overtaken by another writer: its write must not land; the
    transition runs again on the record that includes the other write."""
    rival = RedisStore(url, store.prefix)
    seen = []

    def transition(records):
        seen.append(records["u"])
        if len(seen) == 1:
            rival.append([Event("u", "rival")], ["u"], put(b"rival"), CK)
        return {"u": (records["u"].state or b"") + b"+mine"}

    try:
        store.append([Event("u", "mine")], ["u"], transition, CK)
    finally:
        rival.close()
    assert seen == [Record(), Record(b"rival", ("rival",))]
    assert store.read(["u"])["u"] == Record(b"rival+mine", ("rival", "mine"))


def test_appends_give_up_after_a_bounded_number_of_rounds(url, store, monkeypatch):
    monkeypatch.setattr(redis_store, "MAX_TRIES", 3)
    rival = RedisStore(url, store.prefix)
    calls = []

    def always_overtaken(records):
        calls.append(1)
        rival.append([Event("u", f"rival{len(calls)}")], ["u"], put(b"rival"), CK)
        return {"u": b"mine"}

    try:
        with pytest.raises(TimeoutError, match="3 tries"):
            store.append([Event("u", "mine")], ["u"], always_overtaken, CK)
    finally:
        rival.close()
    assert len(calls) == 3
    assert [e.item for e in store.log()] == ["rival1", "rival2", "rival3"]
    assert store.read(["u"])["u"].state == b"rival"


# -- durability ------------------------------------------------------------------------------

def test_acknowledged_events_survive_a_server_crash(tmp_path):
    url, server = start_redis(tmp_path)
    try:
        store = RedisStore(url, "crash:")
        store.append([Event("u", "a", 1)], ["u"], put(b"s"), CK)
        store.close()
    finally:
        server.kill()                       # SIGKILL: no shutdown save, the AOF alone
        server.wait(timeout=10)
    url, server = start_redis(tmp_path)     # same directory, so the same append-only file
    try:
        store = RedisStore(url, "crash:")
        assert store.read(["u"])["u"] == Record(b"s", ("a",))
        assert list(store.log()) == [Event("u", "a", 1)] and store.checkpoint() == CK
        store.close()
    finally:
        stop_redis(server)
