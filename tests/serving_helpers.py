"""Run ``memrec serve`` as a subprocess for the tests that need a live HTTP service."""

from __future__ import annotations

import atexit
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import memrec

STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 5.0
#: output files of servers not stopped through stop_server (a test that kill -9s one), removed at exit
_LOGS: set[str] = set()


@atexit.register
def _remove_logs() -> None:
    for path in list(_LOGS):
        with contextlib.suppress(OSError):
            os.unlink(path)


def free_port() -> int:
    """A TCP port nothing listens on now (the OS's pick; another process could take it first)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run_dir, *, store_url: str | None = None, env: dict | None = None,
                 extra_args=None) -> tuple[str, subprocess.Popen]:
    """Start ``python -m memrec serve RUN_DIR [--store URL] [EXTRA_ARGS]`` on a free local port, with
    ``env`` over this process's environment, and wait (at most 60 s)
    until ``GET /healthz`` answers 200. Returns the base url (no trailing slash) and the
    process; its stdout and stderr go to the file ``process.log_path``. Raises RuntimeError
    with the server's output when it exits or never gets healthy (then it is stopped)."""
    port = free_port()
    cmd = [sys.executable, "-m", "memrec", "serve", str(run_dir),
           "--host", "127.0.0.1", "--port", str(port)]
    if store_url is not None:
        cmd += ["--store", store_url]
    cmd += [str(a) for a in extra_args or ()]
    child_env = {**os.environ, **(env or {})}
    # the same memrec the tests imported, installed or not
    src = str(Path(memrec.__file__).resolve().parents[1])
    child_env["PYTHONPATH"] = os.pathsep.join(p for p in (src, child_env.get("PYTHONPATH")) if p)
    fd, log_path = tempfile.mkstemp(prefix="memrec-serve-", suffix=".log")
    with os.fdopen(fd, "wb") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=child_env)
    process.log_path = log_path
    _LOGS.add(log_path)
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        if process.poll() is not None:
            output = server_output(process)
            os.unlink(log_path)
            raise RuntimeError(f"`{' '.join(cmd)}` exited with {process.returncode} before it "
                               f"was healthy:\n{output}")
        try:
            with urllib.request.urlopen(base_url + "/healthz", timeout=2) as resp:
                if resp.status == 200:
                    return base_url, process
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        if time.monotonic() > deadline:
            _halt(process)
            output = server_output(process)
            os.unlink(log_path)
            raise RuntimeError(f"`{' '.join(cmd)}` not healthy after {STARTUP_TIMEOUT_S:.0f} s:\n{output}")
        time.sleep(0.2)


def server_output(process: subprocess.Popen, limit: int = 20_000) -> str:
    """The last ``limit`` characters the server wrote (stdout and stderr)."""
    try:
        return Path(process.log_path).read_text(errors="replace")[-limit:]
    except OSError:
        return ""


def stop_server(process: subprocess.Popen) -> None:
    """Stop a server from :func:`start_server` (SIGTERM, then SIGKILL after 5 s; nothing if it
    has exited already) and delete its output file."""
    _halt(process)
    with contextlib.suppress(OSError):
        os.unlink(process.log_path)


def _halt(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_S)


@contextlib.contextmanager
def serving(run_dir, **kw):
    """``with serving(run_dir) as base_url: ...``: the server for the block, stopped after it."""
    base_url, process = start_server(run_dir, **kw)
    try:
        yield base_url
    finally:
        stop_server(process)
