"""Download public datasets: ``memrec data fetch NAME --dest DIR``.

:data:`SOURCES` is an explicit registry of the public datasets the models were published on, with
their official download addresses. :func:`fetch` downloads one of them into ``DIR``:

* streams with ``requests`` in chunks into ``DIR/<filename>.part``; an interrupted download keeps
  the ``.part`` and the next call resumes it with ``Range: bytes=N-`` (appending on ``206``,
  restarting cleanly when the server ignores the range and answers ``200``);
* verifies the checksum (sha256 and/or md5) of the complete ``.part``; a mismatch deletes it and
  raises :class:`DataError`. Only a verified file is renamed to ``DIR/<filename>``, so the final
  name never holds a half or corrupt file;
* extracts zip / tar.gz / 7z archives into a staging folder, refusing members with absolute paths
  or ``..`` (and, in tars, links and special files), then renames the staging folder to
  ``DIR/<name>/``. When an archive holds a single top folder (``ml-100k/...``) its contents become
  ``DIR/<name>/`` directly, so ``DIR/ml-100k/u.data`` rather than ``DIR/ml-100k/ml-100k/u.data``.
  A plain file (``archive="none"``) is moved to ``DIR/<name>/<filename>``;
* is idempotent: ``DIR/<name>/.memrec-fetch.json`` is written inside the staging folder, before
  the rename, so its presence means "complete and verified"; a second call then makes no request.

Layout after ``fetch("ml-100k", Path("data"))``::

    data/ml-100k.zip              the verified download (kept: re-extraction needs no network)
    data/ml-100k/u.data ...       the extracted folder, returned by fetch
    data/ml-100k/.memrec-fetch.json

Checksums: GroupLens publishes md5 files next to each MovieLens archive
(``.../ml-100k.zip.md5``); those md5s are recorded below. For sources with no published checksum
(``sha256 is None and md5 is None``) the first download records the sha256 it saw in
``DIR/<filename>.sha256`` and in the marker; later downloads into the same ``DIR`` and
re-extractions of the kept archive are checked against it (so a silently changed upstream file
is caught). Paste a recorded value into :data:`SOURCES` to pin it for everyone.

``manual`` sources (Diginetica: the CIKM Cup site needs a login) raise
:class:`ManualDownloadRequired`, a :class:`DataError` whose one-line message says where to get
the file and where to save it; once the file is in ``DIR`` the same call verifies and extracts it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

import requests
from tqdm import tqdm

from ..errors import DataError

__all__ = ["SOURCES", "Source", "ManualDownloadRequired", "fetch"]

log = logging.getLogger(__name__)

ArchiveKind = Literal["zip", "tar.gz", "7z", "none"]
ARCHIVE_KINDS: tuple[str, ...] = ("zip", "tar.gz", "7z", "none")
MARKER = ".memrec-fetch.json"
NET_CHUNK = 1 << 16             # bytes per network read; a dropped connection loses at most one
HASH_CHUNK = 1 << 20            # bytes per disk read when hashing
TIMEOUT = (15.0, 120.0)         # (connect, read) seconds for requests


class ManualDownloadRequired(DataError):
    """The host needs a login: the message tells the user where to get the file and put it."""


@dataclass(frozen=True)
class Source:
    """One downloadable dataset.

    Parameters
    ----------
    name : the registry key and the name of the extracted folder ``DIR/<name>/``.
    url : the official download address (for ``manual`` sources: the page to get it from).
    filename : the file name the download is saved under in ``DIR``.
    archive : ``"zip"``, ``"tar.gz"``, ``"7z"`` (needs the optional ``py7zr``) or ``"none"``.
    description : one line: what the data is.
    licence : one line: the terms of use (who may redistribute, what to cite).
    sha256, md5 : known checksums of the download, lower-case hex; ``None`` when none is
        published (the first download then records one, see the module docstring).
    manual : the host needs a login, so :func:`fetch` raises :class:`ManualDownloadRequired`
        with instructions instead of downloading (unless ``url=`` names a mirror, or the file
        is already in ``DIR``).
    """

    name: str
    url: str
    filename: str
    archive: ArchiveKind
    description: str
    licence: str
    sha256: str | None = None
    md5: str | None = None
    manual: bool = False

    def __post_init__(self) -> None:
        if self.archive not in ARCHIVE_KINDS:
            raise ValueError(f"Source {self.name!r}: archive must be one of {ARCHIVE_KINDS}")
        if not self.filename or "/" in self.filename or "\\" in self.filename \
                or self.filename in (".", ".."):
            raise ValueError(f"Source {self.name!r}: filename must be a bare file name")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", self.name):
            raise ValueError(f"Source {self.name!r}: name must be a plain folder name")
        for algo, value, length in (("sha256", self.sha256, 64), ("md5", self.md5, 32)):
            if value is not None and not re.fullmatch(f"[0-9a-f]{{{length}}}", value):
                raise ValueError(f"Source {self.name!r}: {algo} must be {length} lower-case hex")


_MOVIELENS_LICENCE = ("GroupLens licence: research use only, no redistribution without "
                      "permission; cite Harper & Konstan, ACM TiiS 5(4), 2015")

SOURCES: dict[str, Source] = {s.name: s for s in (
    Source(
        name="ml-100k",
        url="https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        filename="ml-100k.zip", archive="zip",
        md5="0e33842e24a9c977be4e0107933c0723",  # published at .../ml-100k.zip.md5
        description="MovieLens 100K: 100,000 ratings (1-5) of 1,682 movies by 943 users, 1998",
        licence=_MOVIELENS_LICENCE,
    ),
    Source(
        name="ml-1m",
        url="https://files.grouplens.org/datasets/movielens/ml-1m.zip",
        filename="ml-1m.zip", archive="zip",
        md5="c4d9eecfca2ab87c1945afe126590906",  # published at .../ml-1m.zip.md5
        description="MovieLens 1M: 1,000,209 ratings of ~3,900 movies by 6,040 users, 2003",
        licence=_MOVIELENS_LICENCE,
    ),
    Source(
        name="ml-20m",
        url="https://files.grouplens.org/datasets/movielens/ml-20m.zip",
        filename="ml-20m.zip", archive="zip",
        md5="cd245b17a1ae2cc31bb14903e1204af3",  # published at .../ml-20m.zip.md5
        description="MovieLens 20M: 20,000,263 ratings and 465,564 tags by 138,493 users, 2015",
        licence=_MOVIELENS_LICENCE,
    ),
    Source(
        name="yoochoose",
        url="https://s3-eu-west-1.amazonaws.com/yc-rdata/yoochoose-data.7z",
        filename="yoochoose-data.7z", archive="7z",
        description="RecSys Challenge 2015 (YOOCHOOSE): e-commerce click and buy sessions; "
                    "extraction needs `pip install py7zr`; a copy is also on Kaggle "
                    "(chadgostopp/recsys-challenge-2015) if the address is gone",
        licence="YOOCHOOSE GmbH, RecSys Challenge 2015 terms: research use; cite "
                "Ben-Shimon et al., RecSys 2015",
    ),
    Source(
        name="diginetica",
        url="https://competitions.codalab.org/competitions/11161",
        filename="dataset-train-diginetica.zip", archive="zip", manual=True,
        description="CIKM Cup 2016 Track 2 (DIGINETICA): anonymised e-commerce search and "
                    "browsing sessions; the download needs a login on the competition site",
        licence="CIKM Cup 2016 / DIGINETICA terms: research use, accepted at registration",
    ),
    Source(
        name="lastfm",
        url="https://files.grouplens.org/datasets/hetrec2011/hetrec2011-lastfm-2k.zip",
        filename="hetrec2011-lastfm-2k.zip", archive="zip",
        md5="296d61afe4e8632b173fc2dd3be20ce2",  # as recorded by other loaders; not official
        description="Last.fm HetRec 2011: 92,834 user-artist play counts, tags and friendships "
                    "of 1,892 users",
        licence="HetRec 2011 (GroupLens): non-commercial research use; Last.fm terms apply; "
                "cite Cantador, Brusilovsky & Kuflik, RecSys 2011",
    ),
    Source(
        name="amazon-video-games",
        url="http://snap.stanford.edu/data/amazon/productGraph/categoryFiles/"
            "ratings_Video_Games.csv",
        filename="ratings_Video_Games.csv", archive="none",
        description="Amazon reviews 2014 (McAuley), Video Games, ratings only: "
                    "user,item,rating,timestamp CSV without header, 1,324,753 ratings",
        licence="research use; cite McAuley et al., SIGIR 2015 and He & McAuley, WWW 2016",
    ),
)}


def fetch(
    name: str | Source,
    dest: str | os.PathLike[str],
    *,
    url: str | None = None,
    progress: bool = True,
    session: requests.Session | None = None,
) -> Path:
    """Download, verify and extract dataset ``name`` into ``dest``; return ``dest/<name>/``.

    Parameters
    ----------
    name : a key of :data:`SOURCES`, or a :class:`Source` (for mirrors of unlisted data, tests).
    dest : the folder to download into; created if missing.
    url : download from this address instead of the registered one (a mirror); the registered
        checksums still apply.
    progress : show a tqdm progress bar (only when stderr is a terminal).
    session : a ``requests.Session`` to use (proxies, auth, retries); a new one by default.

    Returns
    -------
    The folder holding the extracted files (for ``archive="none"``: holding the file).

    Raises
    ------
    DataError : unknown name; network failure (URL and reason); HTTP error; checksum mismatch
        (the bad file is deleted); unsafe archive member; 7z without ``py7zr``.
    ManualDownloadRequired : a ``manual`` source that is not yet in ``dest``.
    """
    source = _resolve(name)
    dest = Path(dest).expanduser()
    folder = dest / source.name
    if _is_complete(folder, source):
        return folder
    if folder.exists():
        raise DataError(f"{folder} exists but is not a finished memrec download; "
                        "move it away and run again")

    final = dest / source.filename
    part = dest / (source.filename + ".part")
    recorded = dest / (source.filename + ".sha256")
    if final.is_file():   # verified earlier (or put there by hand): re-check, then extract
        digests = _verify(final, source, recorded)
    else:
        if source.manual and url is None:
            raise ManualDownloadRequired(
                f"{source.name} must be downloaded by hand (the host needs a login): get "
                f"{source.filename} from {source.url} and save it as {final}, then run again")
        dest.mkdir(parents=True, exist_ok=True)
        _download(url or source.url, part, progress=progress, session=session)
        digests = _verify(part, source, recorded)
        os.replace(part, final)
    if source.sha256 is None and source.md5 is None and not recorded.exists():
        recorded.write_text(f"{digests['sha256']}  {source.filename}\n")
        log.info("recorded sha256 %s for %s (no published checksum)", digests["sha256"],
                 source.filename)
    _install(final, folder, source, digests, url or source.url)
    return folder


# ---------------------------------------------------------------------------------------------
# registry and completion marker

def _resolve(name: str | Source) -> Source:
    if isinstance(name, Source):
        return name
    try:
        return SOURCES[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(sorted(SOURCES))}") \
            from None


def _is_complete(folder: Path, source: Source) -> bool:
    try:
        marker = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(marker, dict) or marker.get("filename") != source.filename:
        return False
    return all(expected is None or marker.get(algo) == expected
               for algo, expected in (("sha256", source.sha256), ("md5", source.md5)))


def _read_recorded(path: Path) -> str | None:
    try:
        return path.read_text().split()[0]
    except (OSError, IndexError):
        return None


# ---------------------------------------------------------------------------------------------
# download

def _download(url: str, part: Path, *, progress: bool,
              session: requests.Session | None) -> None:
    """Fetch ``url`` into ``part``, resuming from its current size when the server allows."""
    own = session is None
    session = requests.Session() if own else session
    try:
        for resume in (True, False):
            offset = part.stat().st_size if resume and part.exists() else 0
            if _download_once(url, part, offset, session, progress):
                return
            part.unlink(missing_ok=True)   # the server's answer did not fit: start over
        raise DataError(f"could not download {url}: the server answered a range request "
                        "inconsistently")
    finally:
        if own:
            session.close()


def _download_once(url: str, part: Path, offset: int, session: requests.Session,
                   progress: bool) -> bool:
    """One request; False means "restart without the partial file"."""
    headers = {"Accept-Encoding": "identity"}   # byte offsets must refer to the file itself
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        with session.get(url, headers=headers, stream=True, timeout=TIMEOUT) as resp:
            content_range = resp.headers.get("Content-Range", "")
            if resp.status_code == 416 and offset:   # nothing left: the .part may be complete
                return _range_total(content_range) == offset
            if resp.status_code == 206 and offset:
                if _range_start(content_range) != offset:
                    return False
                mode, total = "ab", _range_total(content_range)
            elif resp.status_code == 200:            # no range support: write from the start
                mode, offset = "wb", 0
                length = resp.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
            else:
                raise DataError(f"could not download {url}: HTTP {resp.status_code} "
                                f"{resp.reason or ''}".rstrip())
            if resp.headers.get("Content-Encoding", "identity") != "identity":
                total = None   # decoded length differs from the advertised one
            with open(part, mode) as out, tqdm(
                total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                desc=part.name.removesuffix(".part"), disable=None if progress else True,
                leave=False,
            ) as bar:
                for chunk in resp.iter_content(NET_CHUNK):
                    out.write(chunk)
                    bar.update(len(chunk))
    except requests.RequestException as exc:
        kept = f"; the partial download {part} is kept, run again to resume" \
            if part.exists() and part.stat().st_size else ""
        raise DataError(f"could not download {url}: {_reason(exc)}{kept}") from exc
    size = part.stat().st_size
    if total is not None and size != total:
        raise DataError(f"could not download {url}: got {size} of {total} bytes; "
                        f"the partial download {part} is kept, run again to resume")
    return True


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+|\*)(?:-(\d+))?/(\d+|\*)")


def _range_start(header: str) -> int | None:
    m = _CONTENT_RANGE.match(header.strip())
    return int(m.group(1)) if m and m.group(1) != "*" else None


def _range_total(header: str) -> int | None:
    m = _CONTENT_RANGE.match(header.strip())
    return int(m.group(3)) if m and m.group(3) != "*" else None


def _reason(exc: Exception) -> str:
    """A short one-line reason: the OS error when there is one, else the exception text."""
    text = " ".join(str(exc).split())
    errno = re.search(r"\[Errno -?\d+\] [^'\")]+", text)     # OS error inside urllib3's text
    first = re.match(r"\((['\"])(.+?)\1, ", text)             # ('message', <exception>)
    detail = errno.group(0).strip() if errno else first.group(2) if first else text
    return f"{type(exc).__name__}: {detail}"


# ---------------------------------------------------------------------------------------------
# checksum

def _verify(path: Path, source: Source, recorded: Path) -> dict[str, str]:
    """Hash ``path``; on a mismatch delete it and raise. Returns ``{"sha256": .., "md5": ..}``.

    Checked against the registry's checksums, else against the sha256 an earlier download
    recorded in ``recorded`` (so an upstream change of an unpinned file does not pass silently).
    """
    recorded_sha256 = None if source.sha256 or source.md5 else _read_recorded(recorded)
    sha256, md5 = hashlib.sha256(), hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            sha256.update(chunk)
            md5.update(chunk)
    actual = {"sha256": sha256.hexdigest(), "md5": md5.hexdigest()}
    expected = {"sha256": source.sha256 or recorded_sha256, "md5": source.md5}
    for algo in ("sha256", "md5"):
        if expected[algo] is not None and expected[algo] != actual[algo]:
            path.unlink(missing_ok=True)
            hint = (f" (delete {recorded} if the upstream file changed on purpose)"
                    if algo == "sha256" and source.sha256 is None else "")
            raise DataError(f"checksum mismatch for {source.filename}: expected {algo} "
                            f"{expected[algo]}{hint}, got {actual[algo]}; the file was "
                            "deleted, run again to download it afresh")
    return actual


# ---------------------------------------------------------------------------------------------
# extraction

def _install(download: Path, folder: Path, source: Source, digests: dict[str, str],
             url: str) -> None:
    """Extract (or move) ``download`` into a staging folder, mark it, rename it to ``folder``."""
    staging = Path(tempfile.mkdtemp(prefix=f".{source.name}.", suffix=".partial",
                                    dir=folder.parent))
    try:
        if source.archive == "none":
            os.replace(download, staging / source.filename)
            root = staging
        else:
            _EXTRACTORS[source.archive](download, staging)
            entries = list(staging.iterdir())
            root = entries[0] if len(entries) == 1 and entries[0].is_dir() \
                and not entries[0].is_symlink() else staging
        marker = {"name": source.name, "url": url, "filename": source.filename,
                  "archive": source.archive, **digests}
        (root / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        os.replace(root, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _check_member(archive: Path, member: str) -> None:
    """Refuse a member name that could land outside the extraction folder."""
    name = member.replace("\\", "/")
    path = PurePosixPath(name)
    if name.startswith("/") or re.match(r"[A-Za-z]:", name) or ".." in path.parts:
        raise DataError(f"refusing to extract {archive.name}: member {member!r} would be "
                        "written outside the destination folder (path traversal)")


def _extract_zip(archive: Path, into: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                _check_member(archive, info.filename)
            zf.extractall(into)
    except zipfile.BadZipFile as exc:
        raise DataError(f"{archive} is not a valid zip archive: {exc}") from exc


def _extract_tar(archive: Path, into: Path) -> None:
    try:
        with tarfile.open(archive, "r:gz") as tf:
            members = tf.getmembers()
            for m in members:
                _check_member(archive, m.name)
                if not (m.isfile() or m.isdir()):
                    raise DataError(f"refusing to extract {archive.name}: member {m.name!r} "
                                    "is a link or special file")
            tf.extractall(into, members=members, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise DataError(f"{archive} is not a valid tar.gz archive: {exc}") from exc


def _extract_7z(archive: Path, into: Path) -> None:
    try:
        import py7zr  # optional: not a memrec dependency
    except ImportError:
        raise DataError(f"extracting {archive.name} needs py7zr: `pip install py7zr` and run "
                        f"again (the verified download is kept at {archive}), or extract it "
                        "yourself with `7z x`") from None
    try:
        with py7zr.SevenZipFile(archive, mode="r") as z:
            for member in z.getnames():
                _check_member(archive, member)
            z.extractall(path=into)
    except py7zr.Bad7zFile as exc:
        raise DataError(f"{archive} is not a valid 7z archive: {exc}") from exc


_EXTRACTORS = {"zip": _extract_zip, "tar.gz": _extract_tar, "7z": _extract_7z}
