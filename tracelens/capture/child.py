"""The recording child of ``tracelens profile``: ``python -m tracelens.capture.child SPEC``.

SPEC is JSON: ``{"options": ProfileOptions.to_json(), "run_dir": str, "supervisor_pid": int}``.
The run directory is already claimed by the supervisor. The child runs the script under a
capture session (:func:`tracelens.capture.runner.record`) and exits with the script's status.
It dies with the supervisor: SIGTERM when the supervisor dies (Linux), so that the recording is
saved even then. Ctrl-C before the script starts ends the child with status 130 and no
traceback; a SIGINT repeated within ``SIGINT_REPEAT_S`` (a process-group Ctrl-C that the
supervisor also relayed) is one interrupt (:class:`Interrupts`).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

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
        from tracelens.capture.runner import record

        status = record(ProfileOptions.from_json(spec["options"]), Path(spec["run_dir"]),
                        supervisor_pid=supervisor, interrupts=interrupts)
    except TracelensError as exc:
        if Path(spec["run_dir"]).is_dir():  # else the supervisor says the directory was removed
            print(f"tracelens: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:  # before the script ran, or while tracelens saved it
        sys.exit(INTERRUPTED)
    sys.exit(status)


if __name__ == "__main__":
    main(sys.argv)
