"""Where traces are stored: local paths or fsspec URLs (``s3://``, ``gs://``, ``https://``, ``file://``).

One interface for both, so that the planner has one way to list and one way to read:
:func:`list_tree` lists a location (the one file it is, or every file under it),
:func:`open_bytes` opens one file for a single sequential pass (:func:`peek_rank` reads a
trace's header with it), and :func:`local_copies` gives the loader local files. Reading stays
bounded in memory: a remote file is streamed into a local spool file in fixed-size blocks, the
loader reads that file, and the spool file is deleted afterwards.

Local paths need nothing more. fsspec is imported only when a URL is given
(``pip install "tracelens-dataloader[cluster]"`` plus the backend, e.g. ``s3fs`` or ``gcsfs``;
``http(s)://`` needs ``aiohttp``).
"""

from __future__ import annotations

import json
import os
import re
import stat
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from tracelens.errors import BadInputError, TracelensError

SPOOL_BLOCK = 8 << 20  # bytes copied at a time from remote storage into the spool file
PEEK_STEP = 16 << 10  # bytes read at a time while looking for distributedInfo in a header
PEEK_LIMIT = 1 << 20  # (decompressed) header bytes searched for distributedInfo at most
GZIP_MAGIC = b"\x1f\x8b"
INSTALL_HINT = 'pip install "tracelens-dataloader[cluster]" plus the backend: s3fs, gcsfs or aiohttp'

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
_DIST_KEY = re.compile(rb'"distributedInfo"\s*:\s*')
_EVENTS_KEY = re.compile(rb'"traceEvents"\s*:')
_SPECIAL = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
            (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def is_url(location: str | Path) -> bool:
    """Whether ``location`` is a URL (``scheme://...``) rather than a local path."""
    return isinstance(location, str) and _URL.match(location) is not None


def url_to_fs(url: str) -> tuple[Any, str]:
    """The fsspec filesystem and the path inside it for ``url``; one-line errors when unusable."""
    try:
        import fsspec
    except ImportError:
        raise TracelensError(f"{url}: reading a URL needs fsspec: {INSTALL_HINT}") from None
    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as exc:  # the protocol's backend (s3fs, gcsfs, aiohttp...) is missing
        raise BadInputError(url, f"{_first_line(exc).rstrip('.')}; {INSTALL_HINT}") from None
    except ValueError as exc:  # unknown protocol
        raise BadInputError(url, _first_line(exc)) from None


def is_local_fs(fs: Any) -> bool:
    """Whether ``fs`` reads this machine's own files (no spooling needed)."""
    return "file" in _protocols(fs)


def _protocols(fs: Any) -> tuple[str, ...]:
    p = fs.protocol
    return (p,) if isinstance(p, str) else tuple(p)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _open_stream(fs: Any, path: str) -> IO[bytes]:
    """``path`` opened for one sequential pass: every ``read(n)`` fetches at most n new bytes.

    HTTP servers need not support range requests (``python -m http.server`` does not), so
    HTTP is read as one streamed response; other backends read uncached ranges.
    """
    if any(p.startswith("http") for p in _protocols(fs)):
        return fs.open(path, "rb", block_size=0)
    if is_local_fs(fs):
        return fs.open(path, "rb")
    return fs.open(path, "rb", block_size=SPOOL_BLOCK, cache_type="none")


def open_bytes(location: str) -> IO[bytes]:
    """The file at ``location`` (a path or a URL) opened for one sequential pass."""
    if not is_url(location):
        return open(location, "rb")  # the caller closes it
    fs, path = url_to_fs(location)
    return _open_stream(fs, path)


def read_bytes(location: str) -> bytes:
    """The whole (small) file at ``location``: a run.json."""
    with open_bytes(location) as f:
        return f.read()


# --- listing -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Tree:
    """What a location holds: one file, or the files under a directory.

    ``names`` are the files' paths relative to the location, ``/``-separated and sorted by
    their parts; ``locations`` are the same files as the documents name them (paths, or URLs
    for a URL). Both are empty for a single file.
    """

    location: str
    is_file: bool
    names: tuple[str, ...] = ()
    locations: tuple[str, ...] = ()


def parts(name: str) -> list[str]:
    """Sort key of a relative name: by its parts, as paths sort (``a/x`` before ``a-b``)."""
    return name.split("/")


def list_tree(location: str | Path) -> Tree:
    """List a path or a URL (raises :class:`BadInputError` when there is nothing there)."""
    if is_url(location):
        return _list_url(str(location))
    return _list_path(Path(location))


def check_readable_kind(p: Path) -> None:
    """Refuse a path that does not exist or is no regular file or directory, naming what it is."""
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        raise BadInputError(p, "no such file or directory") from None
    except OSError as exc:
        raise BadInputError(p, f"cannot be read: {exc.strerror or exc}") from None
    for test, what in _SPECIAL:
        if test(mode):
            raise BadInputError(p, f"is {what}, not a trace file: save the trace to a file and analyze that")


def _list_path(p: Path) -> Tree:
    check_readable_kind(p)
    if p.is_file():
        return Tree(str(p), True)
    files = sorted((f for f in p.rglob("*") if f.is_file()), key=lambda f: f.relative_to(p).parts)
    return Tree(str(p), False, tuple(f.relative_to(p).as_posix() for f in files), tuple(str(f) for f in files))


def _list_url(url: str) -> Tree:
    fs, root = url_to_fs(url)
    try:
        # A name like a trace is checked as a file first: listing it over HTTP would fetch it.
        if not url.endswith("/") and basename(url).endswith((".json", ".json.gz")) and fs.isfile(root):
            return Tree(url, True)
        found = [str(f) for f in fs.find(root)]
        if not found and not url.endswith("/") and fs.isfile(root):
            return Tree(url, True)
        if not found and not fs.exists(root):
            raise FileNotFoundError(url)
    except FileNotFoundError:
        raise BadInputError(url, "no such file or directory") from None
    except Exception as exc:  # the backend's own errors too (credentials, permissions, HTTP)
        raise BadInputError(url, f"cannot list it: {type(exc).__name__}: {_first_line(exc)}") from None
    base = root.rstrip("/") + "/"
    inside = sorted((f for f in found if f.startswith(base)), key=lambda f: parts(f[len(base):]))
    return Tree(url, False, tuple(f[len(base):] for f in inside), tuple(fs.unstrip_protocol(f) for f in inside))


def basename(location: str) -> str:
    """The last part of a path, a relative name or a URL."""
    return location.rstrip("/").rsplit("/", 1)[-1]


# --- headers -----------------------------------------------------------------------------


def rank_in_header(head: bytes) -> int | None:
    """``distributedInfo.rank`` from the start of a trace (decompressed), if it is in the header."""
    events = _EVENTS_KEY.search(head)
    m = _DIST_KEY.search(head, 0, events.start() if events else len(head))
    if m is None:
        return None
    try:
        info, _ = json.JSONDecoder().raw_decode(head[m.end() :].decode("utf-8", "replace"))
    except ValueError:
        return None
    rank = info.get("rank") if isinstance(info, dict) else None
    return rank if isinstance(rank, int) and not isinstance(rank, bool) else None


def read_header(location: str, limit: int = PEEK_LIMIT) -> bytes:
    """The start of a trace, decompressed: up to its ``"traceEvents":`` key, at most ``limit`` bytes."""
    out = b""
    inflate: Any = None
    with open_bytes(location) as f:
        while len(out) < limit:
            raw = f.read(PEEK_STEP)
            if not raw:
                break
            if inflate is None:
                inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if raw[:2] == GZIP_MAGIC else False
            out += inflate.decompress(raw, limit) if inflate else raw
            if _EVENTS_KEY.search(out):
                break
    events = _EVENTS_KEY.search(out)
    return out[: events.end()] if events else out[:limit]


def peek_rank(location: str) -> int | None:
    """The rank a trace at ``location`` declares (``distributedInfo.rank``), from its header only."""
    try:
        return rank_in_header(read_header(location))
    except Exception:  # unreadable here: the rank falls back to the name; the job reports the error
        return None


# --- reading -----------------------------------------------------------------------------


def spool(location: str, directory: str | Path | None = None, block: int = SPOOL_BLOCK) -> tuple[Path, int]:
    """Copy ``location`` into a new local file in ``block``-byte reads; (its path, bytes copied).

    Memory stays at about one block whatever the file size. The caller deletes the file.
    """
    fs, path = url_to_fs(location)
    fd, name = tempfile.mkstemp(prefix="tracelens-", suffix="-" + basename(location)[-80:], dir=directory)
    done = 0
    try:
        with _open_stream(fs, path) as src, os.fdopen(fd, "wb") as out:
            while chunk := src.read(block):
                out.write(chunk)
                done += len(chunk)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name), done


@contextmanager
def local_copies(locations: tuple[str, ...], directory: str | Path | None = None) -> Iterator[tuple[list[Path], int]]:
    """Local files for ``locations`` and the bytes read from storage; spool files go on exit.

    Local paths and ``file://`` URLs are used in place; other URLs are spooled into
    ``directory`` (default: the temp dir).
    """
    paths: list[Path] = []
    spooled: list[Path] = []
    nbytes = 0
    try:
        for loc in locations:
            if not is_url(loc):
                paths.append(Path(loc))
                nbytes += _size(Path(loc))
                continue
            fs, path = url_to_fs(loc)
            if is_local_fs(fs):
                paths.append(Path(path))
                nbytes += _size(Path(path))
                continue
            local, n = spool(loc, directory)
            spooled.append(local)
            paths.append(local)
            nbytes += n
        yield paths, nbytes
    finally:
        for p in spooled:
            p.unlink(missing_ok=True)


def _size(p: Path) -> int:
    try:
        return p.stat().st_size
    except OSError:
        return 0
