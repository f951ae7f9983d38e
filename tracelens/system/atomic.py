"""Files that appear whole or not at all, and OS errors that name the path.

Every file tracelens writes (a run directory's trace, run.json, analysis.json, report.html;
``--html`` and ``-o`` outputs) goes through :func:`atomic_file` / :func:`write_atomic`: it is
written under a temporary name beside its destination (``.<name>.<random>.tmp``), flushed to
disk (``fsync``) and renamed over the destination, then the directory is synced. A crash, a
signal or a full disk leaves the old file or none, never half of one, and the temporary file is
removed on any error. An ``OSError`` comes out as :class:`OutputError`: one line naming the
path and the operating system's reason (``No space left on device``), exit 1.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from tracelens.errors import TracelensError

#: Suffix of the temporary files; ``--force`` and the supervisor remove leftovers by it.
TEMP_SUFFIX = ".tmp"


class OutputError(TracelensError):
    """A file could not be written: the path and the operating system's reason (exit 1)."""

    def __init__(self, path: str | Path, cause: str, action: str = "write") -> None:
        super().__init__(f"{path}: cannot {action}: {cause}")
        self.path = str(path)
        self.cause = cause
        self.action = action

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.path, self.cause, self.action), self.__dict__)


def os_cause(exc: OSError) -> str:
    """The operating system's reason for ``exc`` in words (``No space left on device``)."""
    if exc.strerror:
        return exc.strerror
    if exc.errno is not None:
        return os.strerror(exc.errno)
    return str(exc) or type(exc).__name__


def describe_os_error(exc: OSError, default_path: str | Path | None = None) -> str:
    """``PATH: reason`` for an OS error, the path it names (else ``default_path``) first."""
    path = exc.filename if exc.filename is not None else default_path
    cause = os_cause(exc)
    if exc.filename2 is not None:
        cause = f"{cause} ({exc.filename2})"
    return f"{path}: {cause}" if path is not None else cause


def _sync_dir(d: Path) -> None:
    """Make a rename inside ``d`` durable (a no-op where directories cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _shared_mode() -> int:
    """0o666 less the umask: what ``open()`` would give (mkstemp makes the file private)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _make_parent(out: Path) -> None:
    """Create ``out``'s directory; a file in the way of it is named as such."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:  # a file where a directory of the path should be
        blocking = next((p for p in (out.parent, *out.parent.parents) if p.exists() and not p.is_dir()), out.parent)
        raise NotADirectoryError(errno.ENOTDIR, f"{os.strerror(errno.ENOTDIR)} ({blocking} is a file)") from exc


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "wb", *, private: bool = False,
                parents: bool = True) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` for writing; on a clean exit it is synced and
    renamed to ``path``; on an error it is removed. ``mode`` is ``"wb"`` or ``"w"`` (UTF-8);
    ``parents``: create missing directories (not for a run directory's files: one removed
    meanwhile stays removed). OS errors are raised as :class:`OutputError` naming ``path``."""
    out = Path(path)
    tmp: str | None = None
    try:
        if parents:
            _make_parent(out)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=TEMP_SUFFIX, dir=str(out.parent))
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        if not private:
            os.chmod(tmp, _shared_mode())
        os.replace(tmp, out)
        tmp = None
        _sync_dir(out.parent)
    except OSError as exc:
        raise OutputError(out, os_cause(exc)) from exc
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def write_atomic(path: str | Path, data: str | bytes, *, private: bool = False,
                 parents: bool = True) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` atomically (see :func:`atomic_file`)."""
    with atomic_file(path, "w" if isinstance(data, str) else "wb", private=private, parents=parents) as fh:
        fh.write(data)
    return Path(path)


def copy_atomic(src: str | Path, dst: str | Path, *, compress: bool = False,
                chunk: int = 1 << 20, parents: bool = True) -> Path:
    """Copy ``src`` to ``dst`` atomically, gzip-compressing it when ``compress`` (level 6).
    A read error names ``src``; a write error names ``dst``."""
    import gzip
    import shutil

    try:
        src_fh = open(src, "rb")  # noqa: SIM115 - closed below, after the atomic write
    except OSError as exc:
        raise OutputError(src, os_cause(exc), "read") from exc
    with src_fh, atomic_file(dst, "wb", parents=parents) as out:
        if compress:
            with gzip.GzipFile(filename="", mode="wb", fileobj=out, compresslevel=6, mtime=0) as gz:
                shutil.copyfileobj(src_fh, gz, chunk)
        else:
            shutil.copyfileobj(src_fh, out, chunk)
    return Path(dst)
