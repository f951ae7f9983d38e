"""`tracelens profile` from the command line: arguments pass through, exit status is the script's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytestmark = pytest.mark.torch

SCRIPT = """
import json, sys
import torch
from torch.utils.data import DataLoader, TensorDataset
json.dump(sys.argv, open(sys.argv[-1], "w"))
loader = DataLoader(TensorDataset(torch.randn(64, 4)), batch_size=4)
for i, (x,) in enumerate(loader):
    (x @ x.T).sum()
    if i == 12 and "--fail" in sys.argv:
        sys.exit(7)
"""


def test_profile_keeps_the_script_arguments_and_its_exit_status(tmp_path: Path) -> None:
    # GIVEN a script that records its argv and exits 7 mid-training
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    argv_file = tmp_path / "argv.json"
    out = tmp_path / "run"
    # WHEN profiled with its own flags after the script name, and a window longer than the run
    proc = subprocess.run(
        [sys.executable, "-m", "tracelens", "profile", "--out", str(out), "--wait", "2", "--active", "40",
         "--run-to-completion", str(script), "--lr", "0.1", "--fail", str(argv_file)],
        capture_output=True, text=True, timeout=240, cwd=tmp_path,
    )
    # THEN the script saw exactly its arguments, its status is ours, and the trace was saved
    assert proc.returncode == 7, proc.stderr[-2000:]
    assert json.loads(argv_file.read_text()) == [str(script), "--lr", "0.1", "--fail", str(argv_file)]
    assert (out / "trace.json.gz").is_file() and (out / "run.json").is_file()
    run = json.loads((out / "run.json").read_text())
    assert run["exit_status"] == 7


def test_profile_help_shows_how_to_profile_a_multi_process_job() -> None:
    proc = subprocess.run([sys.executable, "-m", "tracelens", "profile", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert "tracelens profile [OPTIONS] -- torchrun --nproc_per_node=2 train.py ARGS" in proc.stdout
    assert "torchrun --nproc_per_node=2 --no-python tracelens profile [OPTIONS] train.py ARGS" in proc.stdout


def test_a_missing_script_is_one_line(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "tracelens", "profile", "torchrun.py"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "tracelens: error: torchrun.py: no such script"
