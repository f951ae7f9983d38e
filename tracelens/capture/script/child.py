"""The recording child of ``tracelens profile``: ``python -m tracelens.capture.script.child SPEC``.

SPEC is JSON: ``{"options": ProfileOptions.to_json(), "run_dir": str, "supervisor_pid": int}``.
The run directory is already claimed by the supervisor. The child runs the script under a
capture session (:func:`record`) and exits with the script's status.
It dies with the supervisor: SIGTERM when the supervisor dies (Linux), so that the recording is
saved even then. Ctrl-C before the script starts ends the child with status 130 and no
traceback; a SIGINT repeated within ``SIGINT_REPEAT_S`` (a process-group Ctrl-C that the
supervisor also relayed) is one interrupt (:class:`Interrupts`).
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


class Interrupts:
    """Ctrl-C in the child: held while tracelens sets up (importing torch, starting the
    recorder: an interrupt raised there was lost, or printed tracelens' traceback), raised as
    KeyboardInterrupt once the script runs; once, even when it arrives twice (terminal and
    relay, within ``SIGINT_REPEAT_S``)."""

    def __init__(self) -> None:
        self.pending = False
        self.live = False
        self._last = -SIGINT_REPEAT_S

    def install(self) -> None:
        signal.signal(signal.SIGINT, self._on_sigint)

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        now = time.monotonic()
        if now - self._last < SIGINT_REPEAT_S:
            return
        self._last = now
        if not self.live:
            self.pending = True
            return
        raise KeyboardInterrupt

    def interrupted(self) -> bool:
        """Whether Ctrl-C came during the set-up (still held)."""
        return self.pending

    def go_live(self) -> bool:
        """The script starts: from now on Ctrl-C raises KeyboardInterrupt. Returns whether one
        came during the set-up (then the script is not run)."""
        self.live = True
        return self.pending


#: Exit status of a child interrupted before its script started (the supervisor says so).
INTERRUPTED = 128 + signal.SIGINT


def main(argv: list[str]) -> None:
    """Record the run SPEC describes; exit with the script's status."""
    interrupts = Interrupts()
    interrupts.install()
    spec = json.loads(argv[1])
    supervisor = spec.get("supervisor_pid")
    follow_parent(supervisor)
    try:
        status = record(ProfileOptions.from_json(spec["options"]), Path(spec["run_dir"]),
                        supervisor_pid=supervisor, interrupts=interrupts)
    except TracelensError as exc:
        if Path(spec["run_dir"]).is_dir():  # else the supervisor says the directory was removed
            print(f"tracelens: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:  # before the script ran, or while tracelens saved it
        sys.exit(INTERRUPTED)
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


def record(options: ProfileOptions, run_dir: Path, *, supervisor_pid: int | None = None,
           interrupts: Interrupts | None = None) -> int:
    """Run the script under a capture session in this process; write trace.json.gz and run.json
    into the claimed ``run_dir``; return the script's exit status.

    ``os._exit`` and SIGTERM / SIGHUP finish the session before the process ends; a forked
    child of the script that returns from it exits with its status without touching the run.
    ``interrupts`` (the child's) holds Ctrl-C during the set-up: one that came then ends the
    run before the script starts (status 130).
    """
    import torch.profiler  # noqa: F401  (the slow part of the set-up, before anything is recorded)

    if interrupts is not None and interrupts.interrupted():
        raise KeyboardInterrupt  # nothing recorded yet: the supervisor writes run.json
    from tracelens.capture.dataloader import hooks
    from tracelens.capture.recorded.outcome import annotate, script_command, write_phase
    from tracelens.capture.recorded.progress import progress_writer
    from tracelens.capture.script.guard import ExitGuard
    from tracelens.capture.script.session import CaptureSession
    from tracelens.capture.script.target import run_target

    session = CaptureSession(options, run_dir, script_command(options))
    session.observer = lambda phase: write_phase(run_dir, phase)
    session.progress = progress_writer(run_dir)

    def finish(status: int, reason: str, error: str | None, signum: int | None, shutdown: bool) -> None:
        write_phase(run_dir, "finishing")
        session.progress("writing the trace and run.json", True)  # type: ignore[misc]
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
    status: int
    reason: str
    error: str | None
    if interrupts is not None and interrupts.go_live():  # Ctrl-C while the recorder started
        session._stop_recording(drop_sampler=True)  # nothing of the script to keep
        session.notes.append("Ctrl-C came while tracelens started the recorder: the script was not run")
        status, reason, error = 130, "interrupted", "KeyboardInterrupt before the script started"
    else:
        status, reason, error = run_target(options.target, options.args, options.module,
                                           stop_reason="window_captured")
    if guard.forked:  # a fork of the script returned from it: its status, not our run
        exit_forked_child(status)
    with guard.finishing():
        finish(status, reason, error, None, True)
    return status


if __name__ == "__main__":
    main(sys.argv)
