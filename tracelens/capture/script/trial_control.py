"""How a sweep trial is driven: the rounds its parent grants (over two pipes, or one local
round), and the torch threads it holds in the training process.

The protocol (JSON lines): the trial says ``{"event": "ready", ...}`` once its training loader
is warm and ``{"event": "round", ...}`` after each round; the parent answers each with
``{"cmd": "round", "round", "min_steps", "min_ns", "max_steps", "discard", "settle_max_s"}``
or ``{"cmd": "stop"}``. A closed pipe (the parent gone) means stop.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

#: A single-shot trial measures its steps and at least this long (ns), unless the script ends
#: first. A fast loop's 50 steps last a fraction of a second, shorter than the phases a shared
#: 2-core machine goes through (the training step's math threads and the workers taking the
#: cores from each other: blocks of tens of steps 3-10x slower than the rest, seen on
#: examples/iterable_stream.py); the sweep's interleaved rounds add up to as much.
MIN_MEASURE_NS = 2_000_000_000
#: ... but never more than this many times the steps asked for.
MAX_STEPS_FACTOR = 20


@dataclass(frozen=True)
class RoundGrant:
    """One measurement round as the parent grants it."""

    index: int
    min_steps: int
    min_ns: int
    max_steps: int
    discard: int = 0  # steps skipped first (the queue the workers filled while blocked)
    settle_max_s: float = 0.0  # after the round: wait up to this long for the workers to idle


class Control(Protocol):
    """Where a trial reports and gets its rounds from (``settle_ready_s``: how long to wait
    for the workers to idle before saying ready)."""

    settle_ready_s: float

    def ready(self, info: dict[str, Any]) -> RoundGrant | None: ...

    def round_done(self, result: dict[str, Any]) -> RoundGrant | None: ...


class LocalControl:
    """A single round of ``steps`` steps over at least :data:`MIN_MEASURE_NS`, then stop."""

    settle_ready_s = 0.0

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self.info: dict[str, Any] = {}

    def ready(self, info: dict[str, Any]) -> RoundGrant | None:
        self.info = info
        return RoundGrant(0, self.steps, MIN_MEASURE_NS, MAX_STEPS_FACTOR * self.steps)

    def round_done(self, result: dict[str, Any]) -> RoundGrant | None:
        return None


class PipeControl:
    """JSON lines to the parent on one descriptor, its commands from another (a ``round``
    grant or ``stop``); a parent gone (end of file, broken pipe) means stop."""

    #: Others are measured while this one waits: its workers' prefetching must be over first.
    settle_ready_s = 2.0

    def __init__(self, read_fd: int, write_fd: int) -> None:
        for fd in (read_fd, write_fd):
            os.set_inheritable(fd, False)  # not into spawned workers
        self.reader = os.fdopen(read_fd, "r", encoding="utf-8")
        self.writer = os.fdopen(write_fd, "w", encoding="utf-8", buffering=1)

    def _ask(self, message: dict[str, Any]) -> RoundGrant | None:
        try:
            self.writer.write(json.dumps(message, default=repr) + "\n")
            line = self.reader.readline()
        except (OSError, ValueError):
            return None
        if not line:
            return None
        cmd = json.loads(line)
        if cmd.get("cmd") != "round":
            return None
        return RoundGrant(int(cmd["round"]), int(cmd["min_steps"]), int(cmd["min_ns"]), int(cmd["max_steps"]),
                          int(cmd.get("discard", 0)), float(cmd.get("settle_max_s", 0.0)))

    def ready(self, info: dict[str, Any]) -> RoundGrant | None:
        return self._ask({"event": "ready", **info})

    def round_done(self, result: dict[str, Any]) -> RoundGrant | None:
        return self._ask({"event": "round", **result})


class MainThreads:
    """``torch.set_num_threads(n)`` in this process, held against the script's own calls
    (recorded in ``script_calls``); workers (other processes) set theirs as they like."""

    def __init__(self, threads: int | None) -> None:
        self.threads = threads
        self.script_calls: list[int] = []
        self._orig: Callable[[int], None] | None = None

    def install(self) -> None:
        if self.threads is None:
            return
        import torch

        orig = torch.set_num_threads
        orig(self.threads)
        pid = os.getpid()

        def set_num_threads(n: int) -> None:
            if os.getpid() != pid:
                orig(n)
            else:
                self.script_calls.append(int(n))

        self._orig = orig
        torch.set_num_threads = set_num_threads  # type: ignore[assignment]

    def uninstall(self) -> None:
        if self._orig is not None:
            import torch

            torch.set_num_threads = self._orig  # type: ignore[assignment]
            self._orig = None
