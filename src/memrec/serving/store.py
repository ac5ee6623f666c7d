"""State stores: where a served model keeps its event log and each user's memory state.

A store holds two things, both keyed by raw ids (so a new checkpoint can replay them):

* an **append-only event log** — every acknowledged event, in the order it was applied;
* the **current state per key** — a user's memory state as bytes
  (:meth:`memrec.memory.state.TensorState.to_bytes`), or the one state every user shares
  (:data:`SHARED_KEY`, NMRN's global memory), each tagged with the sha256 of the checkpoint that
  wrote it.

:meth:`StateStore.append` is the only write path: under one lock on the keys it reads their
records, asks the caller for the new states (the model's write, computed from the records it
read), and stores the events and the states together — all of them or none (a batch is refused
whole). Writes to one key are serialised, so no update is lost.

Stores: :class:`MemoryStore` (in-process, what :class:`memrec.recommender.Recommender` uses),
:class:`~memrec.serving.sqlite_store.SQLiteStore` (the embedded default, several processes on one
host), :class:`~memrec.serving.redis_store.RedisStore` (several hosts);
:func:`memrec.serving.backends.open_store` opens one from a URL.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator


#: the key of a state every user shares (a model whose memory is global)
SHARED_KEY = "*"


@dataclass(frozen=True)
class Event:
    """One interaction as it arrived: raw user and item ids, an optional unix timestamp and a
    type (``"click"`` unless the client says otherwise)."""

    user: str
    item: str
    timestamp: int | None = None
    type: str = "click"


@dataclass(frozen=True)
class Record:
    """What a store holds for a key: the state bytes (None: none stored yet) and, for a user,
    the items of its logged events in log order."""

    state: bytes | None = None
    items: tuple[str, ...] = ()


#: the model's write: the records of the keys as they are now → each key's new state bytes
Transition = Callable[[dict[str, Record]], dict[str, bytes | None]]


class StaleCheckpoint(RuntimeError):
    """The store's states were written by another checkpoint than the one asking."""


class StateStore(ABC):
    """An event log plus the current state per key; see the module docstring."""

    @abstractmethod
    def read(self, keys: Iterable[str]) -> dict[str, Record]:
        """The record of each key (an empty :class:`Record` for a key never written)."""

    @abstractmethod
    def append(self, events: list[Event], keys: list[str], transition: Transition,
               checkpoint: str) -> None:
        """Atomically: read ``keys``, compute ``transition(records)``, append ``events`` to the
        log and store the new states tagged ``checkpoint``. Raises :class:`StaleCheckpoint`
        (and stores nothing) when the store is tagged with another checkpoint."""

    @abstractmethod
    def forget(self, user: str) -> bool:
        """Delete the user's events and state; False when there were none."""

    @abstractmethod
    def log(self) -> Iterator[Event]:
        """Every logged event, in the order it was applied."""

    @abstractmethod
    def checkpoint(self) -> str | None:
        """The sha256 of the checkpoint whose states the store holds (None: a new store)."""

    @abstractmethod
    def replace_states(self, states: dict[str, bytes | None], checkpoint: str) -> None:
        """Drop every state, store ``states`` and tag the store with ``checkpoint`` (a rebuild
        for a new checkpoint), atomically; the event log is kept."""

    def close(self) -> None:
        """Release connections."""


class MemoryStore(StateStore):
    """A store in this process's memory (the Python façade, tests): nothing is durable."""

    def __init__(self):
        self._lock = threading.Lock()
        self._states: dict[str, bytes | None] = {}
        self._events: list[Event] = []
        self._checkpoint: str | None = None

    def read(self, keys):
        with self._lock:
            return {k: self._record(k) for k in keys}

    def _record(self, key: str) -> Record:
        return Record(self._states.get(key), tuple(e.item for e in self._events if e.user == key))

    def append(self, events, keys, transition, checkpoint):
        with self._lock:
            if self._checkpoint not in (None, checkpoint):
                raise StaleCheckpoint(f"store holds states of checkpoint {self._checkpoint[:12]}")
            new = transition({k: self._record(k) for k in keys})
            self._checkpoint = checkpoint
            self._events.extend(events)
            self._states.update(new)

    def forget(self, user):
        with self._lock:
            known = user in self._states or any(e.user == user for e in self._events)
            self._states.pop(user, None)
            self._events = [e for e in self._events if e.user != user]
            return known

    def log(self):
        with self._lock:
            return iter(list(self._events))

    def checkpoint(self):
        return self._checkpoint

    def replace_states(self, states, checkpoint):
        with self._lock:
            self._states, self._checkpoint = dict(states), checkpoint


def store_errors() -> tuple[type[BaseException], ...]:
    """The exceptions a failing store raises (a server answers them with 503)."""
    import sqlite3
    errors: tuple[type[BaseException], ...] = (sqlite3.Error, OSError)
    try:
        import redis
    except ImportError:        # redis is optional for a SQLite-only service
        return errors
    return errors + (redis.RedisError,)


__all__ = ["SHARED_KEY", "Event", "Record", "Transition", "StaleCheckpoint", "StateStore",
           "MemoryStore", "store_errors"]
