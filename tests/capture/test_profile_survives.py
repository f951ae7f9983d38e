"""`tracelens profile` never loses or mixes a run (issue 11): real runs through the command.

Whatever ends the script — ``os._exit``, SIGTERM, SIGINT, SIGKILL, a fork that returns — the run
directory ends with a run.json that says what happened and what was captured; a directory
another run writes is refused; ``--force`` never leaves an old run reading as the new one.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytestmark = [pytest.mark.torch, pytest.mark.slow]

# ACTION AT PIDFILE SLEEP_S: draws batches (window: wait 2, warmup 1, active 10 = batches 3-12)
# and does ACTION at batch AT.
SCRIPT = textwrap.dedent("""
    import os, signal, sys, time
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    action, at, pid_file, sleep_s = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    open(pid_file, "w").write(str(os.getpid()))
    if action == "kill_early":
        os.kill(os.getpid(), signal.SIGKILL)
    loader = DataLoader(TensorDataset(torch.randn(400, 4)), batch_size=4)
    for i, (x,) in enumerate(loader):
        (x @ x.T).sum()
        time.sleep(sleep_s)
        if i != at:
            continue
        if action == "os_exit":
            os._exit(3)
        if action in ("sigterm", "sigint"):
            os.kill(os.getppid(), signal.SIGTERM if action == "sigterm" else signal.SIGINT)
            time.sleep(30)
        if action == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        if action == "fork":
            child = os.fork()
            if child == 0:
                open(pid_file + ".child", "w").write(str(os.getpid()))
                break  # the fork leaves the loop: the script returns normally in it
            os.waitpid(child, 0)
    print("script returned in", os.getpid(), flush=True)
