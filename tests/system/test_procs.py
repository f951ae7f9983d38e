"""A child process group ends with its caller: on a timeout, and when the caller is terminated."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tracelens.system.procs import affinity, cores, run_group

# A script that starts a grandchild (as a DataLoader starts workers), writes its pid, and waits.
FAMILY = textwrap.dedent("""
    import subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    open(sys.argv[1], "w").write(str(child.pid))
    time.sleep(600)
""")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie is dead
        return fh.read().split(")")[-1].split()[0] != "Z"


def _wait_for(path: Path, timeout_s: float = 20.0) -> int:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if path.is_file() and path.read_text():
            return int(path.read_text())
        time.sleep(0.05)
    raise AssertionError(f"{path} never written")


def test_a_timeout_ends_the_whole_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    with pytest.raises(subprocess.TimeoutExpired):
        run_group([sys.executable, "-c", FAMILY, str(pid_file)], timeout_s=3)
    grandchild = _wait_for(pid_file, 1)
    time.sleep(0.2)
    assert not _alive(grandchild)


def test_terminating_the_caller_ends_the_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    caller = subprocess.Popen([sys.executable, "-c",
                               "import sys; from tracelens.system.procs import run_group; "
                               f"run_group([sys.executable, '-c', {FAMILY!r}, {str(pid_file)!r}])"])
    grandchild = _wait_for(pid_file)
    caller.send_signal(signal.SIGTERM)
    caller.wait(timeout=20)
    time.sleep(0.2)
    assert not _alive(grandchild)


def test_the_core_count_is_the_affinity_set_where_the_os_gives_one(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN an OS that restricts this process to CPUs 2 and 5 of 8
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {2, 5}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    # THEN pools and the machine facts both see those 2 cores
    assert affinity() == frozenset({2, 5}) and cores() == 2
    from tracelens.capture.machine.facts import core_facts

    assert core_facts()["affinity_cores"] == 2
    # AND without an affinity call (not Linux) every CPU counts
    monkeypatch.delattr(os, "sched_getaffinity")
    assert affinity() is None and cores() == 8
