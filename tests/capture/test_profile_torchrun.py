"""Distributed jobs are first-class (issue 10): examples/ddp_torchrun.py, 2 ranks on gloo, rank 1
slow, under both torchrun forms. Each rank gets its own run directory; the job directory holds
the combined analysis, whose per-rank entries carry each rank's run.json evidence."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytestmark = [pytest.mark.torch, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "ddp_torchrun.py"
# 384 samples: 12 batches of 16 per rank and epoch; rank 1 reads 2 ms slower per sample.
EXAMPLE_ARGS = ["--samples", "384", "--slow-rank", "1", "--slow-ms", "2"]
WINDOW = ["--wait", "2", "--active", "6"]


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, text=True, capture_output=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    return proc


def _check_job(job: Path) -> dict[str, Any]:
    """One run directory per rank, none shared, and the combined analysis built from their run.json."""
    ranks = sorted(p.name for p in job.iterdir() if p.is_dir())
    assert ranks == ["rank-0", "rank-1"]
    runs = {r: json.loads((job / r / "run.json").read_text()) for r in ranks}
    assert [runs[r]["machine"]["rank"] for r in ranks] == [0, 1]
    assert len({runs[r]["pid"] for r in ranks}) == 2  # two processes, one directory each
    for r in ranks:
        assert runs[r]["stop_reason"] == "window_captured" and runs[r]["window"]["steps"] == 6
        assert (job / r / "trace.json.gz").is_file() and (job / r / "analysis.json").is_file()
        assert not [p.name for p in (job / r).iterdir() if p.name.startswith(".")]  # claims released
    doc = json.loads((job / "analysis.json").read_text())
    assert (job / "report.html").is_file()
    assert [d["rank"] for d in doc["ranks"]] == [0, 1] and doc["slowest_rank"] == 1
    for d in doc["ranks"]:
        loader = d["loader"]  # known from run.json only: a bare trace has none of these
        assert (loader["num_workers"], loader["batch_size"]) == (0, 16)
        assert loader["dataset_class"].endswith("ShardedReads") and loader["dataset_len"] == 384
    return dict(doc)


def test_profile_launches_torchrun_and_records_every_rank(tmp_path: Path) -> None:
    # GIVEN `tracelens profile -- torchrun ...` (torchrun need not be on PATH)
    proc = _run([sys.executable, "-m", "tracelens", "profile", "--out", "job", *WINDOW, "--",
                 "torchrun", "--nproc_per_node=2", str(EXAMPLE), *EXAMPLE_ARGS], tmp_path)
    # THEN every rank, not the launcher, was recorded, and the job's verdict was printed once
    doc = _check_job(tmp_path / "job")
    assert "2 ranks in job" in proc.stdout and proc.stdout.count("Slowest rank 1") == 1
    assert "launcher exited with status 0" in proc.stdout
    # AND `tracelens analyze` reads the job directory the same way
    again = _run([sys.executable, "-m", "tracelens", "analyze", "job", "--json"], tmp_path)
    redo = json.loads(again.stdout)
    assert [d["loader"]["batch_size"] for d in redo["ranks"]] == [16, 16]
    assert redo["diagnosis"] == doc["diagnosis"]


def test_torchrun_no_python_tracelens_profile_shares_one_job_directory(tmp_path: Path) -> None:
    # GIVEN `torchrun --no-python tracelens profile train.py` with the default directory
    exe = Path(sys.executable).parent / "tracelens"
    tracelens = [str(exe)] if exe.is_file() else [sys.executable, "-m", "tracelens"]
    proc = _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--no-python",
                 *tracelens, "profile", *WINDOW, str(EXAMPLE), *EXAMPLE_ARGS], tmp_path)
    # THEN both ranks wrote into one job directory, and the last one combined them
    (job,) = (tmp_path / "tracelens-runs").iterdir()
    assert job.name.startswith("ddp_torchrun-")
    _check_job(job)
    assert proc.stdout.count("Slowest rank 1") == 1
