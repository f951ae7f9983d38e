"""Launchers of one multi-node job share one output directory: claims per node, not per
directory (fast: the launchers are stand-in processes whose pids this process borrows)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tracelens.errors import UsageError
from tracelens.system import nodeclaims
from tracelens.system.rundirs import CLAIM_FILE, claim_dir

JOB = "c10d|localhost:29500|none|2"


@pytest.fixture
def launchers() -> Iterator[list[int]]:
    """The pids of three live stand-in processes (:func:`as_launcher` makes this process one)."""
    procs = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"]) for _ in range(3)]
    try:
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait()


def as_launcher(monkeypatch: pytest.MonkeyPatch, pid: int) -> None:
    monkeypatch.setattr(os, "getpid", lambda: pid)


def test_launchers_of_one_job_share_the_directory_and_the_last_to_finish_ends_it(
        tmp_path: Path, launchers: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    as_launcher(monkeypatch, launchers[0])
    assert nodeclaims.join(out, JOB, 2, force=False) is True
    as_launcher(monkeypatch, launchers[1])
    assert nodeclaims.join(out, JOB, 2, force=False) is False  # joined, not refused
    assert nodeclaims.is_member(out, launchers[0]) and nodeclaims.is_member(out, launchers[1])
    # a third launcher of a 2-node job is a node started twice
    as_launcher(monkeypatch, launchers[2])
    with pytest.raises(UsageError, match=r"the 2 node\(s\) of this job are already writing"):
        nodeclaims.join(out, JOB, 2, force=False)
    as_launcher(monkeypatch, launchers[0])
    with nodeclaims.leave(out, JOB, 0) as last:
        assert last is False
    assert (out / CLAIM_FILE).is_file()  # the job still runs on the other node
    as_launcher(monkeypatch, launchers[1])
    with nodeclaims.leave(out, JOB, 0) as last:
        assert last is True
    assert not (out / CLAIM_FILE).exists() and nodeclaims.nodes(out) == []


def test_another_job_or_a_single_run_is_refused_while_the_job_runs(
        tmp_path: Path, launchers: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    as_launcher(monkeypatch, launchers[0])
    nodeclaims.join(out, JOB, 2, force=True)
    as_launcher(monkeypatch, launchers[1])
    with pytest.raises(UsageError, match=r"another tracelens run .* is writing this directory"):
        nodeclaims.join(out, "c10d|otherhost:29500|none|2", 2, force=True)
    with pytest.raises(UsageError, match=r"another tracelens run .* is writing this directory"):
        claim_dir(out, force=True)


def test_a_launcher_that_failed_is_seen_by_the_other_nodes(
        tmp_path: Path, launchers: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    for pid in launchers[:2]:
        as_launcher(monkeypatch, pid)
        nodeclaims.join(out, JOB, 2, force=False)
    assert nodeclaims.failed_sibling(out, JOB) is None
    with nodeclaims.leave(out, JOB, 1):
        pass
    as_launcher(monkeypatch, launchers[0])
    failed = nodeclaims.failed_sibling(out, JOB)
    assert failed is not None and (failed.pid, failed.status) == (launchers[1], 1)


def test_a_job_whose_launchers_are_all_gone_is_claimed_afresh(
        tmp_path: Path, launchers: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    as_launcher(monkeypatch, dead.pid)
    nodeclaims.join(out, JOB, 2, force=False)
    (out / "rank-0").mkdir()
    # the same command line rerun after a crash: an unfinished run, replaced only with --force
    as_launcher(monkeypatch, launchers[0])
    with pytest.raises(UsageError, match="ended without finishing; pass --force"):
        nodeclaims.join(out, JOB, 2, force=False)
    assert nodeclaims.join(out, JOB, 2, force=True) is True
    assert not (out / "rank-0").exists() and [n.pid for n in nodeclaims.nodes(out)] == [launchers[0]]


def test_a_launcher_that_failed_after_another_node_names_that_node(
        tmp_path: Path, launchers: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    from tracelens.capture.parent import nodes
    from tracelens.capture.parent.nodes import NodeJob, SiblingWatch

    # GIVEN node 1's launcher ended with status 1, and this node's launcher then failed by itself
    # before the watch's first look
    monkeypatch.setattr(nodes, "WATCH_PERIOD_S", 600.0)
    out = tmp_path / "out"
    for pid in launchers[:2]:
        as_launcher(monkeypatch, pid)
        nodeclaims.join(out, JOB, 2, force=False)
    with nodeclaims.leave(out, JOB, 1):
        pass
    as_launcher(monkeypatch, launchers[0])
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(1)"])
    with SiblingWatch(out, NodeJob(JOB, 2), proc) as watch:
        proc.wait()
    # THEN the reason names the node that failed first
    assert watch.reason is not None and "ended with status 1 first" in watch.reason
    assert str(launchers[1]) in watch.reason


def test_a_launcher_that_succeeded_gets_no_reason(tmp_path: Path, launchers: list[int],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from tracelens.capture.parent.nodes import NodeJob, SiblingWatch

    out = tmp_path / "out"
    for pid in launchers[:2]:
        as_launcher(monkeypatch, pid)
        nodeclaims.join(out, JOB, 2, force=False)
    as_launcher(monkeypatch, launchers[0])
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    with SiblingWatch(out, NodeJob(JOB, 2), proc) as watch:
        proc.wait()
    assert watch.reason is None
