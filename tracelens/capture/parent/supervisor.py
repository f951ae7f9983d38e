"""The supervising side of ``tracelens profile``: the script runs in a child process.

The ``tracelens profile`` process claims the run directory, writes a provisional run.json
(``running``), starts ``python -m tracelens.capture.script.child`` (the capture session and the
script, see :func:`tracelens.capture.parent.profile.record`) and waits for it. Whatever ends the child
— the script's own exit, ``os._exit``, a signal, a crash, SIGKILL — the run directory ends with
a run.json that says so: the child's own, or, when the child died without writing one, the
supervisor's (:func:`tracelens.capture.recorded.outcome.fallback_run`).

Signals reaching the supervisor are relayed to the child: SIGTERM and SIGHUP always (the
child saves what it recorded, then dies by the signal; after ``KILL_GRACE_S`` it is killed),
SIGINT unless the supervisor is in the terminal's foreground process group (the terminal
delivered Ctrl-C to the child too, which shares the group so that the script keeps the
terminal: ``pdb`` and ``input()`` work). A launcher (torchrun) gets a session of its own instead
and every signal once, through the relay. Torch-free: torch loads only in the child.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from tracelens.capture.machine.supply import with_job_root
from tracelens.capture.options import ProfileOptions, ProfileResult
from tracelens.capture.recorded.outcome import (
    PHASE_FILE,
    fallback_run,
    provisional_run,
    read_run,
    write_phase,
    write_run,
)
from tracelens.runjson import RunInfo
from tracelens.system.procs import Terminated, sigterm_on_parent_death, sigterm_raises

#: Seconds the child gets to save its recording after a relayed SIGTERM before SIGKILL.
KILL_GRACE_S = 20.0
#: Signals relayed to the child.
RELAYED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def owns_terminal() -> bool:
    """Whether this process is in the foreground process group of its terminal (then a Ctrl-C
    at that terminal reaches every process of the group, the child included)."""
    for fd in (0, 1, 2):
        with contextlib.suppress(OSError):
            if os.isatty(fd):
                return os.tcgetpgrp(fd) == os.getpgrp()
    return False


class _Wake(Exception):
    """Raised by the signal handler to leave a blocking wait."""


class Relay:
    """While a child runs: relay signals to it, and kill it ``KILL_GRACE_S`` after SIGTERM."""

    def __init__(self, grace_s: float = KILL_GRACE_S) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.received: list[int] = []
        self.escalated = False
        self._grace_s = grace_s
        self._kill_at: float | None = None
        self._blocked = False
        self._own_session = False
        self._saved: dict[int, Any] = {}

    def __enter__(self) -> Relay:
        if threading.current_thread() is threading.main_thread():
            for sig in RELAYED:
                self._saved[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for sig, old in self._saved.items():
            signal.signal(sig, old)
        if exc is not None and self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # tracelens itself failed: do not leave the script running
            self.proc.wait()

    @property
    def terminated(self) -> bool:
        """Whether SIGTERM or SIGHUP reached this process."""
        return any(s != signal.SIGINT for s in self.received)

    def start(self, cmd: list[str], env: Mapping[str, str] | None = None, *,
              own_session: bool = False) -> subprocess.Popen[bytes]:
        """Start the child; signals received before it existed are relayed now.

        ``own_session``: the child (a launcher such as torchrun, which handles signals itself and
        reads no terminal) gets its own session, so that a Ctrl-C or a process-group signal
        reaches it once, through this relay; it gets SIGTERM if this process dies.
        """
        self._own_session = own_session
        self.proc = subprocess.Popen(cmd, env=dict(env) if env is not None else None,
                                     start_new_session=own_session,
                                     preexec_fn=sigterm_on_parent_death if own_session else None)
        for sig in self.received:
            self._relay(sig)
        return self.proc

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)
        self._relay(signum)
        if self._blocked and self._kill_at is not None:
            raise _Wake  # out of the blocking wait, to wait with the kill deadline

    def _relay(self, signum: int) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        if signum == signal.SIGINT and not self._own_session and owns_terminal():
            return  # the terminal sent it to the child as well
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)
        if signum != signal.SIGINT and self._kill_at is None:
            self._kill_at = time.monotonic() + self._grace_s

    def wait(self) -> int:
        """The child's return code (negative: the signal that ended it). Blocks without
        polling until a relayed SIGTERM sets the kill deadline."""
        assert self.proc is not None
        while True:
            timeout = None if self._kill_at is None else max(0.0, self._kill_at - time.monotonic())
            self._blocked = timeout is None
            try:
                return self.proc.wait(timeout)
            except _Wake:
                continue
            except subprocess.TimeoutExpired:
                self._kill_at = None
                self.escalated = True
                self.proc.kill()
            finally:
                self._blocked = False


@contextlib.contextmanager
def stop_on_sigterm(run_dir: Path) -> Iterator[None]:
    """After the recording (during the analysis): SIGTERM raises :class:`Terminated` (one line,
    status 143 from the command), through the callers' cleanup (the claim is released)."""
    try:
        with sigterm_raises():
            yield
    except Terminated as stop:
        raise Terminated(f"terminated during the analysis; the recording is saved: tracelens analyze "
                         f"{run_dir}", stop.args[1]) from None


