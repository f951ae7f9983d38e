"""Where outputs go, and run directories claimed by one process at a time.

A run directory is *claimed* before anything is written into it: a claim file naming the
claiming process (pid, host, start time) is created with ``link()``, which is atomic and fails
when the file exists, so of two processes that race for one directory exactly one wins. The
claim is released (the file removed) when the run is complete. A directory whose claim names a
live process is refused, with or without ``--force``; a claim left by a dead process makes the
directory an unfinished run, replaced only with ``--force``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from tracelens.errors import UsageError
from tracelens.system.atomic import TEMP_SUFFIX, OutputError, describe_os_error, os_cause

#: The claim file inside a run directory (removed when the run is complete).
CLAIM_FILE = ".tracelens-claim"
#: What tracelens writes into a run (or job) directory; ``--force`` removes only these.
RUN_OUTPUTS = ("trace.json.gz", "trace.json", "run.json", "analysis.json", "report.html",
               ".workers", ".tracelens-phase", ".tracelens-combine.lock", ".tracelens-combined")
#: Subdirectories of a job directory that hold one rank each (``rank-<RANK>``).
RANK_DIR_PREFIX = "rank-"


def timestamped_dir(root: Path, name: str, now: datetime | None = None) -> Path:
    """``root/<name>-<YYYYmmdd-HHMMSS>`` that does not exist yet (``-2``, ``-3``... when it does).

    Only a name: two processes may get the same one. Use :func:`claim_new_dir` for a directory
    this process alone writes.
    """
    base = root / f"{name}-{(now or datetime.now()).strftime('%Y%m%d-%H%M%S')}"
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def claim_new_dir(root: Path, name: str, now: datetime | None = None) -> Path:
    """Create and claim ``root/<name>-<YYYYmmdd-HHMMSS>`` (``-2``, ``-3``... when taken).

    ``mkdir`` without ``exist_ok`` picks the name, so two processes started in the same second
    get two directories.
    """
    base = f"{name}-{(now or datetime.now()).strftime('%Y%m%d-%H%M%S')}"
    make_dir(root)
    for n in range(1, 10_000):
        candidate = root / (base if n == 1 else f"{base}-{n}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        claim_dir(candidate, force=False)
        return candidate
    raise UsageError(f"{root}: 10,000 run directories named {base}-*: choose --out")


def process_start(pid: int) -> float | None:
    """When process ``pid`` started (s since the epoch), None when unknown."""
    try:
        import psutil

        return float(psutil.Process(pid).create_time())
    except Exception:
        return None


def _claim_record() -> dict[str, Any]:
    pid = os.getpid()
    return {"pid": pid, "host": socket.gethostname(), "process_start": process_start(pid),
            "claimed_at": time.time()}


def claim_holder(d: Path) -> dict[str, Any] | None:
    """The claim record of ``d`` (an empty dict when unreadable), None when unclaimed."""
    try:
        text = (d / CLAIM_FILE).read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        found = json.loads(text)
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def holder_alive(holder: dict[str, Any]) -> bool | None:
    """Whether the process of a claim record still runs; None when it cannot be told (another
    host, an unreadable record)."""
    pid = holder.get("pid")
    if not isinstance(pid, int) or holder.get("host") != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    started, now_started = holder.get("process_start"), process_start(pid)
    if isinstance(started, (int, float)) and now_started is not None:
        return abs(now_started - started) < 1.0  # else the pid was reused
    return True


def _describe(holder: dict[str, Any]) -> str:
    at = holder.get("claimed_at")
    when = f", since {datetime.fromtimestamp(at):%Y-%m-%d %H:%M:%S}" if isinstance(at, (int, float)) else ""
    return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}{when}"


def _try_link(d: Path, extra: dict[str, Any] | None = None) -> bool:
    """Create the claim file atomically (``extra`` added to its record); False when one exists."""
    tmp = d / f"{CLAIM_FILE}.{os.getpid()}.tmp"
    try:
        try:
            tmp.write_text(json.dumps({**_claim_record(), **(extra or {})}))
        except OSError as exc:
            raise OutputError(d / CLAIM_FILE, os_cause(exc), "claim the directory") from exc
        os.link(tmp, d / CLAIM_FILE)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


def _take_over(d: Path, force: bool) -> None:
    """Replace a claim whose process is gone (only with ``force``); refuse a live one."""
    holder = claim_holder(d)
    if holder is None:
        return  # released meanwhile: try again
    alive = holder_alive(holder)
    if alive:
        raise UsageError(f"{d}: another tracelens run ({_describe(holder)}) is writing this "
                         "directory; choose another --out")
    if not force:
        state = "ended without finishing" if alive is False else "cannot be checked from this host"
        raise UsageError(f"{d}: an earlier run here ({_describe(holder)}) {state}; "
                         "pass --force to replace it")
    # Rename the stale claim away first: of two processes forcing at once only one succeeds.
    with contextlib.suppress(FileNotFoundError):
        os.rename(d / CLAIM_FILE, d / f"{CLAIM_FILE}.stale.{os.getpid()}")
        (d / f"{CLAIM_FILE}.stale.{os.getpid()}").unlink()


def make_dir(d: Path) -> None:
    """Create directory ``d`` (and its parents) unless it exists; a file or a dangling link in
    its place, or an OS error (permission denied, a read-only file system), is one line naming
    ``d`` (exit 2 for the first two: choose another ``--out``)."""
    if d.is_symlink() and not d.exists():
        raise UsageError(f"{d}: is a dangling symbolic link (to {os.readlink(d)}); choose another --out")
    if d.exists() and not d.is_dir():
        raise UsageError(f"{d}: is a file, not a directory; choose another --out")
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(d, describe_os_error(exc, d) if exc.filename not in (None, str(d)) else os_cause(exc),
                          "create the directory") from exc


def claim_dir(d: Path, *, force: bool, keep: tuple[str, ...] = (), extra: dict[str, Any] | None = None) -> None:
    """Claim ``d`` (created when missing) for this process (``extra``: more of the claim record).

    Refused with one line when another live process holds it, or when it holds files and not
    ``force``; with ``force`` tracelens' own files of an earlier run (``RUN_OUTPUTS`` and
    ``rank-*`` directories, except ``keep``) are removed first, so that a failed new run never
    reads as the old one. Other files are left alone.
    """
    make_dir(d)
    for _ in range(20):
        if _try_link(d, extra):
            break
        _take_over(d, force)
    else:
        raise UsageError(f"{d}: could not claim the directory (claims keep changing)")
    others = [p for p in d.iterdir() if p.name != CLAIM_FILE and p.name not in keep
              and not p.name.startswith(f"{CLAIM_FILE}.")]
    if others and not force:
        release_claim(d)
        raise UsageError(f"{d}: run directory exists and is not empty; pass --force to overwrite it")
    if force:
        clear_run_outputs(d, keep)


def _is_ours(p: Path) -> bool:
    return p.name in RUN_OUTPUTS or (p.is_dir() and p.name.startswith(RANK_DIR_PREFIX)
                                     and p.name[len(RANK_DIR_PREFIX):].isdigit())


def is_temp_output(name: str) -> bool:
    """Whether ``name`` is a temporary file of one of tracelens' outputs (``.<output>.<...>.tmp``,
    left by a process killed while writing it)."""
    return name.endswith(TEMP_SUFFIX) and any(name.startswith(f".{o}.") for o in RUN_OUTPUTS)


def remove_temp_outputs(d: Path) -> None:
    """Remove the temporary files of tracelens' outputs from ``d`` (never another file)."""
    with contextlib.suppress(OSError):
        for p in d.iterdir():
            if is_temp_output(p.name):
                p.unlink(missing_ok=True)


def clear_run_outputs(d: Path, keep: tuple[str, ...] = ()) -> None:
    """Remove tracelens' own files from ``d`` (see ``RUN_OUTPUTS``; ``rank-<n>`` directories;
    temporary files of them)."""
    remove_temp_outputs(d)
    for p in d.iterdir():
        if p.name in keep or not _is_ours(p):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def release_claim(d: Path) -> None:
    """Remove this process's claim on ``d`` (a claim of another process is left alone)."""
    holder = claim_holder(d)
    if holder is not None and holder.get("pid") == os.getpid():
        (d / CLAIM_FILE).unlink(missing_ok=True)


def owned_by_me(d: Path) -> bool:
    """Whether this process holds the claim on ``d``."""
    holder = claim_holder(d)
    return holder is not None and holder.get("pid") == os.getpid()
