"""The embedded state store: one SQLite file in WAL mode, shared by the processes of one host.

Tables: ``events`` (the append-only log; ``seq`` is its order), ``states`` (one row per key:
the state bytes and the checkpoint that wrote them) and ``meta`` (the store's checkpoint).

Appends are committed in ``BEGIN IMMEDIATE`` transactions: each takes SQLite's write lock before
reading the records, so concurrent writers (threads or ``--workers`` processes) are serialised
and none works from a state another is replacing. Within a process, appends that arrive while a
commit is under way are committed together by the next one (group commit), each in its own
savepoint, in arrival order; across processes, the committing writers queue on a file lock
beside the database (``PATH.lock``) rather than on SQLite's busy handler, which polls with sleeps. ``synchronous =
FULL``: a commit has reached the disk when ``append`` returns, so an acknowledged event survives
``kill -9`` (and a power cut). Each thread has its own connection.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from .store import Event, Record, StaleCheckpoint, StateStore, Transition

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta   (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, user TEXT NOT NULL,
                                   item TEXT NOT NULL, timestamp INTEGER, type TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_by_user ON events (user, seq);
CREATE TABLE IF NOT EXISTS states (key TEXT PRIMARY KEY, state BLOB, checkpoint TEXT NOT NULL);
"""

#: seconds a writer waits for another's lock before the request fails
BUSY_TIMEOUT = 30.0


class SQLiteStore(StateStore):
    """Event log and states in the SQLite file ``path`` (created if absent)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise FileNotFoundError(2, "no such directory", str(self.path.parent))
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._queue: list[_Write] = []          # appends waiting for the next group commit
        self._queue_lock = threading.Lock()
        self._leader = threading.Lock()
        # writers of other processes queue on this file lock in the kernel instead of polling
        # SQLite's lock with its sleeping busy handler (long tails with several --workers)
        self._lock_file = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        self._connection().executescript(SCHEMA)

    def _connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def read(self, keys):
        conn = self._connection()
        conn.execute("BEGIN")                     # one snapshot for every key
        try:
            return {k: self._record(conn, k) for k in keys}
        finally:
            conn.execute("COMMIT")

    @staticmethod
    def _record(conn: sqlite3.Connection, key: str) -> Record:
        row = conn.execute("SELECT state FROM states WHERE key = ?", (key,)).fetchone()
        items = conn.execute("SELECT item FROM events WHERE user = ? ORDER BY seq", (key,)).fetchall()
        return Record(None if row is None else row[0], tuple(i for (i,) in items))

    def append(self, events, keys, transition, checkpoint):
        write = _Write(events, keys, transition, checkpoint)
        with self._queue_lock:
            self._queue.append(write)
        with self._leader:                      # whoever holds it commits every queued write
            if not write.done:
                with self._queue_lock:
                    group, self._queue = self._queue, []
                self._commit(group)
        if write.error is not None:
            raise write.error

    def _commit(self, group: list["_Write"]) -> None:
        """One transaction (one fsync) for the writes that queued while the previous one was
        committing — group commit: under concurrency a commit acknowledges many requests. Each
        write is a savepoint, so one that fails (its transition raised, a stale checkpoint) is
        undone alone and gets its error; the others commit."""
        with self._across_processes():
            self._commit_locked(self._connection(), group)

    @contextlib.contextmanager
    def _across_processes(self):
        """This process's turn to write, among every process on the file."""
        fcntl.flock(self._lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)

    def _commit_locked(self, conn: sqlite3.Connection, group: list["_Write"]) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for write in group:
                conn.execute("SAVEPOINT one_write")
                try:
                    self._apply(conn, write)
                except Exception as e:         # the request's own failure, reported to it
                    conn.execute("ROLLBACK TO one_write")
                    write.error = e
                conn.execute("RELEASE one_write")
            conn.execute("COMMIT")
        except BaseException as e:
            conn.execute("ROLLBACK")
            for write in group:
                write.error = write.error or e
            if not isinstance(e, Exception):
                raise
        finally:
            for write in group:
                write.done = True

    def _apply(self, conn: sqlite3.Connection, write: "_Write") -> None:
        stored = self._meta_checkpoint(conn)
        if stored not in (None, write.checkpoint):
            raise StaleCheckpoint(f"{self.path} holds states of checkpoint {stored[:12]}")
        new = write.transition({k: self._record(conn, k) for k in write.keys})
        if stored is None:
            conn.execute("INSERT INTO meta VALUES ('checkpoint', ?)", (write.checkpoint,))
        conn.executemany("INSERT INTO events (user, item, timestamp, type) VALUES (?, ?, ?, ?)",
                         [(e.user, e.item, e.timestamp, e.type) for e in write.events])
        conn.executemany("INSERT OR REPLACE INTO states VALUES (?, ?, ?)",
                         [(k, v, write.checkpoint) for k, v in new.items()])

    def forget(self, user):
        with self._leader, self._across_processes():
            return self._forget(self._connection(), user)

    @staticmethod
    def _forget(conn: sqlite3.Connection, user: str) -> bool:
        conn.execute("BEGIN IMMEDIATE")
        try:
            n = conn.execute("DELETE FROM events WHERE user = ?", (user,)).rowcount
            n += conn.execute("DELETE FROM states WHERE key = ?", (user,)).rowcount
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return n > 0

    def log(self):
        cursor = self._connection().execute("SELECT user, item, timestamp, type FROM events ORDER BY seq")
        return (Event(*row) for row in cursor)

    def checkpoint(self):
        return self._meta_checkpoint(self._connection())

    @staticmethod
    def _meta_checkpoint(conn: sqlite3.Connection) -> str | None:
        row = conn.execute("SELECT value FROM meta WHERE key = 'checkpoint'").fetchone()
        return None if row is None else row[0]

    def replace_states(self, states, checkpoint):
        with self._leader, self._across_processes():
            self._replace_states(self._connection(), states, checkpoint)

    @staticmethod
    def _replace_states(conn: sqlite3.Connection, states, checkpoint) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("DELETE FROM states")
            conn.executemany("INSERT INTO states VALUES (?, ?, ?)",
                             [(k, s, checkpoint) for k, s in states.items()])
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('checkpoint', ?)", (checkpoint,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def close(self):
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
            if self._lock_file >= 0:
                os.close(self._lock_file)
                self._lock_file = -1
        self._local = threading.local()


@dataclass(eq=False)
class _Write:
    """One ``append`` waiting for (or done by) a group commit."""

    events: list[Event]
    keys: list[str]
    transition: Transition
    checkpoint: str
    done: bool = False
    error: Exception | None = None


__all__ = ["SQLiteStore"]
