"""The supervising process and the guard, without training runs: relaying signals, the kill
deadline, the run.json written for a child that died, the outcome line, forks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import msgspec

from tracelens.capture.parent.supervisor import Relay, settle
from tracelens.capture.recorded.outcome import (
    annotate,
    describe_outcome,
    fallback_run,
    provisional_run,
    read_run,
    write_phase,
    write_run,
)
from tracelens.runjson import RunInfo, Schedule, TraceRef, Window


def test_sigterm_is_relayed_and_the_child_killed_after_the_grace() -> None:
    # GIVEN a child that ignores SIGTERM, and SIGTERM reaching the supervisor
    with Relay(grace_s=1.0) as relay:
        relay.start([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, "
                     "signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"])
        threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM)).start()
        t0 = time.monotonic()
        rc = relay.wait()
    # THEN it is killed one grace period later, and the supervisor knows it was asked to stop
    assert rc == -signal.SIGKILL and relay.escalated and relay.terminated
    assert 1.5 <= time.monotonic() - t0 < 10
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored


def test_a_relayed_sigterm_reaches_the_child() -> None:
    with Relay(grace_s=30.0) as relay:
        relay.start([sys.executable, "-c", "import time; time.sleep(60)"])
        threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM)).start()
        assert relay.wait() == -signal.SIGTERM and not relay.escalated


def _provisional(tmp_path: Path) -> RunInfo:
    run = provisional_run({"kind": "script", "target": "t.py", "argv": ["t.py"]}, os.getpid())
    write_run(tmp_path, run)
    return run


def test_a_child_killed_in_the_window_gets_its_run_json_from_the_supervisor(tmp_path: Path) -> None:
    provisional = _provisional(tmp_path)
    write_phase(tmp_path, "window")
    (tmp_path / ".workers").mkdir()
    status, run = settle(tmp_path, provisional, -9, 4242, time.time() - 3, escalated=False)
    assert status == 137
    assert (run.stop_reason, run.signal, run.pid, run.exit_status) == ("killed", "SIGKILL", 4242, 137)
    assert run.outcome == "killed by SIGKILL during the window: trace not saved"
    assert run.command.target == "t.py" and read_run(tmp_path) == run
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


def test_a_child_that_wrote_its_own_run_json_keeps_it(tmp_path: Path) -> None:
    provisional = _provisional(tmp_path)
    own = msgspec.structs.replace(provisional, stop_reason="exited", exit_status=3, outcome="mine")
    write_run(tmp_path, own)
    status, run = settle(tmp_path, provisional, 3, 1, time.time(), escalated=False)
    assert status == 3 and run.outcome == "mine"


def test_the_outcome_line_says_when_and_what_was_captured(tmp_path: Path) -> None:
    (tmp_path / "trace.json.gz").write_bytes(b"")
    base = RunInfo(schema_version=1, trace=TraceRef(path="trace.json.gz"),
                   schedule=Schedule(wait=2, warmup=1, active=20))
    cut = msgspec.structs.replace(base, stop_reason="terminated", signal="SIGTERM", exit_status=143,
                                  window=Window(started=True, captured=True, steps=7))
    assert describe_outcome(cut, tmp_path) == "terminated by SIGTERM during the window: trace saved (7 of 20 steps)"
    whole = msgspec.structs.replace(base, stop_reason="window_captured",
                                    window=Window(started=True, captured=True, steps=20))
    assert describe_outcome(whole, tmp_path) == "stopped by tracelens once the window was recorded: trace saved (20 steps)"
    early = msgspec.structs.replace(base, stop_reason="error", exit_status=1, error="ValueError: x",
                                    trace=TraceRef(path=None))
    assert describe_outcome(early, tmp_path) == "failed (ValueError: x) before the window: no trace"
    gone = fallback_run(provisional_run({}, 1), tmp_path, 1, None, 7, time.time())
    assert gone.stop_reason == "exited" and "before the script started" in (gone.outcome or "")


def test_annotate_adds_the_signal_and_notes_to_the_session_s_run_json(tmp_path: Path) -> None:
    write_run(tmp_path, RunInfo(schema_version=1, stop_reason="terminated", exit_status=143, notes=["a"]))
    run = annotate(tmp_path, signum=signal.SIGTERM, supervisor_pid=9, notes=("a", "b"))
    assert run is not None and (run.signal, run.supervisor_pid, run.notes) == ("SIGTERM", 9, ["a", "b"])
    assert run.outcome == "terminated by SIGTERM before the window: no trace"


def test_a_fork_never_finishes_the_session_and_os_exit_does(tmp_path: Path) -> None:
    # GIVEN a guard whose finish records who called it, a fork that calls os._exit, then the owner
    log = tmp_path / "log"
    code = textwrap.dedent(f"""
        import os
        from tracelens.capture.script.guard import ExitGuard
        def finish(status, reason, error, signum):
            open({str(log)!r}, "a").write(f"{{os.getpid()}} {{status}} {{reason}} {{error}}\\n")
        guard = ExitGuard(finish)
        guard.arm()
        child = os.fork()
        if child == 0:
            os._exit(5)
        _, st = os.waitpid(child, 0)
        open({str(log)!r}, "a").write(f"child {{os.waitstatus_to_exitcode(st)}}\\n")
        os._exit(3)
    """)
    proc = subprocess.run([sys.executable, "-c", code], timeout=60)
    # THEN only the owner finished, with os._exit's status; the fork kept its own status
    assert proc.returncode == 3
    lines = log.read_text().splitlines()
    assert len(lines) == 2 and lines[0] == "child 5"
    assert lines[1].split()[1:] == ["3", "exited", "os._exit(3)"]
