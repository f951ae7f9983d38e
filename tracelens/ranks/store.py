"""Where traces are stored: local paths or fsspec URLs (``s3://``, ``gs://``, ``https://``, ``file://``).

Listing and rank detection mirror :func:`tracelens.api.analyze_path` for local directories, so a
directory analyzed by URL gives the same ranks as the same directory analyzed by path. Reading
stays bounded in memory: a remote file is streamed into a local spool file in fixed-size
blocks, the loader reads that file, and the spool file is deleted afterwards.

fsspec is imported only when a URL is given (``pip install "tracelens-dataloader[cluster]"`` plus
the backend, e.g. ``s3fs`` or ``gcsfs``; ``http(s)://`` needs ``aiohttp``).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from tracelens.errors import BadInputError, TracelensError

SPOOL_BLOCK = 8 << 20  # bytes copied at a time from remote storage into the spool file
PEEK_STEP = 16 << 10  # bytes read at a time while looking for distributedInfo in a header
PEEK_LIMIT = 1 << 20  # (decompressed) header bytes searched for distributedInfo at most
PEEK_THREADS = 16  # concurrent header reads while listing a directory URL
GZIP_MAGIC = b"\x1f\x8b"
INSTALL_HINT = 'pip install "tracelens-dataloader[cluster]" plus the backend: s3fs, gcsfs or aiohttp'

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
_DIST_KEY = re.compile(rb'"distributedInfo"\s*:\s*')
_EVENTS_KEY = re.compile(rb'"traceEvents"\s*:')


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


def open_stream(fs: Any, path: str) -> IO[bytes]:
    """``path`` opened for one sequential pass: every ``read(n)`` fetches at most n new bytes.

    HTTP servers need not support range requests (``python -m http.server`` does not), so
    HTTP is read as one streamed response; other backends read uncached ranges.
    """
    if any(p.startswith("http") for p in _protocols(fs)):
        return fs.open(path, "rb", block_size=0)
    if is_local_fs(fs):
        return fs.open(path, "rb")
    return fs.open(path, "rb", block_size=SPOOL_BLOCK, cache_type="none")


# --- listing -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Listing:
    """What a location holds: a single trace, a run directory, or trace files to group by rank."""

    kind: str  # "file", "run_dir" or "directory"
    files: tuple[str, ...]  # locations (URLs for URL input), sorted
    run_json: str | None = None


def list_location(url: str) -> Listing:
    """List a URL like :func:`tracelens.api.analyze_path` lists a local path."""
    from tracelens.ranks.plan import NOT_TRACES

    fs, root = url_to_fs(url)
    try:
        # A name like a trace is checked as a file first: listing it over HTTP would fetch it.
        if not url.endswith("/") and _basename(url).endswith((".json", ".json.gz")) and fs.isfile(root):
            return Listing("file", (url,))
        found = [str(f) for f in fs.find(root)]
        if not found and not url.endswith("/") and fs.isfile(root):
            return Listing("file", (url,))
    except FileNotFoundError:
        raise BadInputError(url, "no such file or directory") from None
    except Exception as exc:  # the backend's own errors too (credentials, permissions, HTTP)
        raise BadInputError(url, f"cannot list it: {type(exc).__name__}: {_first_line(exc)}") from None
    if not found and not fs.exists(root):
        raise BadInputError(url, "no such file or directory")
    base = root.rstrip("/")
    top = {f[len(base) + 1 :]: f for f in found if f.startswith(base + "/") and "/" not in f[len(base) + 1 :]}
    if "run.json" in top and ("trace.json.gz" in top or "trace.json" in top):
        trace = top.get("trace.json.gz") or top["trace.json"]
        return Listing("run_dir", (fs.unstrip_protocol(trace),), fs.unstrip_protocol(top["run.json"]))
    names = [f for f in found if f.endswith((".json", ".json.gz"))]
    kineto = [f for f in names if ".pt.trace.json" in _basename(f)]
    files = kineto or [f for f in names if _basename(f) not in NOT_TRACES]
    if not files:
        raise BadInputError(url, "the directory holds no trace files (*.json, *.json.gz)")
    return Listing("directory", tuple(fs.unstrip_protocol(f) for f in sorted(files)))


def _basename(location: str) -> str:
    return location.rstrip("/").rsplit("/", 1)[-1]


# --- ranks -------------------------------------------------------------------------------


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
    fs, path = url_to_fs(location)
    out = b""
    inflate: Any = None
    with open_stream(fs, path) as f:
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


def assign_ranks(names: list[str], declared: list[int | None]) -> dict[int, list[int]]:
    """Indices of the files of each rank: declared rank, else a number in the name, else order.

    The same rule as :func:`tracelens.api.group_by_rank` (``names`` are base names).
    """
    from tracelens.ranks.plan import RANK_IN_NAME as _RANK_IN_NAME

    named = [_RANK_IN_NAME.search(n) for n in names]
    use_names = all(m is not None for m in named) and len({m.group(1) for m in named if m}) > 1
    ranks: dict[int, list[int]] = {}
    for i, m in enumerate(named):
        r = declared[i]
        if r is None and use_names and m is not None:
            r = int(m.group(1))
        if r is None:
            r = i
        ranks.setdefault(r, []).append(i)
    return ranks


def group_urls_by_rank(files: list[str], threads: int = PEEK_THREADS) -> dict[int, list[str]]:
    """Rank of each trace URL, reading only the first bytes of each file (in parallel)."""
    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(files)))) as pool:
        declared = list(pool.map(peek_rank, files))
    groups = assign_ranks([_basename(f) for f in files], declared)
    return {r: [files[i] for i in idx] for r, idx in groups.items()}


# --- reading -----------------------------------------------------------------------------


def spool(location: str, directory: str | Path | None = None, block: int = SPOOL_BLOCK) -> tuple[Path, int]:
    """Copy ``location`` into a new local file in ``block``-byte reads; (its path, bytes copied).

    Memory stays at about one block whatever the file size. The caller deletes the file.
    """
    fs, path = url_to_fs(location)
    fd, name = tempfile.mkstemp(prefix="tracelens-", suffix="-" + _basename(location)[-80:], dir=directory)
    done = 0
    try:
        with open_stream(fs, path) as src, os.fdopen(fd, "wb") as out:
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