""")
WINDOW = ("--wait", "2", "--warmup", "1", "--active", "10", "--no-report")


def _profile(tmp_path: Path, *flags: str, action: str = "none", at: int = -1, sleep_s: float = 0.0,
             wait: bool = True, name: str = "pid") -> subprocess.Popen[str] | subprocess.CompletedProcess[str]:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    cmd = [sys.executable, "-m", "tracelens", "profile", *flags, str(script), action, str(at),
           str(tmp_path / name), str(sleep_s)]
    kw: dict[str, Any] = {"cwd": tmp_path, "text": True, "stdin": subprocess.DEVNULL,
                          "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    if not wait:
        return subprocess.Popen(cmd, **kw)
    return subprocess.run(cmd, timeout=180, **kw)


def _run_json(run_dir: Path) -> dict[str, Any]:
    return dict(json.loads((run_dir / "run.json").read_text()))


def _only_final_files(run_dir: Path) -> None:
    """No claim, phase file or worker records are left: the run is complete."""
    assert not [p.name for p in run_dir.iterdir() if p.name.startswith(".")]


def _steps_in(trace: Path) -> int:
    with gzip.open(trace, "rt") as fh:
        return sum(e.get("name", "").startswith("ProfilerStep#") for e in json.load(fh)["traceEvents"])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().split(")")[-1].split()[0] != "Z"


def test_os_exit_mid_window_keeps_the_steps_recorded(tmp_path: Path) -> None:
    # GIVEN a script that calls os._exit(3) in the middle of the window
    proc = _profile(tmp_path, "--out", "run", *WINDOW, action="os_exit", at=7)
    # THEN its status is ours, and run.json and the trace of the steps so far are on disk
    assert proc.returncode == 3, proc.stderr[-2000:]
    run = _run_json(tmp_path / "run")
    assert (run["exit_status"], run["stop_reason"], run["error"]) == (3, "exited", "os._exit(3)")
    assert 1 <= run["window"]["steps"] < 10 and _steps_in(tmp_path / "run" / "trace.json.gz") >= 1
    assert run["outcome"].startswith("exited with status 3 (os._exit) during the window: trace saved (")
    _only_final_files(tmp_path / "run")


@pytest.mark.parametrize(("action", "status", "reason"),
                         [("sigterm", 143, "terminated"), ("sigint", 130, "interrupted")])
def test_a_signal_to_tracelens_mid_window_is_relayed_and_the_trace_saved(
    tmp_path: Path, action: str, status: int, reason: str
) -> None:
    # GIVEN the profile process gets SIGTERM (or SIGINT, not from a terminal) during the window
    proc = _profile(tmp_path, "--out", "run", *WINDOW, action=action, at=7)
    # THEN the script ends as that signal ends it, after its recorded steps were saved
    assert proc.returncode == status, proc.stderr[-2000:]
    run = _run_json(tmp_path / "run")
    assert (run["exit_status"], run["stop_reason"]) == (status, reason)
    assert run["window"]["captured"] and 1 <= run["window"]["steps"] < 10
    if action == "sigterm":
        assert run["signal"] == "SIGTERM"
        assert run["outcome"].startswith("terminated by SIGTERM during the window: trace saved")
    assert (tmp_path / "run" / "trace.json.gz").is_file()
    _only_final_files(tmp_path / "run")


def test_sigkill_of_the_script_is_written_down_by_the_supervisor(tmp_path: Path) -> None:
    # GIVEN a script killed by SIGKILL during the window (nothing in it can save anything)
    proc = _profile(tmp_path, "--out", "run", *WINDOW, action="sigkill", at=7)
    # THEN tracelens exits 128 + 9 and run.json says what happened
    assert proc.returncode == 137, proc.stderr[-2000:]
    run = _run_json(tmp_path / "run")
    assert (run["exit_status"], run["stop_reason"], run["signal"]) == (137, "killed", "SIGKILL")
    assert run["outcome"] == "killed by SIGKILL during the window: trace not saved"
    assert run["pid"] == int((tmp_path / "pid").read_text()) and run["supervisor_pid"] != run["pid"]
    assert run["command"]["argv"][1:3] == ["sigkill", "7"]
    assert "killed by SIGKILL" in proc.stdout
    _only_final_files(tmp_path / "run")


def test_a_fork_that_returns_from_the_script_leaves_the_run_alone(tmp_path: Path) -> None:
    # GIVEN a script that forks during the window; the fork leaves the loop and returns normally
    t0 = time.monotonic()
    proc = _profile(tmp_path, "--out", "run", *WINDOW, action="fork", at=5)
    # THEN both end promptly (nothing hangs), and the run is the parent's, whole
    assert proc.returncode == 0 and time.monotonic() - t0 < 120, proc.stderr[-2000:]
    child = int((tmp_path / "pid.child").read_text())
    assert f"script returned in {child}" in proc.stdout and not _alive(child)
    run = _run_json(tmp_path / "run")
    assert run["pid"] == int((tmp_path / "pid").read_text())
    assert (run["stop_reason"], run["window"]["steps"]) == ("window_captured", 10)
    assert _steps_in(tmp_path / "run" / "trace.json.gz") == 10
    _only_final_files(tmp_path / "run")


def test_a_directory_another_run_writes_is_refused(tmp_path: Path) -> None:
    # GIVEN a run writing --out shared (slowly: 0.2 s per batch)
    first = _profile(tmp_path, "--out", "shared", *WINDOW, sleep_s=0.2, wait=False)
    assert isinstance(first, subprocess.Popen)
    end = time.monotonic() + 60
    while not (tmp_path / "shared" / ".tracelens-phase").exists() and time.monotonic() < end:
        time.sleep(0.1)
    # WHEN a second run is given the same --out, with or without --force
    for force in ((), ("--force",)):
        second = _profile(tmp_path, "--out", "shared", *force, *WINDOW, name="pid2")
        # THEN it is refused in one line, before running anything
        assert isinstance(second, subprocess.CompletedProcess) and second.returncode == 2
        assert "another tracelens run (pid " in second.stderr and "Traceback" not in second.stderr
        assert not (tmp_path / "pid2").exists()
    # AND the first run completes untouched: its whole window in one intact trace
    _, err = first.communicate(timeout=180)
    assert first.returncode == 0, err[-2000:]
    assert _steps_in(tmp_path / "shared" / "trace.json.gz") == 10
    assert _run_json(tmp_path / "shared")["pid"] == int((tmp_path / "pid").read_text())


def test_two_default_runs_started_together_get_two_directories(tmp_path: Path) -> None:
    runs = [_profile(tmp_path, *WINDOW, wait=False, name=f"pid{i}") for i in range(2)]
    for proc in runs:
        assert isinstance(proc, subprocess.Popen)
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err[-2000:]
    dirs = sorted((tmp_path / "tracelens-runs").iterdir())
    assert len(dirs) == 2
    pids = {_run_json(d)["pid"] for d in dirs}
    assert pids == {int((tmp_path / f"pid{i}").read_text()) for i in range(2)}
    assert all(_steps_in(d / "trace.json.gz") == 10 for d in dirs)


def test_force_over_an_old_run_never_leaves_it_reading_as_the_new_one(tmp_path: Path) -> None:
    # GIVEN a complete run (trace, run.json, analysis.json, report.html) in --out old
    assert _profile(tmp_path, "--out", "old", "--wait", "2", "--active", "4").returncode == 0
    assert {"trace.json.gz", "analysis.json", "report.html"} <= {p.name for p in (tmp_path / "old").iterdir()}
    # WHEN a new run with --force dies (SIGKILL) before it records anything
    proc = _profile(tmp_path, "--out", "old", "--force", action="kill_early")
    # THEN only the new run's run.json is there, and it says so
    assert proc.returncode == 137
    assert sorted(p.name for p in (tmp_path / "old").iterdir()) == ["run.json"]
    run = _run_json(tmp_path / "old")
    assert (run["stop_reason"], run["signal"], run["trace"]["path"]) == ("killed", "SIGKILL", None)
    assert run["outcome"] == "killed by SIGKILL before the window: trace not saved"
