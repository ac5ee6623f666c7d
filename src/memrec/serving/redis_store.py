"""The shared state store: one Redis database, reached by the serving processes of several hosts.

Key layout (every key starts with the store's prefix, ``memrec:`` by default, so several stores
can share a database; ``{user}`` / ``{key}`` are the raw ids, unescaped):

=========================  ========  ==========================================================
``PREFIX log``             list      the event log: one JSON member per event, in applied order
``PREFIX events:{user}``   list      the same members for one user, in log order
``PREFIX state:{key}``     hash      ``checkpoint`` (always) and ``state`` (absent: a None state)
``PREFIX states``          set       the keys that have a ``state:`` hash (what a rebuild drops)
``PREFIX checkpoint``      string    the sha256 of the checkpoint whose states the store holds
``PREFIX seq``             counter   numbers the events, so that every log member is unique
=========================  ========  ==========================================================

A log member is ``{"seq", "user", "item", "timestamp", "type"}``; ``seq`` makes it unique, which
is what lets :meth:`RedisStore.forget` find a user's events in the log by exact value (they are
listed in ``events:{user}``) without parsing JSON on the server.

:meth:`RedisStore.append` uses optimistic locking: it WATCHes the store's checkpoint and, for
every key it reads, that key's state hash and events list; reads the records (one Lua script,
so no record is torn); computes the caller's transition; and writes everything in one
MULTI/EXEC. If another client changed a watched key in between, EXEC writes nothing and the
whole round is retried, up to :data:`MAX_TRIES` rounds (the transition is pure, so calling it
again is harmless; it always sees a consistent record, even in a round that will be retried).
Writes to one key are thus serialised across threads, processes and hosts, and no update is
lost. Needs Redis >= 6.2 (``LPOP key count``) and one Redis, not a cluster (the transactions
span keys of different hash slots).

Durability is the server's: run it with ``--appendonly yes --appendfsync always`` for an
acknowledged event to survive a crash.
"""

from __future__ import annotations

import json
import random
import time
from typing import Iterable, Iterator
from urllib.parse import urlsplit, urlunsplit

from ..errors import ConfigError
from .store import Event, Record, StaleCheckpoint, StateStore, Transition

try:
    import redis
except ImportError:                    # optional: only a redis:// store needs the client
    redis = None

#: rounds :meth:`RedisStore.append` tries before giving up on a key that is always contended
MAX_TRIES = 1000
#: the longest pause between two rounds, in seconds (the pause grows, randomised, up to it)
MAX_BACKOFF = 0.01
#: seconds to wait for the TCP connection when the server does not answer
CONNECT_TIMEOUT = 5.0

#: Atomically delete one user: its state, its events list and its members in the log. The log
#: is rotated once (LPOP a batch from the head, RPUSH back what stays), which keeps its order,
#: costs one pass and holds one batch in memory. KEYS: log, events list, state hash, state
#: index; ARGV: the user. Returns 1 when anything was deleted.
FORGET_SCRIPT = """
local mine = redis.call('LRANGE', KEYS[2], 0, -1)
local known = #mine > 0 or redis.call('EXISTS', KEYS[3]) == 1
if #mine > 0 then
  local drop = {}
  for _, member in ipairs(mine) do drop[member] = true end
  local left = redis.call('LLEN', KEYS[1])
  while left > 0 do
    local batch = redis.call('LPOP', KEYS[1], math.min(left, 1000))
    left = left - #batch
    local keep = {}
    for _, member in ipairs(batch) do
      if not drop[member] then keep[#keep + 1] = member end
    end
    if #keep > 0 then redis.call('RPUSH', KEYS[1], unpack(keep)) end
  end
end
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('SREM', KEYS[4], ARGV[1])
if known then return 1 end
return 0
"""


#: The store's checkpoint, then each key's state and events list, in one atomic read.
#: KEYS: the checkpoint, then per key its state hash and its events list.
SNAPSHOT_SCRIPT = """
local out = {redis.call('GET', KEYS[1])}
for i = 2, #KEYS, 2 do
  out[#out + 1] = redis.call('HGET', KEYS[i], 'state')
  out[#out + 1] = redis.call('LRANGE', KEYS[i + 1], 0, -1)
end
return out
"""


