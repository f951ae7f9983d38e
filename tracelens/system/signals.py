"""Signals held back while work that must not be cut short runs.

:func:`held_signals` is for a few seconds of work whose half would be worse than none (the
export of a recorded trace): SIGINT, SIGTERM and SIGHUP arriving meanwhile are remembered, and
delivered to the handlers that were in place once the block ends, each once, in arrival order.
SIGKILL cannot be held; callers keep their work recoverable at every step for it. Only the main
thread can change handlers: elsewhere the block runs unprotected.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

#: The signals :func:`held_signals` holds by default.
HELD = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def held_signals(signals: tuple[int, ...] = HELD) -> Iterator[list[int]]:
    """Hold ``signals`` for the block; yield the list of those received so far."""
    if threading.current_thread() is not threading.main_thread():
        yield []
        return
    received: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        if signum not in received:
            received.append(signum)

    saved = {s: signal.signal(s, hold) for s in signals}
    try:
        yield received
    finally:
        for s, old in saved.items():
            signal.signal(s, old if old is not None else signal.SIG_DFL)
        for s in received:
            signal.raise_signal(s)  # its own handler runs now (an ignored one does nothing)
