"""Child processes that end with their caller: a command runs in its own process group, and
the whole group (the script and its DataLoader workers) is ended on a timeout, Ctrl-C or SIGTERM."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import IO

#: Seconds a group gets to exit after SIGTERM before it is killed.
TERMINATE_GRACE_S = 5.0


class Terminated(BaseException):
    """SIGTERM reached the caller while a child group ran (raised so that cleanup runs)."""


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` for the block (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Terminated()

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def end_group(proc: subprocess.Popen[bytes], grace_s: float = TERMINATE_GRACE_S) -> None:
    """SIGTERM the child's process group, then SIGKILL what is left after ``grace_s``."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, grace_s)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait_s)
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # the workers may outlive the group leader


def run_group(cmd: Sequence[str], *, stdout: IO[bytes] | int | None = None, timeout_s: float | None = None,
              env: Mapping[str, str] | None = None) -> int:
    """Run ``cmd`` in a new process group and return its status.

    Raises ``subprocess.TimeoutExpired`` after ``timeout_s``; the group is ended first, as it is
    when the caller is interrupted or terminated.
    """
    proc = subprocess.Popen(list(cmd), stdout=stdout, stderr=subprocess.STDOUT if stdout is not None else None,
                            env=dict(env) if env is not None else None, start_new_session=True)
    try:
        with _sigterm_raises():
            return proc.wait(timeout=timeout_s)
    except BaseException:
        end_group(proc)
        raise
    finally:
        if proc.returncode is None:
            end_group(proc)
        else:  # the script is done; end any worker it left behind in its group
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
