"""In-process exits a capture session survives: ``os._exit``, SIGTERM / SIGHUP, and ``fork``.

- ``os._exit(n)`` in the process that owns the session: the session is finished first (the
  trace in memory exported, run.json written), then the process exits with n.
- SIGTERM or SIGHUP, when their handler is the default one: the session is finished, then
  the process dies by the signal as it would have (its parent sees the signal). A repeated
  signal while finishing (a process-group kill and its relay by the supervisor) is ignored.
- ``fork``: a child of the script never finishes the session: in the child the guard is
  disarmed, its signal handlers and the hooks are removed (``on_fork``), and every exit path
  checks the pid.

Signals arriving while the session finishes normally are held until it is saved: SIGINT is
ignored, SIGTERM / SIGHUP kill the process right after. Only the main thread can install
signal handlers; elsewhere only ``os._exit`` and ``fork`` are covered.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any, NoReturn

from tracelens.capture.recorded.outcome import signal_name

#: Called to finish the session abruptly: (exit status, stop reason, error, signal number).
Finish = Callable[[int, str, "str | None", "int | None"], None]
#: Signals after which the session is saved before the process dies.
FATAL_SIGNALS = (signal.SIGTERM, signal.SIGHUP)

_REAL_EXIT = os._exit
_ACTIVE: ExitGuard | None = None


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def die_by(signum: int) -> NoReturn:
    """End this process by ``signum`` with its default action (status 128 + signum)."""
    _flush()
    with contextlib.suppress(Exception):
        signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signum])
    os.kill(os.getpid(), signum)
    time.sleep(1.0)  # the signal is delivered before this returns
    _REAL_EXIT(128 + signum)


class ExitGuard:
    """Finish a session on ``os._exit`` and fatal signals; never in a forked child."""

    def __init__(self, finish: Finish, on_fork: Callable[[], None] | None = None) -> None:
        self.owner = os.getpid()
        self._finish = finish
        self._on_fork = on_fork
        self._armed = False
        self._ending = False
        self._deferred: int | None = None
        self._saved: dict[int, Any] = {}

    @property
    def forked(self) -> bool:
        """Whether this process is a fork of the one that owns the session."""
        return os.getpid() != self.owner

    def arm(self) -> None:
        """Start guarding (one guard per process at a time)."""
        global _ACTIVE
        self.owner, self._armed, self._ending = os.getpid(), True, False
        _ACTIVE = self
        os._exit = _guarded_exit
        if threading.current_thread() is threading.main_thread():
            for sig in FATAL_SIGNALS:
                if signal.getsignal(sig) is signal.SIG_DFL:
                    self._saved[sig] = signal.signal(sig, self._on_signal)

    def disarm(self) -> None:
        """Stop guarding: restore ``os._exit`` and the signal handlers."""
        global _ACTIVE
        self._armed = False
        if _ACTIVE is self:
            _ACTIVE = None
            os._exit = _REAL_EXIT
        for sig, old in self._saved.items():
            with contextlib.suppress(ValueError):
                if signal.getsignal(sig) == self._on_signal:
                    signal.signal(sig, old)
        self._saved.clear()

    @contextlib.contextmanager
    def finishing(self) -> Any:
        """Around the normal finish: SIGINT ignored, SIGTERM / SIGHUP held, then the guard is
        disarmed and a held signal ends the process."""
        self._ending = True
        old_int = None
        if threading.current_thread() is threading.main_thread():
            old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            yield
        finally:
            if old_int is not None:
                signal.signal(signal.SIGINT, old_int)
            self.disarm()
            if self._deferred is not None:
                die_by(self._deferred)

    def _abrupt(self, status: int, reason: str, error: str | None, signum: int | None) -> None:
        self._ending = True
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            self._finish(status, reason, error, signum)
        except BaseException as exc:  # the process ends anyway: say why the run is incomplete
            print(f"tracelens: could not save the run: {type(exc).__name__}: {exc}", file=sys.stderr)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if not self._armed or self.forked:
            die_by(signum)
        if self._ending:
            self._deferred = self._deferred or signum
            return
        self._abrupt(128 + signum, "terminated", signal_name(signum), signum)
        die_by(signum)

    def on_exit(self, code: int) -> None:
        """``os._exit(code)`` was called: finish first when this process owns the session."""
        if self._armed and not self.forked and not self._ending:
            self._abrupt(code & 0xFF, "exited", f"os._exit({code})", None)

    def after_fork_in_child(self) -> None:
        """Disarm in a forked child: its exits and signals are its own."""
        self._armed = False
        os._exit = _REAL_EXIT
        for sig, old in self._saved.items():
            with contextlib.suppress(ValueError):
                if signal.getsignal(sig) == self._on_signal:
                    signal.signal(sig, old)
        if self._on_fork is not None:
            self._on_fork()


def _guarded_exit(status: int) -> NoReturn:
    guard = _ACTIVE
    if guard is not None and isinstance(status, int):
        guard.on_exit(status)
    _REAL_EXIT(status)


def _after_fork_in_child() -> None:
    global _ACTIVE
    guard = _ACTIVE
    if guard is not None and guard._armed:
        _ACTIVE = None
        guard.after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
