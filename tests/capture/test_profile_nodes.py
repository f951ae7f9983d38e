"""A two-node torchrun job on one machine (issue 20 item 6): two launchers, one rank each, gloo on
CPU, each ``tracelens profile --out OUT -- torchrun --nnodes=2 --node_rank=K ...`` into one shared
OUT (as on a shared file system). They join OUT instead of refusing each other, the last to
finish writes the analysis of both ranks, and when one node fails the other stops at once."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytestmark = [pytest.mark.torch]

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "ddp_torchrun.py"
EXAMPLE_ARGS = ["--samples", "384"]
WINDOW = ["--wait", "2", "--active", "6"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return int(s.getsockname()[1])


def _launcher(out: str, port: int, node: int, cwd: Path, *script_args: str) -> subprocess.Popen[str]:
    torchrun = ["--nnodes=2", "--nproc_per_node=1", "--rdzv_backend=c10d",
                f"--rdzv_endpoint=localhost:{port}", f"--node_rank={node}"]
    cmd = [sys.executable, "-m", "tracelens", "profile", "--out", out, *WINDOW, "--", "torchrun", *torchrun,
           str(EXAMPLE), *EXAMPLE_ARGS, *script_args]
    return subprocess.Popen(cmd, cwd=cwd, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=240)
    return proc.returncode, out


def _ranks_of(doc_dir: Path) -> list[int]:
    return [d["rank"] for d in json.loads((doc_dir / "analysis.json").read_text())["ranks"]]


@pytest.mark.slow
def test_two_nodes_share_one_out_and_the_last_launcher_writes_the_analysis_of_both(tmp_path: Path) -> None:
    # GIVEN two launchers of one 2-node job, both writing OUT
    port = _free_port()
    node0 = _launcher("out", port, 0, tmp_path)
    node1 = _launcher("out", port, 1, tmp_path)
    (rc0, out0), (rc1, out1) = _finish(node0), _finish(node1)
    # THEN neither refused the other, each rank has its own directory, and one analysis names both
    assert (rc0, rc1) == (0, 0), (out0[-2000:], out1[-2000:])
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["rank-0", "rank-1"]
    assert _ranks_of(out) == [0, 1] and (out / "report.html").is_file()
    assert (out0 + out1).count("2 ranks in out") == 1  # the verdict, once, from the last launcher
    assert "written by the last node to finish" in out0 + out1
    assert not [p.name for p in out.iterdir() if p.name.startswith((".tracelens-claim", ".tracelens-node"))]


@pytest.mark.slow
def test_node_local_outs_gathered_later_combine_with_analyze(tmp_path: Path) -> None:
    # GIVEN each node wrote its own OUT (no shared file system)
    port = _free_port()
    node0, node1 = _launcher("node0", port, 0, tmp_path), _launcher("node1", port, 1, tmp_path)
    (rc0, out0), (rc1, out1) = _finish(node0), _finish(node1)
    assert (rc0, rc1) == (0, 0), (out0[-2000:], out1[-2000:])
    # WHEN the rank directories are gathered into one directory and analyzed
    gathered = tmp_path / "gathered"
    for node in ("node0", "node1"):
        for rank_dir in (tmp_path / node).glob("rank-*"):
            shutil.copytree(rank_dir, gathered / rank_dir.name)
    proc = subprocess.run([sys.executable, "-m", "tracelens", "analyze", str(gathered), "--json"], cwd=tmp_path,
                          text=True, capture_output=True, timeout=120)
    # THEN one analysis of both ranks
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [d["rank"] for d in json.loads(proc.stdout)["ranks"]] == [0, 1]


@pytest.mark.slow
def test_when_one_node_fails_the_other_node_stops_instead_of_waiting(tmp_path: Path) -> None:
    # GIVEN node 1's rank fails at start (a bad argument), node 0's waits for it in the collective
    port = _free_port()
    node0 = _launcher("out", port, 0, tmp_path)
    node1 = _launcher("out", port, 1, tmp_path, "--slow-ms", "bad")
    rc1, _ = _finish(node1)
    failed_at = time.monotonic()
    rc0, out0 = _finish(node0)
    # THEN node 0 stopped within the grace its rank gets to save its recording (20 s), not gloo's
    # 30 min timeout, and said why
    assert rc1 != 0 and rc0 != 0
    assert time.monotonic() - failed_at < 45, out0[-2000:]
    # (stopped by the watch, or failed by itself when its rank lost its peer first: both name node 1)
    assert ("ended with status 1: this node's torchrun was stopped" in out0
            or "ended with status 1 first: this node's torchrun failed after it" in out0), out0[-2000:]


def test_a_launcher_refused_by_a_busy_out_exits_at_once_with_one_line(tmp_path: Path) -> None:
    # GIVEN OUT claimed by a live single-process run (this process)
    from tracelens.system.rundirs import claim_dir

    claim_dir(tmp_path / "out", force=False)
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "tracelens", "profile", "--out", "out", "--", "torchrun",
                           "--nnodes=2", f"--rdzv_endpoint=localhost:{_free_port()}", "--rdzv_backend=c10d",
                           str(EXAMPLE)], cwd=tmp_path, text=True, capture_output=True, timeout=120)
    # THEN refused before torchrun started (no rendezvous to leave hanging), in one line
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "is writing this directory" in proc.stderr
    assert time.monotonic() - started < 30
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) in (
        [".tracelens-claim"], sorted([".tracelens-claim", ".tracelens-combine.lock"]))
