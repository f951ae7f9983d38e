"""The sweep's trial process, in this process: rounds granted one at a time, the free loader of
the ceiling trial (cached batches, the epoch length kept, in-place changes seen), and the thread
settings (main process held against the script's own call, workers after their init)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from tracelens.capture.script.measure import RoundGrant, run_trial  # noqa: E402
from tracelens.capture.script.replay import BatchCache  # noqa: E402

SCRIPT = """
import sys, torch
from torch.utils.data import DataLoader, TensorDataset
out, workers, inplace = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
torch.set_num_threads(3)
loader = DataLoader(TensorDataset(torch.randn(40, 4)), batch_size=4, num_workers=workers)
model = torch.nn.Linear(4, 1)
with open(out, "a") as fh:
    fh.write(f"threads {torch.get_num_threads()}\\n")
    for epoch in range(1000):
        n = 0
        for (x,) in loader:
            if inplace:
                x.mul_(1.0)
            model(x).sum().backward()
            fh.write(f"ptr {x.data_ptr()}\\n")
            n += 1
        fh.write(f"epoch {n} {type(iter(loader)).__name__}\\n")
"""


class Scripted:
    """Grants ``rounds`` rounds of ``steps`` steps, then stops; keeps what it was told."""

    settle_ready_s = 0.0

    def __init__(self, rounds: int, steps: int) -> None:
        self.rounds, self.steps = rounds, steps
        self.ready_info: dict[str, Any] = {}
        self.results: list[dict[str, Any]] = []

    def _grant(self, k: int) -> RoundGrant | None:
        return RoundGrant(k, self.steps, 0, 10**9, discard=1) if k <= self.rounds else None

    def ready(self, info: dict[str, Any]) -> RoundGrant | None:
        self.ready_info = info
        return self._grant(1)

    def round_done(self, result: dict[str, Any]) -> RoundGrant | None:
        self.results.append(result)
        return self._grant(len(self.results) + 1)


def run(tmp_path: Path, *, workers: int = 0, inplace: bool = False, replay: BatchCache | None = None,
        main_threads: int | None = None, rounds: int = 2, steps: int = 25) -> tuple[dict[str, Any], Scripted, list[str]]:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    out = tmp_path / "out.txt"
    control = Scripted(rounds, steps)
    res = run_trial(str(script), [str(out), str(workers), "1" if inplace else "0"], {}, steps=steps,
                    control=control, replay=replay, main_threads=main_threads)
    return res, control, out.read_text().splitlines()


def test_rounds_are_granted_one_at_a_time_and_skip_their_first_steps(tmp_path: Path) -> None:
    res, control, _ = run(tmp_path, rounds=3, steps=12)
    assert [r["round"] for r in control.results] == [1, 2, 3]
    assert all(len(r["step_ns"]) == 12 and r["discarded"] == 1 for r in control.results)
    assert control.ready_info["loader_choice"] == "training" and res["stop_reason"] == "steps_measured"
    assert len(res["step_ns"]) == 36 and res["unusable"] is None


def test_the_free_loader_reuses_its_cached_batches_and_keeps_the_epoch_length(tmp_path: Path) -> None:
    # GIVEN 10 batches per epoch, 2 workers, and a cache of 4 batches
    res, _, lines = run(tmp_path, workers=2, replay=BatchCache(4), rounds=2, steps=25)
    info = res["replay"]
    assert info["batches"] == 4 and info["served"] >= 50 and not info["copied_on_serve"]
    # THEN every epoch still ends after 10 batches, new epochs get no new workers
    epochs = [ln.split() for ln in lines if ln.startswith("epoch")]
    assert epochs and all(e[1] == "10" for e in epochs)
    assert epochs[-1][2] == "ReplayIterator"
    # AND the batches after the cache filled are the cached tensors themselves, not copies
    ptrs = [ln for ln in lines if ln.startswith("ptr")]
    assert len(set(ptrs[-40:])) <= 4


def test_a_loop_that_changes_its_batches_in_place_gets_copies(tmp_path: Path) -> None:
    res, _, lines = run(tmp_path, replay=BatchCache(4), inplace=True)
    assert res["replay"]["copied_on_serve"] is True
    ptrs = [ln for ln in lines if ln.startswith("ptr")]
    assert len(set(ptrs[-20:])) > 4  # fresh copies each time


def test_the_main_threads_setting_holds_against_the_script_s_own_call(tmp_path: Path) -> None:
    before, original = torch.get_num_threads(), torch.set_num_threads
    res, _, lines = run(tmp_path, main_threads=1, rounds=1, steps=10)
    assert "threads 1" in lines and res["script_thread_calls"] == [3]
    # AND afterwards torch's own function is back
    assert torch.set_num_threads is original
    torch.set_num_threads(before)


def test_worker_threads_are_set_after_the_worker_s_own_init(tmp_path: Path) -> None:
    from tracelens.capture.dataloader.worker import WorkerInit, unpatch_fetch

    def user_init(worker_id: int) -> None:
        torch.set_num_threads(4)

    before = torch.get_num_threads()
    try:
        WorkerInit(user_init, str(tmp_path), 0, threads=2)(0)  # as a worker runs it
        assert torch.get_num_threads() == 2
        WorkerInit(user_init, str(tmp_path), 0)(1)  # no setting: the user's own count stays
        assert torch.get_num_threads() == 4
    finally:
        unpatch_fetch()
        torch.set_num_threads(before)
