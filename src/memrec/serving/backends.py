"""Opening a state store from the URL a user gives (``memrec serve --store``)."""

from __future__ import annotations

from ..errors import ConfigError
from .redis_store import RedisStore
from .sqlite_store import SQLiteStore
from .store import MemoryStore, StateStore


def open_store(url: str) -> StateStore:
    """A store from a URL: ``sqlite:///PATH`` (a file; ``sqlite:////abs/path``),
    ``redis://HOST:PORT/DB`` or ``memory://``."""
    if url.startswith("sqlite:///"):
        return SQLiteStore(url[len("sqlite:///"):])
    if url.startswith(("redis://", "rediss://")):
        return RedisStore(url)
    if url == "memory://":
        return MemoryStore()
    raise ConfigError(f"--store {url!r}: expected sqlite:///PATH, redis://HOST:PORT/DB or memory://")


__all__ = ["open_store"]
