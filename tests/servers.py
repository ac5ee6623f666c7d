"""Real servers for tests: a throw-away ``redis-server`` on a free loopback port.

The server is the Debian package's binary (``.ci/run`` installs it); where it is absent the
calling test is skipped with that reason rather than failing. It runs with the durability
settings serving needs (append-only file, fsync on every write) in a temp directory, and is
killed by :func:`stop_redis` (or on leaving :func:`redis_server`).

    with redis_server(tmp_path) as url:          # a test, or a module-scoped fixture
        store = RedisStore(url)

The PING is sent over a raw socket, so this helper needs no Redis client.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

#: seconds a new server has to answer PING
STARTUP_TIMEOUT = 10.0
#: why the Redis tests skip on a machine without the server
NO_REDIS = "redis-server not installed (Debian package redis-server; .ci/run installs it)"


def redis_server_binary() -> str | None:
    """The ``redis-server`` executable, None where it is not installed."""
    return shutil.which("redis-server") or next(
        (p for p in ("/usr/bin/redis-server", "/usr/local/bin/redis-server") if Path(p).exists()),
        None)


def free_port() -> int:
    """A loopback TCP port nobody listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers_ping(port: int) -> bool:
    """Whether a Redis server on ``port`` answers PING now (RESP over a raw socket)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(tmp_path: Path) -> tuple[str, subprocess.Popen]:
    """Start ``redis-server`` with its files in ``tmp_path``; returns its URL (database 0) and
    process once it answers PING. Skips the calling test where the binary is absent. Another
    process may take the chosen port before the server binds it, so a start is tried again on a
    new port (three times) when the server exits early."""
    binary = redis_server_binary()
    if binary is None:
        pytest.skip(NO_REDIS)
    tmp_path.mkdir(parents=True, exist_ok=True)
    for _ in range(3):
        port = free_port()
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(tmp_path),
             "--logfile", str(tmp_path / f"redis-{port}.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if wait_for_ping(process, port):
            return f"redis://127.0.0.1:{port}/0", process
        stop_redis(process)
    raise RuntimeError(f"redis-server did not answer PING within {STARTUP_TIMEOUT} s; "
                       f"see the logs in {tmp_path}")


def wait_for_ping(process: subprocess.Popen, port: int) -> bool:
    """Poll until the server answers; False when it exits or the startup time runs out."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        if answers_ping(port):
            return True
        time.sleep(0.02)
    return False


def stop_redis(process: subprocess.Popen) -> None:
    """Kill the server and reap it (SIGKILL: the tests need no clean shutdown)."""
    if process.poll() is None:
        process.kill()
    process.wait(timeout=10)


@contextmanager
def redis_server(tmp_path: Path) -> Iterator[str]:
    """A running server's URL for the ``with`` block; the server is killed on leaving it."""
    url, process = start_redis(tmp_path)
    try:
        yield url
    finally:
        stop_redis(process)


__all__ = ["NO_REDIS", "STARTUP_TIMEOUT", "redis_server_binary", "free_port", "answers_ping",
           "start_redis", "wait_for_ping", "stop_redis", "redis_server"]
