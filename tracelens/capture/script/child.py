"""The recording child of ``tracelens profile``: ``python -m tracelens.capture.script.child SPEC``.

SPEC is JSON: ``{"options": ProfileOptions.to_json(), "run_dir": str, "supervisor_pid": int}``.
The run directory is already claimed by the supervisor. The child runs the script under a
capture session (:func:`record`) and exits with the script's status.
It dies with the supervisor: SIGTERM when the supervisor dies (Linux), so that the recording is
saved even then. A SIGINT repeated within ``SIGINT_REPEAT_S`` (a process-group Ctrl-C that the
supervisor also relayed) is one interrupt.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import NoReturn

from tracelens.capture.options import ProfileOptions
from tracelens.errors import TracelensError
from tracelens.system.procs import sigterm_on_parent_death

#: Seconds within which a second SIGINT is taken for the relay of the first.
SIGINT_REPEAT_S = 1.0


def follow_parent(parent: int | None) -> None:
    """Get SIGTERM when the supervisor dies (Linux); end now when it is already gone."""
    if parent is None:
        return
    sigterm_on_parent_death()
    if os.getppid() != parent:
        sys.exit(1)


def interrupt_once() -> None:
    """Ctrl-C raises KeyboardInterrupt once, even when it arrives twice (terminal and relay)."""
    last = [-SIGINT_REPEAT_S]

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        now = time.monotonic()
        if now - last[0] < SIGINT_REPEAT_S:
            return
        last[0] = now
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)


def main(argv: list[str]) -> None:
    """Record the run SPEC describes; exit with the script's status."""
    spec = json.loads(argv[1])
    supervisor = spec.get("supervisor_pid")
    follow_parent(supervisor)
    interrupt_once()
    try:
        status = record(ProfileOptions.from_json(spec["options"]), Path(spec["run_dir"]),
                        supervisor_pid=supervisor)
    except TracelensError as exc:
        print(f"tracelens: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    sys.exit(status)


def exit_forked_child(status: int) -> NoReturn:
    """End a fork of the script that returned from it, as the interpreter would (atexit
    handlers, flushed streams) but without C++ static destructors: Kineto's, inherited from a
    process that was recording, wait forever on a condition variable in a forked child."""
    import atexit

    with contextlib.suppress(BaseException):
        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)


def record(options: ProfileOptions, run_dir: Path, *, supervisor_pid: int | None = None) -> int:
    """Run the script under a capture session in this process; write trace.json.gz and run.json
    into the claimed ``run_dir``; return the script's exit status.

    ``os._exit`` and SIGTERM / SIGHUP finish the session before the process ends; a forked
    child of the script that returns from it exits with its status without touching the run.
    """
    from tracelens.capture.dataloader import hooks
    from tracelens.capture.recorded.outcome import annotate, script_command, write_phase
    from tracelens.capture.script.guard import ExitGuard
    from tracelens.capture.script.session import CaptureSession
    from tracelens.capture.script.target import run_target

    session = CaptureSession(options, run_dir, script_command(options))
    session.observer = lambda phase: write_phase(run_dir, phase)

    def finish(status: int, reason: str, error: str | None, signum: int | None, shutdown: bool) -> None:
        write_phase(run_dir, "finishing")
        done = session.finish(status, reason, error, shutdown_workers=shutdown)
        notes = done.notes
        if supervisor_pid is not None and os.getppid() != supervisor_pid:
            notes += (f"the supervising tracelens profile process (pid {supervisor_pid}) died first: "
                      "its parent-death signal made this recording save the run",)
        annotate(run_dir, signum=signum, supervisor_pid=supervisor_pid, notes=notes)
        write_phase(run_dir, "done")

    def drop_hooks() -> None:
        if hooks.active_session() is session:
            hooks.uninstall()

    guard = ExitGuard(lambda st, why, err, sig: finish(st, why, err, sig, False), on_fork=drop_hooks)
    write_phase(run_dir, "recording")
    session.start()
    guard.arm()
    status, reason, error = run_target(options.target, options.args, options.module,
                                       stop_reason="window_captured")
    if guard.forked:  # a fork of the script returned from it: its status, not our run
        exit_forked_child(status)
    with guard.finishing():
        finish(status, reason, error, None, True)
    return status


if __name__ == "__main__":
    main(sys.argv)