def redact(url: str) -> str:
    """``url`` with its password masked, to name the server in an error without leaking it."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def connect(url: str) -> "redis.Redis":
    """A client for ``url`` that has answered a PING, or a :class:`ConfigError` naming the URL:
    a store that cannot be reached should fail at startup, not at the first event."""
    if redis is None:
        raise ConfigError(f"--store {redact(url)}: the Redis client is not installed "
                          "(pip install redis)")
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT)
    except ValueError as err:
        raise ConfigError(f"--store {redact(url)}: not a Redis URL ({err})") from None
    try:
        client.ping()
    except redis.RedisError as err:
        client.close()
        raise ConfigError(f"cannot reach Redis at {redact(url)}: {err}") from None
    return client


def encode_event(event: Event, seq: int) -> str:
    """The log member of ``event``: JSON, made unique by its sequence number."""
    return json.dumps({"seq": seq, "user": event.user, "item": event.item,
                       "timestamp": event.timestamp, "type": event.type}, separators=(",", ":"))


def decode_event(member: bytes) -> Event:
    """The :class:`Event` a log member encodes (its ``seq`` is the store's business)."""
    data = json.loads(member)
    return Event(data["user"], data["item"], data["timestamp"], data["type"])


def backoff(attempt: int) -> None:
    """Sleep a random, growing while, so that clients contending for one key spread out
    instead of colliding again in lockstep."""
    time.sleep(random.uniform(0, min(MAX_BACKOFF, 0.0001 * 2 ** min(attempt, 10))))


class RedisStore(StateStore):
    """Event log and states in the Redis database at ``url``, under keys starting ``prefix``."""

    def __init__(self, url: str, prefix: str = "memrec:"):
        self.url = url
        self.prefix = prefix
        self._redis = connect(url)
        self._forget = self._redis.register_script(FORGET_SCRIPT)

    # -- key names ----------------------------------------------------------------------------

    def _key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def _state_key(self, key: str) -> str:
        return self._key("state", key)

    def _events_key(self, user: str) -> str:
        return self._key("events", user)

    # -- reads --------------------------------------------------------------------------------

    def read(self, keys: Iterable[str]) -> dict[str, Record]:
        _, records = self._snapshot(self._redis, list(dict.fromkeys(keys)))
        return records

    def _snapshot(self, client: "redis.Redis | redis.client.Pipeline",
                  keys: list[str]) -> tuple[str | None, dict[str, Record]]:
        """The store's checkpoint and the records of ``keys``, read by one script: atomic, so
        no record is torn (a state from before another client's append beside the items from
        after it), which a transition must never see, even in a round that will be retried."""
        names = [self._key("checkpoint")]
        for key in keys:
            names += [self._state_key(key), self._events_key(key)]
        # EVAL, not a registered script's EVALSHA: a watching pipeline runs commands at once and
        # would not reload a script the server has lost (NOSCRIPT after a restart)
        reply = client.execute_command("EVAL", SNAPSHOT_SCRIPT, len(names), *names)
        records = {key: self._record(reply[1 + 2 * i], reply[2 + 2 * i])
                   for i, key in enumerate(keys)}
        return (None if reply[0] is None else reply[0].decode()), records

    @staticmethod
    def _record(state: bytes | None, members: list[bytes]) -> Record:
        return Record(state, tuple(decode_event(m).item for m in members))

    def log(self) -> Iterator[Event]:
        members = self._redis.lrange(self._key("log"), 0, -1)   # one command: a snapshot
        return (decode_event(m) for m in members)

    def checkpoint(self) -> str | None:
        value = self._redis.get(self._key("checkpoint"))
        return None if value is None else value.decode()

    # -- writes -------------------------------------------------------------------------------

    def append(self, events: list[Event], keys: list[str], transition: Transition,
               checkpoint: str) -> None:
        members: list[str] | None = None       # numbered once, on the first full round
        for attempt in range(MAX_TRIES):
            with self._redis.pipeline(transaction=True) as pipe:
                try:
                    new = self._watch_and_compute(pipe, keys, transition, checkpoint)
                    if members is None:
                        members = self._number(events)
                    pipe.multi()
                    self._queue_append(pipe, events, members, new, checkpoint)
                    pipe.execute()
                    return
                except redis.WatchError:
                    pass
            backoff(attempt)
        raise TimeoutError(f"Redis at {redact(self.url)}: keys {keys[:3]} changed under every "
                           f"one of {MAX_TRIES} tries to append")

    def _watch_and_compute(self, pipe: "redis.client.Pipeline", keys: list[str],
                           transition: Transition, checkpoint: str) -> dict[str, bytes | None]:
        """WATCH what the write depends on, read it (on the watching connection) and return
        the transition's new states; raises :class:`StaleCheckpoint`."""
        keys = list(dict.fromkeys(keys))
        watched = [self._key("checkpoint")]
        for key in keys:
            watched += [self._state_key(key), self._events_key(key)]
        pipe.watch(*watched)
        stored, records = self._snapshot(pipe, keys)
        if stored not in (None, checkpoint):
            raise StaleCheckpoint(f"Redis at {redact(self.url)} holds states of checkpoint "
                                  f"{stored[:12]}")
        return transition(records)

    def _number(self, events: list[Event]) -> list[str]:
        """The log members of ``events``, numbered from the store's counter (a failed round
        reuses them: a round that does not commit writes nothing, so they stay unique)."""
        if not events:
            return []
        last = self._redis.incrby(self._key("seq"), len(events))
        return [encode_event(e, last - len(events) + 1 + i) for i, e in enumerate(events)]

    def _queue_append(self, pipe: "redis.client.Pipeline", events: list[Event],
                      members: list[str], new: dict[str, bytes | None], checkpoint: str) -> None:
        """Queue one append's writes inside MULTI: log, per-user lists, states, checkpoint."""
        if members:
            pipe.rpush(self._key("log"), *members)
        by_user: dict[str, list[str]] = {}
        for event, member in zip(events, members):
            by_user.setdefault(event.user, []).append(member)
        for user, mine in by_user.items():
            pipe.rpush(self._events_key(user), *mine)
        self._queue_states(pipe, new, checkpoint)
        pipe.set(self._key("checkpoint"), checkpoint, nx=True)

    def _queue_states(self, pipe: "redis.client.Pipeline", states: dict[str, bytes | None],
                      checkpoint: str) -> None:
        """Queue writing each state, tagged ``checkpoint``, replacing what the key held."""
        for key, state in states.items():
            fields: dict[str, str | bytes] = {"checkpoint": checkpoint}
            if state is not None:
                fields["state"] = state
            pipe.delete(self._state_key(key))
            pipe.hset(self._state_key(key), mapping=fields)
        if states:
            pipe.sadd(self._key("states"), *states)

    def forget(self, user: str) -> bool:
        keys = [self._key("log"), self._events_key(user), self._state_key(user),
                self._key("states")]
        return bool(self._forget(keys=keys, args=[user]))

    def replace_states(self, states: dict[str, bytes | None], checkpoint: str) -> None:
        for attempt in range(MAX_TRIES):
            with self._redis.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(self._key("states"))   # a state another client adds meanwhile
                    old = pipe.smembers(self._key("states"))
                    pipe.multi()
                    pipe.delete(self._key("states"), *(self._state_key(k.decode()) for k in old))
                    self._queue_states(pipe, states, checkpoint)
                    pipe.set(self._key("checkpoint"), checkpoint)
                    pipe.execute()
                    return
                except redis.WatchError:
                    pass
            backoff(attempt)
        raise TimeoutError(f"Redis at {redact(self.url)}: states changed under every one of "
                           f"{MAX_TRIES} tries to replace them")

    def close(self) -> None:
        self._redis.close()            # a client made by from_url owns its pool: closes it too


__all__ = ["RedisStore", "connect", "redact", "encode_event", "decode_event", "MAX_TRIES"]