def child_command(options: ProfileOptions, run_dir: Path) -> list[str]:
    """``python [the interpreter's flags] -m tracelens.capture.script.child SPEC``."""
    spec = {"options": options.to_json(), "run_dir": str(run_dir), "supervisor_pid": os.getpid()}
    flags: list[str] = subprocess._args_from_interpreter_flags()  # type: ignore[attr-defined]
    return [sys.executable, *flags, "-m", "tracelens.capture.script.child", json.dumps(spec)]


def settle(run_dir: Path, provisional: RunInfo, rc: int, child_pid: int, started: float,
           escalated: bool) -> tuple[int, RunInfo]:
    """The exit status (128 + signal when killed) and the final run.json of a finished child."""
    status, signum = (rc, None) if rc >= 0 else (128 - rc, -rc)
    run = read_run(run_dir)
    if run is None or run.stop_reason == "running":
        run = fallback_run(provisional, run_dir, status, signum, child_pid, started)
        if escalated:
            run = _with_note(run, f"tracelens sent SIGKILL: the script had not ended {KILL_GRACE_S:.0f} s after SIGTERM")
        write_run(run_dir, run)
    (run_dir / PHASE_FILE).unlink(missing_ok=True)
    shutil.rmtree(run_dir / ".workers", ignore_errors=True)  # left by a child that died
    return status, run


def _with_note(run: RunInfo, note: str) -> RunInfo:
    import msgspec

    return msgspec.structs.replace(run, notes=[*run.notes, note])


def result_from_run(run_dir: Path, run: RunInfo, status: int, options: ProfileOptions) -> ProfileResult[Any]:
    """The :class:`ProfileResult` a run.json describes."""
    trace = run_dir / run.trace.path if run.trace.path else None
    tb = options.tensorboard_dir / run_dir.name if options.tensorboard_dir is not None else None
    return ProfileResult(
        run_dir=run_dir, exit_status=status, stop_reason=run.stop_reason,
        steps_captured=run.window.steps if run.window.captured else 0, batches_drawn=run.batches.count,
        window_captured=run.window.captured, trace_path=trace if trace is not None and trace.is_file() else None,
        run_json_path=run_dir / "run.json", tensorboard_dir=tb if tb is not None and tb.is_dir() else None,
        user_profiler=run.user_profiler is not None, wall_s=run.wall_s or 0.0, notes=tuple(run.notes),
        outcome=run.outcome, signal=run.signal,
    )


def supervise(options: ProfileOptions, run_dir: Path, command: dict[str, Any],
              env: Mapping[str, str] | None = None) -> tuple[ProfileResult[Any], bool]:
    """Record ``options.target`` into the claimed ``run_dir`` in a child process.

    Returns the result and whether this process was asked to stop (SIGTERM / SIGHUP: the caller
    skips the analysis then).
    """
    started = time.time()
    provisional = provisional_run(command, os.getpid())
    write_run(run_dir, provisional)
    write_phase(run_dir, "starting")
    with Relay() as relay:
        proc = relay.start(child_command(options, run_dir), with_job_root(os.environ if env is None else env))
        rc = relay.wait()
    status, run = settle(run_dir, provisional, rc, proc.pid, started, relay.escalated)
    return result_from_run(run_dir, run, status, options), relay.terminated
