"""`tracelens profile` keeps what it recorded through signals, a full disk and a removed run
directory, and says what happened in one line (issue 21): real runs through the command.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytestmark = [pytest.mark.torch, pytest.mark.slow]

# ACTION AT RUN_DIR SLEEP_S: draws batches (window: wait 2, warmup 1, active 10 = batches 3-12)
# and does ACTION at batch AT.
SCRIPT = textwrap.dedent("""
    import os, shutil, signal, sys, threading, time
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    action, at, run_dir, sleep_s = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])

    def term_at_export():
        # SIGTERM to this process as soon as the trace export has begun: torch's file in the
        # run directory (or, as torch alone does it, in $TMPDIR)
        tmpdir = os.environ["TMPDIR"]
        while True:
            names = [n for n in os.listdir(run_dir) if n.startswith((".trace.json", "trace.json"))]
            if names or [n for n in os.listdir(tmpdir) if n.endswith(".json")]:
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(0.0002)

    if action == "term_at_export":
        threading.Thread(target=term_at_export, daemon=True).start()
    if action == "raise":
        raise ValueError("bad config: lr")
    loader = DataLoader(TensorDataset(torch.randn(4000, 4)), batch_size=4)
    for i, (x,) in enumerate(loader):
        (x @ x.T).sum()
        time.sleep(sleep_s)
        if i != at:
            continue
        if action == "group_sigint":  # Ctrl-C at the terminal: every process of the group
            os.killpg(os.getpgrp(), signal.SIGINT)
            time.sleep(30)
        if action == "remove_run_dir":
            shutil.rmtree(run_dir)
