"""The recorded trace onto disk, whole or not at all: ``trace.json.gz`` of a run directory.

torch's own ``export_chrome_trace("x.json.gz")`` writes the whole uncompressed trace to the
temporary directory, then gzips it into place: a signal or a full disk leaves a truncated
``.gz`` and the temporary file behind. Here, instead:

1. torch writes the JSON beside the run (``.trace.json.<pid>.tmp``, never ``$TMPDIR``);
2. once complete (it ends as JSON ends) it is renamed ``trace.json``: torch's raw trace, whole;
3. it is compressed to ``trace.json.gz`` through :func:`tracelens.system.atomic.copy_atomic`
   (a temporary name, fsync, rename), then ``trace.json`` is removed; when that fails (a full
   disk), ``trace.json`` is the run's trace, and the caller says so.

SIGINT, SIGTERM and SIGHUP are held for the whole export and delivered after it
(:func:`tracelens.system.signals.held_signals`): the export runs to its end, bounded by the
supervisor's ``KILL_GRACE_S`` after a SIGTERM. A SIGKILL during step 3 leaves ``trace.json``
whole (``tracelens analyze`` reads it; run.json names it); during step 1 it leaves only a
temporary file, which the supervisor removes. A failed export removes what it wrote and raises
:class:`~tracelens.system.atomic.OutputError` naming the file and the cause.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from tracelens.system.atomic import OutputError, copy_atomic, os_cause
from tracelens.system.signals import held_signals

#: The run directory's trace, and torch's raw (uncompressed) trace kept when compressing it was cut short.
TRACE_NAME = "trace.json.gz"
RAW_TRACE_NAME = "trace.json"
#: Bytes read from the end of torch's file to check that it is complete.
TAIL_BYTES = 64


def _complete(path: Path) -> bool:
    """Whether torch's JSON file exists and ends as a JSON document ends (``}`` or ``]``).
    (Kineto writes ``<path>.tmp`` and renames it when done; on an error it logs and leaves
    the ``.tmp``: no exception reaches Python.)"""
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - TAIL_BYTES))
            tail = fh.read().rstrip()
    except FileNotFoundError:
        return False
    return tail.endswith((b"}", b"]"))


def _failed_write(d: Path) -> str:
    """Why torch's write failed, as far as can be told: it says nothing but a log line."""
    with contextlib.suppress(OSError):
        st = os.statvfs(d)
        return f"torch could not write the trace ({st.f_bavail * st.f_frsize:,} bytes free on its file system)"
    return "torch could not write the trace"


def export_trace(prof: Any, run_dir: Path) -> tuple[Path, str | None]:
    """Export ``prof``'s trace to ``run_dir/trace.json.gz`` (see the module's steps); return
    the file saved and, when it is torch's raw ``trace.json`` (compressing failed), why."""
    raw_tmp = run_dir / f".{RAW_TRACE_NAME}.{os.getpid()}.tmp"
    raw, final = run_dir / RAW_TRACE_NAME, run_dir / TRACE_NAME
    if not run_dir.is_dir():  # removed while the script ran: Kineto would only log errors
        raise OutputError(final, f"the run directory {run_dir} was removed")
    with held_signals():
        try:
            prof.export_chrome_trace(str(raw_tmp))
            if not _complete(raw_tmp):
                raise OutputError(final, _failed_write(run_dir))
            os.replace(raw_tmp, raw)
        except OSError as exc:
            raise OutputError(final, os_cause(exc)) from exc
        finally:
            for leftover in (raw_tmp, raw_tmp.with_name(raw_tmp.name + ".tmp")):  # Kineto's own
                with contextlib.suppress(OSError):
                    leftover.unlink()
        try:
            copy_atomic(raw, final, compress=True, parents=False)
        except OutputError as exc:  # a full disk: the raw trace is whole, keep it
            return raw, f"{final.name} not written ({exc.cause}): torch's raw trace is kept as {raw}"
        raw.unlink(missing_ok=True)
    return final, None
