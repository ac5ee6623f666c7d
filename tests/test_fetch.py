"""``memrec.data.fetch`` against a local HTTP server (no internet needed).

The server runs in a thread, serves byte strings built by the tests, honours (or, on request,
ignores) ``Range`` headers, can cut a response short to simulate a dropped connection, and logs
every request so tests can assert what was (or was not) asked for.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import shutil
import socket
import sys
import tarfile
import threading
import zipfile
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from memrec.data import fetch as fetch_mod
from memrec.data.fetch import SOURCES, ManualDownloadRequired, Source, fetch
from memrec.errors import DataError


# ---------------------------------------------------------------------------------------------
# a tiny HTTP server with Range support

class FileServer:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.log: list[tuple[str, str | None]] = []   # (path, Range header)
        self.honour_range = True
        self.cut_after: int | None = None   # send only this many body bytes, then hang up
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                rng = self.headers.get("Range")
                server.log.append((self.path, rng))
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                status, body, extra = 200, data, {}
                if rng and server.honour_range:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    status, body = 206, data[start:]
                    extra["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
                self.send_response(status)
                for key, value in extra.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_after is not None:
                    body = body[:server.cut_after]
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.01,),
                                       daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = FileServer()
    yield s
    s.close()


# ---------------------------------------------------------------------------------------------
# fixture archives, built in memory

PAYLOAD = random.Random(0).randbytes(60_000)   # incompressible, so the zip is ~60 KB
README = b"toy dataset for memrec fetch tests\n"


def make_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def make_tar_gz(members: dict[str, bytes], symlink: tuple[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        if symlink is not None:
            info = tarfile.TarInfo(symlink[0])
            info.type, info.linkname = tarfile.SYMTYPE, symlink[1]
            tf.addfile(info)
    return buf.getvalue()


TOY_ZIP = make_zip({"toy/ratings.bin": PAYLOAD, "toy/README": README})


def toy_source(server: FileServer, data: bytes = TOY_ZIP, *, path: str = "/toy.zip",
               archive: str = "zip", **kw) -> Source:
    server.files[path] = data
    fields = dict(name="toy", url=server.url(path), filename=Path(path).name, archive=archive,
                  description="toy", licence="test only",
                  sha256=hashlib.sha256(data).hexdigest(), md5=hashlib.md5(data).hexdigest())
    fields.update(kw)
    return Source(**fields)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# download, verify, extract

def test_full_download_verifies_and_extracts(server, tmp_path):
    src = toy_source(server)
    folder = fetch(src, tmp_path / "data", progress=False)

    assert folder == tmp_path / "data" / "toy"
    # the archive's single top folder is hoisted: data/toy/ratings.bin, not data/toy/toy/...
    assert (folder / "ratings.bin").read_bytes() == PAYLOAD
    assert (folder / "README").read_bytes() == README
    assert (tmp_path / "data" / "toy.zip").read_bytes() == TOY_ZIP
    assert not (tmp_path / "data" / "toy.zip.part").exists()
    assert server.log == [("/toy.zip", None)]
    marker = json.loads((folder / ".memrec-fetch.json").read_text())
    assert marker["sha256"] == src.sha256 and marker["md5"] == src.md5
    # no staging folders left behind
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["toy", "toy.zip"]


def test_archive_without_top_folder_extracts_in_place(server, tmp_path):
    src = toy_source(server, make_zip({"a.txt": b"a", "b/c.txt": b"c"}))
    folder = fetch(src, tmp_path, progress=False)
    assert (folder / "a.txt").read_bytes() == b"a"
    assert (folder / "b" / "c.txt").read_bytes() == b"c"


def test_tar_gz_is_extracted(server, tmp_path):
    data = make_tar_gz({"toy/ratings.bin": PAYLOAD})
    src = toy_source(server, data, path="/toy.tar.gz", archive="tar.gz")
    assert (fetch(src, tmp_path, progress=False) / "ratings.bin").read_bytes() == PAYLOAD


def test_plain_file_is_placed_in_the_folder(server, tmp_path):
    src = toy_source(server, b"u1,i1,5,100\n", path="/ratings.csv", archive="none")
    folder = fetch(src, tmp_path, progress=False)
    assert (folder / "ratings.csv").read_bytes() == b"u1,i1,5,100\n"
    assert fetch(src, tmp_path, progress=False) == folder
    assert len(server.log) == 1


def test_progress_bar_does_not_break_download(server, tmp_path):
    src = toy_source(server)
    assert (fetch(src, tmp_path, progress=True) / "ratings.bin").read_bytes() == PAYLOAD


# ---------------------------------------------------------------------------------------------
# resume

def test_resume_sends_range_and_appends(server, tmp_path):
    src = toy_source(server)
    half = len(TOY_ZIP) // 2
    (tmp_path / "toy.zip.part").write_bytes(TOY_ZIP[:half])

    folder = fetch(src, tmp_path, progress=False)

    assert server.log == [("/toy.zip", f"bytes={half}-")]
    assert (tmp_path / "toy.zip").read_bytes() == TOY_ZIP
    assert (folder / "ratings.bin").read_bytes() == PAYLOAD


def test_interrupted_download_keeps_part_and_resumes(server, tmp_path, monkeypatch):
    monkeypatch.setattr(fetch_mod, "NET_CHUNK", 1000)   # so the 20 chunks before the cut land
    src = toy_source(server)
    server.cut_after = 20_000
    with pytest.raises(DataError, match="Connection broken.*run again to resume"):
        fetch(src, tmp_path, progress=False)
    part = tmp_path / "toy.zip.part"
    assert part.stat().st_size == 20_000
    assert not (tmp_path / "toy.zip").exists() and not (tmp_path / "toy").exists()

    server.cut_after = None
    folder = fetch(src, tmp_path, progress=False)
    assert server.log[-1] == ("/toy.zip", "bytes=20000-")
    assert (tmp_path / "toy.zip").read_bytes() == TOY_ZIP
    assert (folder / "ratings.bin").read_bytes() == PAYLOAD


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    src = toy_source(server)
    server.honour_range = False
    # garbage in the .part proves the 200 answer overwrote rather than appended
    (tmp_path / "toy.zip.part").write_bytes(b"x" * (len(TOY_ZIP) // 2))

    folder = fetch(src, tmp_path, progress=False)

    assert server.log[0] == ("/toy.zip", f"bytes={len(TOY_ZIP) // 2}-")
    assert (tmp_path / "toy.zip").read_bytes() == TOY_ZIP
    assert (folder / "ratings.bin").read_bytes() == PAYLOAD


def test_complete_part_answered_416_is_used(server, tmp_path):
    src = toy_source(server)
    (tmp_path / "toy.zip.part").write_bytes(TOY_ZIP)
    folder = fetch(src, tmp_path, progress=False)
    assert server.log == [("/toy.zip", f"bytes={len(TOY_ZIP)}-")]
    assert (folder / "ratings.bin").read_bytes() == PAYLOAD


# ---------------------------------------------------------------------------------------------
# checksum, idempotence

@pytest.mark.parametrize("algo", ["sha256", "md5"])
def test_checksum_mismatch_deletes_and_raises(server, tmp_path, algo):
    wrong = "0" * (64 if algo == "sha256" else 32)
    src = toy_source(server, **{algo: wrong})
    actual = getattr(hashlib, algo)(TOY_ZIP).hexdigest()
    with pytest.raises(DataError, match=f"expected {algo} {wrong}.*got {actual}"):
        fetch(src, tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []   # no final file, no .part, no folder


def test_second_call_makes_no_request(server, tmp_path):
    src = toy_source(server)
    folder = fetch(src, tmp_path, progress=False)
    n = len(server.log)
    assert fetch(src, tmp_path, progress=False) == folder
    assert len(server.log) == n
    # not even when the server is gone
    dead = replace(src, url=f"http://127.0.0.1:{free_port()}/toy.zip")
    assert fetch(dead, tmp_path, progress=False) == folder


def test_kept_archive_is_reextracted_without_network(server, tmp_path):
    src = toy_source(server)
    folder = fetch(src, tmp_path, progress=False)
    shutil.rmtree(folder)
    assert (fetch(src, tmp_path, progress=False) / "ratings.bin").read_bytes() == PAYLOAD
    assert len(server.log) == 1


def test_unpinned_source_records_sha256_and_checks_it(server, tmp_path):
    src = toy_source(server, sha256=None, md5=None)
    folder = fetch(src, tmp_path, progress=False)
    sha = hashlib.sha256(TOY_ZIP).hexdigest()
    assert (tmp_path / "toy.zip.sha256").read_text().split()[0] == sha
    assert json.loads((folder / ".memrec-fetch.json").read_text())["sha256"] == sha

    # the upstream file changes: a fresh download no longer matches the recorded sha256
    shutil.rmtree(folder)
    (tmp_path / "toy.zip").unlink()
    server.files["/toy.zip"] = make_zip({"other.txt": b"changed"})
    with pytest.raises(DataError, match="checksum mismatch.*toy.zip.sha256"):
        fetch(src, tmp_path, progress=False)
    assert not (tmp_path / "toy.zip").exists()


def test_foreign_folder_is_not_overwritten(server, tmp_path):
    src = toy_source(server)
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "mine.txt").write_text("keep me")
    with pytest.raises(DataError, match="not a finished memrec download"):
        fetch(src, tmp_path, progress=False)
    assert (tmp_path / "toy" / "mine.txt").read_text() == "keep me"
    assert server.log == []


# ---------------------------------------------------------------------------------------------
# unsafe archives

@pytest.mark.parametrize("evil", ["../evil.txt", "toy/../../evil.txt", "/tmp/evil.txt",
                                  "..\\evil.txt"])
def test_zip_path_traversal_is_refused(server, tmp_path, evil):
    src = toy_source(server, make_zip({"toy/ok.txt": b"ok", evil: b"pwned"}))
    dest = tmp_path / "a" / "b"
    with pytest.raises(DataError, match="path traversal"):
        fetch(src, dest, progress=False)
    assert not (dest / "toy").exists()
    assert [p.name for p in dest.iterdir()] == ["toy.zip"]   # no staging folder left
    assert not list(tmp_path.rglob("evil.txt"))


def test_tar_path_traversal_and_links_are_refused(server, tmp_path):
    src = toy_source(server, make_tar_gz({"../evil.txt": b"pwned"}), path="/t.tar.gz",
                     archive="tar.gz")
    with pytest.raises(DataError, match="path traversal"):
        fetch(src, tmp_path / "d1", progress=False)

    src = toy_source(server, make_tar_gz({"ok.txt": b"ok"}, symlink=("link", "/etc/passwd")),
                     path="/l.tar.gz", archive="tar.gz")
    with pytest.raises(DataError, match="link or special file"):
        fetch(src, tmp_path / "d2", progress=False)
    assert not list(tmp_path.rglob("link"))


def test_7z_without_py7zr_says_to_install_it(server, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "py7zr", None)   # makes `import py7zr` fail
    src = toy_source(server, b"7z\xbc\xaf\x27\x1c not really", path="/y.7z", archive="7z")
    with pytest.raises(DataError, match="pip install py7zr"):
        fetch(src, tmp_path, progress=False)
    assert (tmp_path / "y.7z").exists()   # verified download kept for the next run


# ---------------------------------------------------------------------------------------------
# bad names, network failures, manual sources

def test_unknown_name_lists_known_names(tmp_path):
    with pytest.raises(DataError, match="unknown dataset 'nope'.*ml-100k.*yoochoose"):
        fetch("nope", tmp_path)


def test_connection_refused_names_url_and_reason(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/toy.zip"
    src = Source(name="toy", url=url, filename="toy.zip", archive="zip", description="toy",
                 licence="test only")
    with pytest.raises(DataError) as info:
        fetch(src, tmp_path, progress=False)
    message = str(info.value)
    assert url in message and "refused" in message.lower() and "\n" not in message


def test_http_error_names_status(server, tmp_path):
    src = replace(toy_source(server), url=server.url("/missing.zip"))
    with pytest.raises(DataError, match=r"missing\.zip: HTTP 404"):
        fetch(src, tmp_path, progress=False)
    assert not (tmp_path / "toy.zip").exists()


def test_url_override_is_used(server, tmp_path):
    src = toy_source(server)
    server.files["/mirror/toy.zip"] = TOY_ZIP
    fetch(replace(src, url="http://invalid.invalid/toy.zip"), tmp_path, progress=False,
          url=server.url("/mirror/toy.zip"))
    assert server.log == [("/mirror/toy.zip", None)]


def test_registered_name_via_monkeypatched_registry(server, tmp_path, monkeypatch):
    src = toy_source(server)
    monkeypatch.setitem(fetch_mod.SOURCES, "toy", src)
    assert (fetch("toy", tmp_path, progress=False) / "README").read_bytes() == README


def test_manual_source_gives_instructions_then_uses_placed_file(tmp_path):
    with pytest.raises(ManualDownloadRequired) as info:
        fetch("diginetica", tmp_path)
    message = str(info.value)
    assert "dataset-train-diginetica.zip" in message
    assert str(tmp_path / "dataset-train-diginetica.zip") in message
    assert isinstance(info.value, DataError) and "\n" not in message

    (tmp_path / "dataset-train-diginetica.zip").write_bytes(TOY_ZIP)   # the user put it there
    folder = fetch("diginetica", tmp_path)
    assert folder == tmp_path / "diginetica"
    assert (folder / "ratings.bin").read_bytes() == PAYLOAD


# ---------------------------------------------------------------------------------------------
# the registry itself

def test_registry_is_consistent():
    expected = {"ml-100k", "ml-1m", "ml-20m", "yoochoose", "diginetica", "lastfm",
                "amazon-video-games"}
    assert expected <= set(SOURCES)
    for key, src in SOURCES.items():
        assert key == src.name
        assert src.url.startswith(("https://", "http://"))
        assert src.description and src.licence
        if src.archive != "none":
            assert not src.url.endswith("/") and src.filename
    for key in ("ml-100k", "ml-1m", "ml-20m"):
        src = SOURCES[key]
        assert src.url == f"https://files.grouplens.org/datasets/movielens/{key}.zip"
        assert src.md5 is not None and "redistribution" in src.licence
    assert SOURCES["yoochoose"].archive == "7z"
    assert SOURCES["diginetica"].manual


def test_source_rejects_bad_fields():
    with pytest.raises(ValueError, match="archive"):
        Source(name="x", url="http://h/x", filename="x", archive="rar", description="",
               licence="")
    with pytest.raises(ValueError, match="filename"):
        Source(name="x", url="http://h/x", filename="../x", archive="zip", description="",
               licence="")
    with pytest.raises(ValueError, match="sha256"):
        Source(name="x", url="http://h/x", filename="x", archive="zip", description="",
               licence="", sha256="ABC")
