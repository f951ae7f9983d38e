"""Decode workers never outlive the process that started them, however it dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="signals as on Linux")

EVENT = b'{"ph": "X", "cat": "cpu_op", "name": "aten::add", "pid": 1, "tid": 1, "ts": 1.5, "dur": 2.5},\n'


@pytest.fixture(scope="module")
def big_trace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A 96 MB plain trace: over load.limits.PARALLEL_MIN_BYTES, so it is decoded by worker processes."""
    path = tmp_path_factory.mktemp("big") / "big.json"
    block = EVENT * ((1 << 20) // len(EVENT))
    with path.open("wb") as f:
        f.write(b'{"traceEvents": [\n')
        for _ in range(96):
            f.write(block)
        f.write(EVENT.rstrip(b",\n") + b"]}")
    yield path
    path.unlink()


def _start(code: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for_workers(parent: subprocess.Popen[bytes], count: int, timeout_s: float = 30.0) -> list[psutil.Process]:
    """The parent's child processes once there are ``count`` (the test fails if never)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert parent.poll() is None, parent.communicate()[1].decode()
        children = psutil.Process(parent.pid).children(recursive=True)
        if len(children) >= count:
            return children
        time.sleep(0.01)
    raise AssertionError(f"no {count} worker processes within {timeout_s} s")


def _gone(p: psutil.Process) -> bool:
    try:
        return p.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _assert_all_gone(workers: list[psutil.Process], within_s: float = 5.0) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline and not all(_gone(w) for w in workers):
        time.sleep(0.05)
    alive = [w.pid for w in workers if not _gone(w)]
    for pid in alive:  # do not leave them behind for the rest of the suite
        os.kill(pid, signal.SIGKILL)
    assert not alive, f"worker processes {alive} outlived their parent"


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_pool_workers_die_with_their_parent(sig: signal.Signals) -> None:
    parent = _start("""
        import time
        from tracelens.system.procs import worker_pool
        pool = worker_pool(2)
        futures = [pool.submit(time.sleep, 60) for _ in range(2)]
        time.sleep(60)
    """)
    workers = _wait_for_workers(parent, 2)
    parent.send_signal(sig)
    parent.communicate(timeout=10)  # returns: no worker holds the parent's pipes open
    _assert_all_gone(workers)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_analyze_killed_mid_decode_leaves_no_worker_and_no_traceback(big_trace: Path, sig: signal.Signals) -> None:
    parent = _start(f"""
        from tracelens.api import analyze_path
        analyze_path({str(big_trace)!r})
    """)
    workers = _wait_for_workers(parent, 2)
    parent.send_signal(sig)
    _, err = parent.communicate(timeout=10)
    assert parent.returncode == -sig
    assert b"Traceback" not in err
    _assert_all_gone(workers)


def test_workers_ignore_ctrl_c_so_only_the_parent_reports_it() -> None:
    parent = _start("""
        import os, signal, time
        from tracelens.system.procs import worker_pool
        pool = worker_pool(1)
        pool.submit(time.sleep, 0).result()
        worker = next(iter(pool._processes.values()))
        os.kill(worker.pid, signal.SIGINT)
        print(pool.submit(sum, [1, 2]).result(timeout=10))
        pool.shutdown()
    """)
    out, err = parent.communicate(timeout=30)
    assert out.strip() == b"3", err.decode()
    assert b"KeyboardInterrupt" not in err
