"""Trial processes that live for the whole sweep, one per setting.

Each runs ``python -m tracelens.capture.script.measure`` in its own process group (so that its
DataLoader workers end with it) with two pipes: it says ``ready`` once its training loader is
warm, then measures one round per grant and blocks inside the loader's ``__next__`` between
rounds (:mod:`tracelens.capture.script.measure`). ``stop`` ends the script; its final result (exit
status, the script's error, a partial round) is read from ``trials/trial-<k>.json`` and its
output is in ``trials/trial-<k>.log``.

:class:`TrialPool` ends every process it started when the sweep leaves it, however it leaves
(an exception, Ctrl-C, SIGTERM through :func:`tracelens.system.procs.sigterm_raises`). A trial whose
parent dies finds its command pipe closed and stops on its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from tracelens.system.procs import end_group

#: Seconds a stopped script gets to unwind (its workers to shut down) before its group is ended.
STOP_GRACE_S = 20.0
#: Lines of a trial's output shown when it fails without a result.
LOG_TAIL_LINES = 5


class TrialTimeout(Exception):
    """A trial did not answer in time."""


class TrialProcess(Protocol):
    """One live trial as the scheduler drives it (a process here; a fake in the tests)."""

    def wait_ready(self, timeout_s: float) -> dict[str, Any] | None:
        """The ``ready`` message, or None when the trial ended first."""

    def measure(self, grant: dict[str, Any], timeout_s: float) -> dict[str, Any] | None:
        """Grant one round; its result, or None when the trial ended during it."""

    def stop(self) -> dict[str, Any]:
        """End the trial; its final result (``error`` when it left none)."""

    def cpu_ns(self) -> int | None:
        """CPU time used so far by the trial's processes (None: unknown)."""

    def memory_bytes(self) -> int | None:
        """Resident memory of the trial's processes now (None: unknown)."""


class SubprocessTrial:
    """A trial process and its two pipes."""

    def __init__(self, spec: dict[str, Any], trials_dir: Path, k: int, env: dict[str, str] | None = None) -> None:
        trials_dir.mkdir(parents=True, exist_ok=True)
        self.k = k
        self.log_path = trials_dir / f"trial-{k}.log"
        self.result_path = trials_dir / f"trial-{k}.json"
        spec_path = trials_dir / f"trial-{k}.spec.json"
        cmd_r, cmd_w = os.pipe()
        res_r, res_w = os.pipe()
        spec_path.write_text(json.dumps({**spec, "control": [cmd_r, res_w]}))
        env = dict(env if env is not None else os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tracelens.capture.script.measure", str(spec_path), str(self.result_path)],
                stdout=log, stderr=subprocess.STDOUT, pass_fds=(cmd_r, res_w), start_new_session=True, env=env)
        os.close(cmd_r)
        os.close(res_w)
        self._cmd = os.fdopen(cmd_w, "w", encoding="utf-8", buffering=1)
        self._res = res_r
        self._buf = b""
        self._final: dict[str, Any] | None = None

    def _line(self, timeout_s: float) -> dict[str, Any] | None:
        """The next message, or None at the end of the pipe (or once the process has exited)."""
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TrialTimeout(f"no answer in {timeout_s:.0f} s")
            ready, _, _ = select.select([self._res], [], [], min(left, 0.5))
            if not ready:
                if self.proc.poll() is not None:  # its forked workers may hold the pipe open
                    return None
                continue
            chunk = os.read(self._res, 1 << 16)
            if not chunk:
                return None
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return dict(json.loads(line))

    def _send(self, message: dict[str, Any]) -> bool:
        try:
            self._cmd.write(json.dumps(message) + "\n")
            return True
        except (OSError, ValueError):
            return False

    def wait_ready(self, timeout_s: float) -> dict[str, Any] | None:
        msg = self._line(timeout_s)
        return msg if msg is not None and msg.get("event") == "ready" else None

    def measure(self, grant: dict[str, Any], timeout_s: float) -> dict[str, Any] | None:
        if not self._send({"cmd": "round", **grant}):
            return None
        msg = self._line(timeout_s)
        return msg if msg is not None and msg.get("event") == "round" else None

    def request_stop(self) -> None:
        """Tell the script to stop, without waiting (several trials then unwind at once)."""
        if not self._cmd.closed:
            self._send({"cmd": "stop"})
            with contextlib.suppress(OSError):
                self._cmd.close()

    def stop(self) -> dict[str, Any]:
        if self._final is not None:
            return self._final
        self.request_stop()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=STOP_GRACE_S)
        self.kill()
        with contextlib.suppress(OSError):
            os.close(self._res)
        self._final = self._result()
        return self._final

    def kill(self) -> None:
        """End the process group now (the script and its workers)."""
        if self.proc.returncode is None:
            end_group(self.proc, grace_s=2.0)
        else:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, 9)  # workers it left behind

    def _result(self) -> dict[str, Any]:
        if self.result_path.is_file():
            with contextlib.suppress(ValueError, OSError):
                return dict(json.loads(self.result_path.read_text()))
        tail = ""
        with contextlib.suppress(OSError):
            lines = [ln for ln in self.log_path.read_text(errors="replace").splitlines() if ln.strip()]
            tail = " | ".join(lines[-LOG_TAIL_LINES:])
        return {"error": f"the trial process failed (status {self.proc.returncode})"
                         + (f": {tail}" if tail else "") + f"; see {self.log_path}",
                "exit_status": self.proc.returncode}

    def cpu_ns(self) -> int | None:
        from tracelens.capture.machine.cpu_supply import tree_cpu_ns

        return tree_cpu_ns(self.proc.pid)

    def memory_bytes(self) -> int | None:
        from tracelens.capture.machine.cpu_supply import descendants

        page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        total = 0
        for pid in descendants(self.proc.pid):
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page
        return total or None


class TrialPool:
    """The live trials of a sweep; every one still alive is ended when the block exits."""

    def __init__(self) -> None:
        self.live: dict[int, TrialProcess] = {}

    def add(self, key: int, trial: TrialProcess) -> TrialProcess:
        self.live[key] = trial
        return trial

    def stop(self, key: int) -> dict[str, Any]:
        trial = self.live.pop(key)
        return trial.stop()

    def stop_all(self, keys: list[int]) -> dict[int, dict[str, Any]]:
        """Stop several trials at once: all are told first, then each is waited for."""
        for key in keys:
            request = getattr(self.live[key], "request_stop", None)
            if callable(request):
                request()
        return {key: self.stop(key) for key in keys}

    def __enter__(self) -> TrialPool:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for key in list(self.live):
            trial = self.live.pop(key)
            kill = getattr(trial, "kill", None)
            if exc is not None and callable(kill):
                kill()  # interrupted: no grace
            else:
                trial.stop()


def memory_available_bytes() -> int | None:
    """``MemAvailable`` of /proc/meminfo (None where unknown)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return None
