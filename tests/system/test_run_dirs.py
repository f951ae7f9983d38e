"""Run directories are claimed by one process at a time (fast: no training runs)."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from tracelens.errors import UsageError
from tracelens.system.rundirs import (
    CLAIM_FILE,
    claim_dir,
    claim_holder,
    claim_new_dir,
    holder_alive,
    owned_by_me,
    release_claim,
)

NOW = datetime(2026, 11, 25, 10, 30, 0)


def _claim_in_child(root: str, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    d = claim_new_dir(Path(root), "train", NOW)
    queue.put(str(d))


def test_two_default_runs_in_the_same_second_get_two_directories(tmp_path: Path) -> None:
    # GIVEN four processes that ask for a default run directory with the same timestamp
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_claim_in_child, args=(str(tmp_path), queue)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    got = sorted(queue.get(timeout=5) for _ in procs)
    # THEN each got its own directory: the name, then -2, -3, -4
    assert [Path(g).name for g in got] == ["train-20261125-103000", "train-20261125-103000-2",
                                           "train-20261125-103000-3", "train-20261125-103000-4"]


def test_a_directory_a_live_process_writes_is_refused_even_with_force(tmp_path: Path) -> None:
    # GIVEN a directory claimed by another live process
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from tracelens.system.rundirs import claim_dir; "
                               "claim_dir(Path(sys.argv[1]), force=False); print('ok', flush=True); time.sleep(60)",
         str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ok"
        # THEN claiming it fails with one line naming that process, with or without --force
        for force in (False, True):
            with pytest.raises(UsageError, match=rf"another tracelens run \(pid {holder.pid} on "):
                claim_dir(tmp_path / "run", force=force)
    finally:
        holder.kill()
        holder.wait()
    # AND once that process is gone its claim is stale: refused without --force, taken with it
    with pytest.raises(UsageError, match="ended without finishing; pass --force"):
        claim_dir(tmp_path / "run", force=False)
    claim_dir(tmp_path / "run", force=True)
    assert owned_by_me(tmp_path / "run")


def test_force_clears_only_tracelens_files(tmp_path: Path) -> None:
    # GIVEN an old run directory with tracelens' files, a rank directory and a file of the user's
    d = tmp_path / "run"
    (d / ".workers").mkdir(parents=True)
    for name in ("trace.json.gz", "run.json", "analysis.json", "report.html", "notes.txt"):
        (d / name).write_text("old")
    (d / "rank-3").mkdir()
    (d / "rank-3" / "run.json").write_text("old")
    # WHEN it is claimed without --force: refused, and the claim is not left behind
    with pytest.raises(UsageError, match="exists and is not empty; pass --force"):
        claim_dir(d, force=False)
    assert claim_holder(d) is None
    # WHEN claimed with --force: the old run's files are gone, the user's file is kept
    claim_dir(d, force=True)
    assert sorted(p.name for p in d.iterdir()) == [CLAIM_FILE, "notes.txt"]
    release_claim(d)
    assert claim_holder(d) is None


def test_a_claim_records_the_process_and_detects_a_reused_pid(tmp_path: Path) -> None:
    claim_dir(tmp_path, force=False)
    holder = claim_holder(tmp_path)
    assert holder is not None and holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
    assert holder_alive(holder) is True
    assert holder_alive({**holder, "process_start": holder["process_start"] - 100}) is False  # pid reused
    assert holder_alive({**holder, "host": "elsewhere"}) is None
    (tmp_path / CLAIM_FILE).write_text("{not json")
    assert claim_holder(tmp_path) == {} and holder_alive({}) is None
    json.loads((tmp_path / CLAIM_FILE).read_text().replace("{not json", "{}"))
