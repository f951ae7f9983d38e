"""Errors cross process boundaries (process pools, Dask workers) intact."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

from tests.builders import TraceBuilder, starved_loop
from tracelens.errors import BadInputError, TracelensError, UsageError


def test_errors_survive_pickling_with_their_message_and_exit_code() -> None:
    bad = pickle.loads(pickle.dumps(BadInputError("/x/rank3.json", "is not JSON")))
    assert isinstance(bad, BadInputError)
    assert (str(bad), bad.path, bad.problem, bad.exit_code) == ("/x/rank3.json: is not JSON", "/x/rank3.json", "is not JSON", 1)
    gate = pickle.loads(pickle.dumps(TracelensError("gate", exit_code=3)))
    assert (str(gate), gate.exit_code) == ("gate", 3)
    assert pickle.loads(pickle.dumps(UsageError("usage"))).exit_code == 2


def test_a_bad_rank_in_the_local_process_pool_gets_its_own_verdict_and_the_others_are_analyzed(tmp_path: Path) -> None:
    for r in range(2):
        starved_loop(TraceBuilder(rank=r), steps=2).write(tmp_path / f"rank{r}.json")
    (tmp_path / "rank2.json").write_text("{not json")
    out = subprocess.run([sys.executable, "-m", "tracelens", "analyze", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    lines = out.stderr.strip().splitlines()
    # THEN the good ranks are printed, the bad one is its own line, and the exit status says so
    assert out.returncode == 1 and len(lines) == 2, out.stderr
    assert str(tmp_path / "rank2.json") in lines[0] and "internal error" not in out.stderr
    assert lines[1].endswith("1 of 3 ranks failed; the results above are for the other 2")
    assert "rank 0" in out.stdout.lower() or "Slowest rank" in out.stdout
