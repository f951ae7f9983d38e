"""Child processes that end with their caller.

- :func:`run_group` runs a command in its own process group; the whole group (the script and
  its DataLoader workers) is ended on a timeout, Ctrl-C or SIGTERM (raised as :class:`Terminated`).
- :func:`set_parent_death_signal` (and :func:`sigterm_on_parent_death`) asks Linux to signal a
  process when its parent dies.
- :func:`affinity` is the set of CPUs this process may use; :func:`cores` how many, what
  pools are sized by (the one core count: capture's machine facts read it too).
- :func:`sigterm_raises` turns SIGTERM into :class:`Terminated` for a block of work that must
  clean up first.
- :func:`worker_pool` makes process pools whose workers die with their parent, whatever kills
  it. A forked worker inherits the parent's pipes (its stdout, the pool's call queue), so a
  worker left behind by a parent killed with SIGTERM or SIGKILL blocks forever on a queue
  nobody writes and keeps the caller's pipes open. Workers made here ask Linux for SIGKILL when
  their parent dies (``prctl(PR_SET_PDEATHSIG)``); elsewhere a watchdog thread ends them within
  a second of being orphaned. They also ignore SIGINT: Ctrl-C reaches the whole process group,
  and the parent, not each worker, decides what an interrupt means. Create and shut down a pool
  in the same thread: Linux sends the death signal when the thread that forked the worker ends.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.context import BaseContext
from typing import IO, Any

#: Seconds a group gets to exit after SIGTERM before it is killed.
TERMINATE_GRACE_S = 5.0


class Terminated(BaseException):
    """SIGTERM reached this process during work that must clean up first: a child group, or
    the analysis after a recording. A BaseException, so that no ``except Exception`` turns it
    into a note. ``args``: the one-line message and the exit status (128 + the signal)."""

    def __init__(self, message: str = "terminated", status: int = 128 + signal.SIGTERM) -> None:
        super().__init__(message, status)


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` for the block (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Terminated(status=128 + signum)

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
        with sigterm_raises():
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


def affinity() -> frozenset[int] | None:
    """The CPUs this process may run on (``sched_getaffinity``); None where the OS does not say."""
    get = getattr(os, "sched_getaffinity", None)
    if get is None:
        return None
    try:
        return frozenset(get(0))
    except OSError:
        return None


def cores() -> int:
    """Cores this process may use (its CPU affinity, else every CPU), at least 1: what pools
    are sized by."""
    cpus = affinity()
    return max(1, len(cpus) if cpus is not None else os.cpu_count() or 1)


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
WATCHDOG_PERIOD_S = 0.5  # how often an orphaned worker notices (where prctl is unavailable)


def set_parent_death_signal(sig: int = signal.SIGKILL) -> bool:
    """Ask the kernel to send this process ``sig`` when its parent dies; False where unsupported
    (not Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def sigterm_on_parent_death() -> None:
    """SIGTERM when the parent dies, so that the process can save its work (a ``preexec_fn``)."""
    set_parent_death_signal(signal.SIGTERM)


def _watch_parent(parent: int) -> None:
    """End this process once it is orphaned (its parent pid changes)."""
    while os.getppid() == parent:
        time.sleep(WATCHDOG_PERIOD_S)
    os._exit(1)


def _init_worker(creator: int | None, initializer: Callable[..., Any] | None,
                 initargs: tuple[Any, ...]) -> None:
    """Worker start-up: tie the worker's life to its parent, then run the caller's initializer.

    ``creator`` is the pool's process when it is also the worker's parent (fork, spawn), so
    that a parent that died before the death signal was armed is noticed; None otherwise.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    armed = set_parent_death_signal()
    parent = os.getppid()
    if creator is not None and parent != creator:  # orphaned before the signal was armed
        os._exit(1)
    if not armed:
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    if initializer is not None:
        initializer(*initargs)


def worker_pool(max_workers: int, mp_context: BaseContext | None = None,
                initializer: Callable[..., Any] | None = None,
                initargs: tuple[Any, ...] = ()) -> ProcessPoolExecutor:
    """A :class:`ProcessPoolExecutor` whose workers die when this process dies, by any signal.

    (With a ``forkserver`` context the workers' parent is the fork server, which itself exits
    when this process does, so they follow.)
    """
    method = (mp_context or multiprocessing.get_context()).get_start_method()
    creator = os.getpid() if method in ("fork", "spawn") else None
    return ProcessPoolExecutor(
        max_workers=max_workers,
        mp_context=mp_context,
        initializer=_init_worker,
        initargs=(creator, initializer, initargs),
    )
