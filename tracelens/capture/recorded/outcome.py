"""How a run ended, in run.json: the one-line outcome, the provisional and the fallback run.json.

Torch-free: the supervising ``tracelens profile`` process uses it to write run.json when the
recording child died without writing it, and the child to annotate the run.json it wrote.

The child reports where it is in a phase file (``.tracelens-phase``: one word), written at
each transition: ``starting`` (the child runs, the recorder is not set up), ``recording`` (the
script runs; no window yet), ``window`` (the profiler window is being recorded), ``saved``
(the trace is on disk), ``finishing`` (tracelens is writing trace.json.gz / run.json),
``done`` (run.json written).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import msgspec

from tracelens.capture.dataloader.registry import jsonable
from tracelens.capture.options import ProfileOptions
from tracelens.runjson import (
    SCHEMA_VERSION,
    Command,
    RunInfo,
    TraceRef,
    decode_run_info,
    encode_run_info,
)

PHASE_FILE = ".tracelens-phase"
#: Phases in the order a run goes through them.
PHASES = ("starting", "recording", "window", "saved", "finishing", "done")
_WHEN = {"starting": " before the script started", "recording": " before the window",
         "window": " during the window", "saved": " after the window",
         "finishing": " while tracelens was saving the recording"}


def write_phase(run_dir: Path, phase: str) -> None:
    """Record ``phase`` for the supervisor (atomic; failures ignored: it is advisory)."""
    tmp = run_dir / f"{PHASE_FILE}.{os.getpid()}.tmp"
    with contextlib.suppress(OSError):
        tmp.write_text(phase)
        os.replace(tmp, run_dir / PHASE_FILE)


def read_phase(run_dir: Path) -> str | None:
    """The last phase the child recorded, None when it recorded none."""
    try:
        return (run_dir / PHASE_FILE).read_text().strip() or None
    except OSError:
        return None


def signal_name(signum: int) -> str:
    """``SIGTERM`` for 15 (``signal 64`` for a number without a name)."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).isoformat()


def _captured(run: RunInfo, trace_present: bool) -> str:
    if run.window.unstepped and trace_present:
        return "whole-run trace saved (no DataLoader steps)"
    if trace_present and run.window.captured:
        planned = run.schedule.active if run.schedule is not None else None
        of = f" of {planned}" if planned is not None and run.window.steps < planned else ""
        return f"trace saved ({run.window.steps}{of} steps)"
    if trace_present:
        return "trace saved, run details (loader settings, telemetry) lost"
    return "trace not saved" if run.window.started or run.stop_reason == "killed" else "no trace"


def _when(run: RunInfo, phase: str | None) -> str:
    if phase is not None:
        return _WHEN.get(phase, "")
    w, s = run.window, run.schedule
    if not w.started:
        return " before the window" if not w.unstepped else ""
    if not w.captured or (s is not None and w.steps < s.active):
        return " during the window"
    return " after the window"


def _how(run: RunInfo) -> str:
    reason, status = run.stop_reason, run.exit_status
    if reason == "window_captured":
        return "stopped by tracelens once the window was recorded"
    if reason in ("terminated", "killed"):
        return f"{'terminated' if reason == 'terminated' else 'killed'} by {run.signal or 'a signal'}"
    if reason == "exited":
        via = " (os._exit)" if (run.error or "").startswith("os._exit") else ""
        return f"exited with status {status}{via}"
    if reason == "error":
        return f"failed ({(run.error or 'an exception').splitlines()[0][:200]})"
    if reason == "interrupted":
        return "interrupted (Ctrl-C)"
    return "finished" if reason == "finished" else reason or "ended"


def describe_outcome(run: RunInfo, run_dir: Path, phase: str | None = None) -> str:
    """One line: how the run ended, when, and what was captured, e.g. ``killed by SIGKILL
    during the window: trace not saved``. ``phase`` (the child's last) when the child died."""
    trace_present = run.trace.path is not None and (run_dir / run.trace.path).is_file()
    when = "" if run.stop_reason == "window_captured" else _when(run, phase)
    return f"{_how(run)}{when}: {_captured(run, trace_present)}"


def read_run(run_dir: Path) -> RunInfo | None:
    """run.json of ``run_dir``, None when missing or unreadable."""
    try:
        return decode_run_info((run_dir / "run.json").read_bytes())
    except Exception:  # missing, unreadable, or cut short by a crash while written
        return None


def write_run(run_dir: Path, run: RunInfo) -> None:
    """Write run.json atomically (a crash never leaves half a file)."""
    tmp = run_dir / f".run.json.{os.getpid()}.tmp"
    tmp.write_bytes(encode_run_info(run))
    os.replace(tmp, run_dir / "run.json")


def script_command(options: ProfileOptions) -> dict[str, Any]:
    """run.json's ``command`` of a profiled script or module."""
    return {
        "kind": "module" if options.module else "script",
        "target": options.target,
        "argv": [options.target, *options.args],
        "cwd": os.getcwd(),
        "loader_overrides": {k: jsonable(v) for k, v in options.loader_overrides.items()},
    }


def provisional_run(command: dict[str, Any], supervisor_pid: int | None) -> RunInfo:
    """The run.json written when the run starts: ``running`` until something better replaces it."""
    return RunInfo(
        schema_version=SCHEMA_VERSION, command=msgspec.convert(command, Command),
        host=socket.gethostname(), started_at=_iso(time.time()), stop_reason="running",
        supervisor_pid=supervisor_pid,
        outcome="running, or tracelens was killed before it could say how the run ended",
    )


def fallback_run(base: RunInfo, run_dir: Path, status: int, signum: int | None, child_pid: int,
                 started: float) -> RunInfo:
    """run.json for a child that died without writing one (killed, crashed, or failed to start),
    from the provisional ``base``."""
    phase = read_phase(run_dir)
    trace = "trace.json.gz" if (run_dir / "trace.json.gz").is_file() else None
    reason = "killed" if signum is not None else "exited"
    notes = list(base.notes)
    if phase == "starting":
        notes.append("the recording process ended before the script started: see the messages above")
    run = msgspec.structs.replace(
        base, pid=child_pid, ended_at=_iso(time.time()), wall_s=round(time.time() - started, 3),
        exit_status=status, stop_reason=reason, signal=signal_name(signum) if signum is not None else None,
        error=None if signum is not None else f"the recording process exited with status {status} without "
                                               "writing run.json",
        notes=notes, trace=TraceRef(path=trace), supervisor_pid=os.getpid())
    return msgspec.structs.replace(run, outcome=describe_outcome(run, run_dir, phase or "starting"))


def annotate(run_dir: Path, *, signum: int | None, supervisor_pid: int | None,
             notes: tuple[str, ...] = ()) -> RunInfo | None:
    """Add ``signal``, ``supervisor_pid``, ``outcome`` and the ``notes`` written after it (the
    TensorBoard export's) to the run.json the session wrote."""
    run = read_run(run_dir)
    if run is None:
        return None
    extra = [n for n in notes if n not in run.notes]
    run = msgspec.structs.replace(run, signal=signal_name(signum) if signum is not None else None,
                                  supervisor_pid=supervisor_pid, notes=[*run.notes, *extra])
    run = msgspec.structs.replace(run, outcome=describe_outcome(run, run_dir))
    write_run(run_dir, run)
    return run