""")
WINDOW = ("--wait", "2", "--warmup", "1", "--active", "10", "--no-report")


def _start(tmp_path: Path, *flags: str, action: str = "none", at: int = -1, sleep_s: float = 0.0,
           out: Path | None = None) -> tuple[subprocess.Popen[str], Path]:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    run_dir = out or tmp_path / "run"
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir(exist_ok=True)
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    cmd = [sys.executable, "-m", "tracelens", "profile", "--out", str(run_dir), *flags, str(script), action,
           str(at), str(run_dir), str(sleep_s)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, text=True, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, start_new_session=True)
    return proc, run_dir


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode, out, err


def _analyze(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tracelens", "analyze", "--json", str(path)],
                          capture_output=True, text=True, timeout=120)


def _run_json(run_dir: Path) -> dict[str, Any]:
    return dict(json.loads((run_dir / "run.json").read_text()))


def _no_partial_files(run_dir: Path) -> None:
    """No temporary, hidden or half-written file is left; the trace is whole."""
    assert not [p.name for p in run_dir.iterdir() if p.name.startswith(".")]
    trace = run_dir / "trace.json.gz"
    if trace.exists():
        json.loads(gzip.decompress(trace.read_bytes()))


def _no_traceback(*streams: str) -> None:
    for s in streams:
        assert "Traceback" not in s, s


def test_sigterm_during_the_trace_export_waits_for_it_and_leaves_no_temp_trace(tmp_path: Path) -> None:
    # GIVEN a script that sends itself SIGTERM the moment the trace export begins
    proc, run_dir = _start(tmp_path, *WINDOW, action="term_at_export", sleep_s=0.005)
    status, out, err = _finish(proc)
    # THEN the export finished first: a whole trace analyze accepts, run.json says terminated
    assert status == 143, err
    run = _run_json(run_dir)
    assert run["stop_reason"] == "terminated" and run["window"]["captured"] and run["trace"]["path"] == "trace.json.gz"
    _no_partial_files(run_dir)
    assert _analyze(run_dir).returncode == 0
    # AND torch's uncompressed temporary trace is not left in $TMPDIR
    assert not [n for n in os.listdir(tmp_path / "tmpdir") if n.endswith(".json")]
    _no_traceback(out, err)


def test_ctrl_c_while_recording_leaves_a_trace_analyze_accepts(tmp_path: Path) -> None:
    # GIVEN Ctrl-C (SIGINT to the whole process group) at batch 6, inside the window
    proc, run_dir = _start(tmp_path, *WINDOW, action="group_sigint", at=6, sleep_s=0.01)
    status, _out, err = _finish(proc)
    assert status == 130, err
    run = _run_json(run_dir)
    assert run["stop_reason"] == "interrupted" and run["window"]["captured"]
    _no_partial_files(run_dir)
    analyzed = _analyze(run_dir)
    assert analyzed.returncode == 0, analyzed.stderr
    assert json.loads(analyzed.stdout)["steps"] >= 3
    _no_traceback(err)


@pytest.mark.parametrize(("sig", "reason"), [(signal.SIGINT, "interrupted"), (signal.SIGTERM, "killed")])
@pytest.mark.parametrize("delay_s", [0.3, 1.5, 3.0])
def test_a_signal_at_any_moment_of_the_start_up_is_its_exit_status_without_a_traceback(
        tmp_path: Path, delay_s: float, sig: signal.Signals, reason: str) -> None:
    # GIVEN a run whose window starts after 40 batches of 0.1 s (the script outlives the signal)
    proc, run_dir = _start(tmp_path, "--wait", "40", "--no-report", sleep_s=0.1)
    time.sleep(delay_s)
    # WHEN Ctrl-C or SIGTERM reaches the process group (tracelens loading, importing torch, the
    # script starting)
    os.killpg(proc.pid, sig)
    status, out, err = _finish(proc)
    # THEN it is never lost (SIGINT used to be, ~1.5 s in): 130 / 143 (killed by the signal
    # while the command loads), and no traceback is printed
    assert status in (128 + sig, -sig), (out, err)
    _no_traceback(out, err)
    if (run_dir / "run.json").exists():  # (a signal before the run directory was claimed leaves none)
        run = _run_json(run_dir)
        assert run["stop_reason"] in (reason, "terminated") and run["exit_status"] == 128 + sig
        _no_partial_files(run_dir)


def test_a_run_directory_removed_while_recording_is_one_line(tmp_path: Path) -> None:
    proc, run_dir = _start(tmp_path, *WINDOW, action="remove_run_dir", at=1, sleep_s=0.01)
    status, out, err = _finish(proc)
    assert status == 1 and not run_dir.exists()
    lines = [ln for ln in err.splitlines() if ln.startswith("tracelens")]
    assert lines == [f"tracelens: error: {run_dir}: cannot finish the run: the run directory was removed "
                     "while the script ran: nothing of the run is kept"], err
    _no_traceback(out, err)


def test_a_script_that_raises_gets_its_status_and_no_diagnosis(tmp_path: Path) -> None:
    proc, run_dir = _start(tmp_path, action="raise")
    status, out, err = _finish(proc)
    assert status == 1
    assert "UNDETERMINED" not in out and "Keep your current" not in out and not (run_dir / "analysis.json").exists()
    assert "script stopped: error (exit status 1): failed (ValueError: bad config: lr)" in out
    assert "no diagnosis: no DataLoader steps were recorded" in out
    assert err.count("Traceback") == 1 and "ValueError: bad config: lr" in err  # the script's own


def _mount_tmpfs(at: Path, size: str) -> bool:
    at.mkdir()
    if os.geteuid() != 0:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(at)], capture_output=True)
    return done.returncode == 0


def test_a_full_disk_during_profile_is_one_line_and_leaves_no_partial_files(tmp_path: Path) -> None:
    # GIVEN a run directory on a 64 KiB file system: run.json fits, the trace does not
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "64k"):
        pytest.skip("mounting a small tmpfs needs root (the writer's ENOSPC path is tested in test_atomic)")
    try:
        proc, run_dir = _start(tmp_path, *WINDOW, sleep_s=0.005, out=disk / "run")
        _status, out, err = _finish(proc)
        said = [ln for ln in (out + err).splitlines() if "No space left" in ln or "could not write" in ln]
        assert said and all(str(disk / "run") in ln for ln in said), (out, err)
        _no_traceback(out, err)
        if (run_dir / "run.json").exists():
            assert _run_json(run_dir)["stop_reason"] != "running"
            _no_partial_files(run_dir)
    finally:
        subprocess.run(["umount", str(disk)], check=False)
