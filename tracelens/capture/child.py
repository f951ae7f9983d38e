"""The recording child of ``tracelens profile``: ``python -m tracelens.capture.child SPEC``.

SPEC is JSON: ``{"options": ProfileOptions.to_json(), "run_dir": str, "supervisor_pid": int}``.
The run directory is already claimed by the supervisor. The child runs the script under a
capture session (:func:`tracelens.capture.runner.record`) and exits with the script's status.
It dies with the supervisor: SIGTERM when the supervisor dies (Linux), so that the recording is
saved even then. A SIGINT repeated within ``SIGINT_REPEAT_S`` (a process-group Ctrl-C that the
supervisor also relayed) is one interrupt.
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
    from tracelens.capture.runner import record

    try:
        status = record(ProfileOptions.from_json(spec["options"]), Path(spec["run_dir"]),
                        supervisor_pid=supervisor)
    except TracelensError as exc:
        print(f"tracelens: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    sys.exit(status)


if __name__ == "__main__":
    main(sys.argv)
