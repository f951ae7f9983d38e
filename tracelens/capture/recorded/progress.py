"""What ``tracelens profile`` is doing, said on a terminal: starting the script, skipping the
first batches, warm-up N/M, recording N/M, writing, analyzing.

The script's process writes one line of progress to a file in the run directory (throttled,
atomic, advisory: failures are ignored); the supervising process shows it with a ``rich``
status line on stderr when stderr is a terminal, and nothing otherwise. Torch-free.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

PROGRESS_FILE = ".tracelens-progress"
MIN_INTERVAL_S = 0.1  # the script's process writes at most this often (a step can be 1 ms)
POLL_S = 0.2  # the display reads the file this often


def write_progress(run_dir: Path, text: str) -> None:
    """Record ``text`` as the recording's progress (atomic; failures ignored)."""
    tmp = run_dir / f"{PROGRESS_FILE}.{os.getpid()}.tmp"
    try:
        tmp.write_text(text)
        os.replace(tmp, run_dir / PROGRESS_FILE)
    except OSError:  # a full disk or a removed directory: no progress, and no file left behind
        with contextlib.suppress(OSError):
            tmp.unlink()


def read_progress(run_dir: Path) -> str | None:
    """The last progress the script's process wrote, None when none."""
    try:
        return (run_dir / PROGRESS_FILE).read_text().strip() or None
    except OSError:
        return None


def progress_writer(run_dir: Path) -> Callable[[str, bool], None]:
    """A callback ``(text, force)`` that writes changed progress at most every
    :data:`MIN_INTERVAL_S` (always when ``force``: a phase change)."""
    state: dict[str, Any] = {"last": "", "at": 0.0}

    def write(text: str, force: bool = False) -> None:
        now = time.monotonic()
        if text != state["last"] and (force or now - float(state["at"]) >= MIN_INTERVAL_S):
            state["last"], state["at"] = text, now
            write_progress(run_dir, text)

    return write


def step_progress(step_num: int, warmup: int, active: int) -> str:
    """``warm-up 2/3`` or ``recording 5/20`` for the profiler's step number."""
    if step_num < warmup:
        return f"warm-up {step_num}/{warmup}"
    return f"recording {min(step_num - warmup, active)}/{active} steps"


class Status:
    """A one-line status on a terminal's stderr (``rich``), or nothing when not a terminal."""

    def __init__(self, stream: Any = None, *, enabled: bool = True) -> None:
        out = stream if stream is not None else sys.stderr
        self._status: Any = None
        if enabled and hasattr(out, "isatty") and out.isatty() and os.environ.get("TERM") != "dumb":
            from rich.console import Console

            self._status = Console(file=out).status("tracelens: starting")

    @property
    def shown(self) -> bool:
        return self._status is not None

    def update(self, text: str) -> None:
        if self._status is not None:
            self._status.update(f"tracelens: {text}")

    def __enter__(self) -> Status:
        if self._status is not None:
            self._status.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._status is not None:
            self._status.stop()


@contextlib.contextmanager
def follow(run_dir: Path, status: Status) -> Iterator[None]:
    """While the block runs, show the progress the script's process writes to ``run_dir``; the
    progress file is removed afterwards, shown or not (a finished run holds no hidden files)."""
    done = threading.Event()
    poller: threading.Thread | None = None
    if status.shown:
        def poll() -> None:
            seen = None
            while not done.wait(POLL_S):
                text = read_progress(run_dir)
                if text and text != seen:
                    seen = text
                    status.update(text)

        status.update("starting the script")
        poller = threading.Thread(target=poll, name="tracelens-progress", daemon=True)
        poller.start()
    try:
        yield
    finally:
        done.set()
        if poller is not None:
            poller.join(timeout=1.0)
        (run_dir / PROGRESS_FILE).unlink(missing_ok=True)
