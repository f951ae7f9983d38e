"""Which loader a capture session windows, records and times: training evidence from backward
passes, where a loader was built and by which framework, and what happens to other loaders'
batches during the window (in-process loops: fast)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from tracelens.capture import profile  # noqa: E402
from tracelens.capture.dataloader.origin import loader_origin  # noqa: E402
from tracelens.capture.dataloader.registry import CO_DRAW_STREAK, LoaderRegistry  # noqa: E402

pytestmark = pytest.mark.torch


def _loader(n: int, batch: int = 4) -> DataLoader[Any]:
    return DataLoader(TensorDataset(torch.randn(n, 4)), batch_size=batch)


def _train_step(model: torch.nn.Module, x: torch.Tensor) -> None:
    model(x).sum().backward()


def _events(run_dir: Path) -> list[dict[str, Any]]:
    with gzip.open(run_dir / "trace.json.gz", "rt") as fh:
        return [e for e in json.load(fh)["traceEvents"] if e.get("ph") == "X"]


def _inside(e: dict[str, Any], steps: list[dict[str, Any]]) -> bool:
    return any(s["ts"] <= e["ts"] < s["ts"] + s["dur"] for s in steps)


# --- where a loader was built ------------------------------------------------------------------

def _built_in(module: str, code: str = "DataLoader([1, 2])") -> tuple[str | None, str | None]:
    """Build a loader from code whose frames claim to be ``module`` (a framework's code)."""
    scope: dict[str, Any] = {"__name__": module, "DataLoader": DataLoader, "loader_origin": loader_origin}
    exec(compile(f"def build():\n    {code}\n    return loader_origin()\n", f"<{module}>", "exec"), scope)
    return scope["build"]()  # type: ignore[no-any-return]


def test_a_loader_built_by_the_script_names_the_script_line_and_no_framework() -> None:
    created_at, framework = loader_origin()
    assert created_at is not None and created_at.startswith("tests/capture/test_capture_choice.py:")
    assert created_at.endswith("in test_a_loader_built_by_the_script_names_the_script_line_and_no_framework")
    assert framework is None


@pytest.mark.parametrize(("module", "framework"), [
    ("transformers.trainer", "transformers"), ("lightning.pytorch.trainer", "lightning"),
    ("pytorch_lightning.trainer", "lightning"), ("accelerate.data_loader", "accelerate"),
])
def test_a_loader_built_inside_a_framework_names_it_and_the_script_line_that_called(
        module: str, framework: str) -> None:
    created_at, found = _built_in(module)
    # THEN the framework is named, and the place is the first frame outside it: this test
    assert found == framework
    assert created_at is not None and "test_capture_choice.py" in created_at


def test_accelerate_under_a_hugging_face_trainer_is_the_trainer_s_loader() -> None:
    # GIVEN accelerate's re-built loader, called from transformers' Trainer
    scope: dict[str, Any] = {"__name__": "transformers.trainer",
                             "inner": lambda: _built_in("accelerate.data_loader")}
    exec("def train():\n    return inner()\n", scope)
    assert scope["train"]()[1] == "transformers"


# --- training evidence ----------------------------------------------------------------------------

def _registry(n: int, tmp_path: Path) -> LoaderRegistry:
    reg = LoaderRegistry({}, tmp_path)
    for _ in range(n):
        reg.register(_loader(8))
    return reg


def _draw(reg: LoaderRegistry, loader_id: int, n: int = 1) -> None:
    for _ in range(n):
        reg.count_batch(loader_id)


def test_a_backward_pass_credits_the_loader_drawn_last_and_never_a_validation_loader(tmp_path: Path) -> None:
    reg = _registry(2, tmp_path)
    # GIVEN training steps (loader 0) with a validation pass (loader 1, 5 batches) in between
    for step in range(8):
        _draw(reg, 0)
        assert reg.on_backward(0) == 0
        if step % 3 == 2:
            _draw(reg, 1, 5)
    # WHEN the next training batch is drawn after a validation pass, and its backward runs
    _draw(reg, 0)
    reg.on_backward(0)
    # THEN only the training loader has fed backward passes
    assert [r.training for r in reg.records] == [True, False]
    # AND a second backward of the same step (no batch drawn since) credits nobody
    assert reg.on_backward(0) is None


def test_two_loaders_drawn_once_per_step_both_train(tmp_path: Path) -> None:
    reg = _registry(2, tmp_path)
    # GIVEN for x, u in zip(labeled, unlabeled): one batch of each, then backward
    for _ in range(CO_DRAW_STREAK):
        _draw(reg, 0)
        _draw(reg, 1)
        reg.on_backward(1)
    assert [r.training for r in reg.records] == [True, True]


def test_a_loader_never_iterated_has_no_training_verdict(tmp_path: Path) -> None:
    reg = _registry(2, tmp_path)
    _draw(reg, 1)
    reg.on_backward(1)
    assert [r.training for r in reg.records] == [None, True]


# --- the window -----------------------------------------------------------------------------------

def test_a_sanity_check_before_training_does_not_steer_the_window(tmp_path: Path) -> None:
    # GIVEN a validation loader iterated for 2 batches first (Lightning's sanity check), then
    # training epochs of 6 batches with a full validation pass after each
    model = torch.nn.Linear(4, 1)
    with profile(tmp_path / "run", active=10, no_report=True, stop_after_window=True) as session:
        train, val = _loader(24), _loader(16)
        with torch.no_grad():
            for i, (x,) in enumerate(val):
                model(x)
                if i == 1:
                    break
        for _ in range(5):
            for (x,) in train:
                _train_step(model, x)
            with torch.no_grad():
                for (x,) in val:
                    model(x)
    assert session.result is not None
    run = json.loads(session.result.run_json_path.read_text())
    # THEN the training loader is windowed with the default wait, and 10 steps are recorded
    assert run["window"]["loader_id"] == 0 and run["schedule"]["wait"] == 3
    assert session.result.steps_captured == 10
    assert [lo["training"] for lo in run["loaders"]] == [True, False]  # built train first
    assert all("test_capture_choice.py" in lo["created_at"] for lo in run["loaders"])
    # AND the validation batches drawn during the window lie between steps, not inside them
    events = _events(session.result.run_dir)
    steps = [e for e in events if e["name"].startswith("ProfilerStep#")]
    nexts = [e for e in events if e["name"].startswith("enumerate(DataLoader)")]
    assert len(steps) == 10
    assert sum(not _inside(e, steps) for e in nexts) >= 4  # 4 validation batches per pass
    assert sum(_inside(e, steps) for e in nexts) >= 10
    assert any("not steps" in n for n in run["notes"])


def test_a_provisional_window_gives_way_to_the_training_loader(tmp_path: Path) -> None:
    # GIVEN an evaluation of 4 batches before training, and wait=1: the evaluation loader
    # reaches the wait first and is recorded until a backward pass shows the training loader
    train, val = _loader(64), _loader(16)
    model = torch.nn.Linear(4, 1)
    with profile(tmp_path / "run", wait=1, active=5, no_report=True, stop_after_window=True) as session:
        with torch.no_grad():
            for (x,) in val:
                model(x)
        for (x,) in train:
            _train_step(model, x)
    assert session.result is not None
    run = json.loads(session.result.run_json_path.read_text())
    assert run["window"]["loader_id"] == 1 and session.result.steps_captured == 5
    assert any("dropped" in n for n in run["notes"])
    steps = [e for e in _events(session.result.run_dir) if e["name"].startswith("ProfilerStep#")]
    assert len(steps) == 5


def test_a_loop_without_backward_windows_the_loader_that_draws_the_most(tmp_path: Path) -> None:
    # GIVEN inference: one batch of a small loader, then a long loop over another
    small, big = _loader(8), _loader(80)
    with profile(tmp_path / "run", active=5, no_report=True, stop_after_window=True) as session:
        next(iter(small))
        for (x,) in big:
            x.sum()
    assert session.result is not None
    run = json.loads(session.result.run_json_path.read_text())
    assert run["window"]["loader_id"] == 1 and session.result.steps_captured == 5
    assert [lo["training"] for lo in run["loaders"]] == [False, False]
    assert any("drew the most batches" in n for n in run["notes"])


# --- the sweep's timing trials ----------------------------------------------------------------

TRIAL_SCRIPT = """
import sys, torch
from torch.utils.data import DataLoader, TensorDataset
val = DataLoader(TensorDataset(torch.randn(64, 4)), batch_size=4)
train = DataLoader(TensorDataset(torch.randn(int(sys.argv[1]), 4)), batch_size=4)
model = torch.nn.Linear(4, 1)
with torch.no_grad():
    for i, (x,) in enumerate(val):
        model(x)
        if i == 1:
            break  # a sanity check: 2 validation batches
for (x,) in train:
    model(x).sum().backward()
"""


def test_a_sweep_trial_times_the_training_loader_not_the_sanity_check(tmp_path: Path) -> None:
    from tracelens.capture.script.measure import run_timing_trial

    script = tmp_path / "train.py"
    script.write_text(TRIAL_SCRIPT)
    res = run_timing_trial(str(script), ["400"], {"num_workers": 0}, steps=12)
    assert res["loader"]["id"] == 1 and res["loader_choice"] == "training" and res["loader"]["training"]
    # (a fast loop: measured for 2 s or to the script's end, whichever comes first)
    assert len(res["step_ns"]) >= 12 and res["unusable"] is None
    # AND a script too short for the measurement says so
    short = run_timing_trial(str(script), ["40"], {"num_workers": 0}, steps=12)
    assert short["unusable"] is not None and "only 4 steady step(s)" in short["unusable"]


def test_a_loader_rebuilt_from_another_s_attributes_files_its_workers_under_itself(tmp_path: Path) -> None:
    from tracelens.capture.dataloader.worker import WorkerInit

    def seed(worker_id: int) -> None:
        pass

    reg = LoaderRegistry({}, tmp_path)
    data = TensorDataset(torch.randn(8, 4))
    first = DataLoader(data, batch_size=4, num_workers=2, worker_init_fn=seed)
    reg.register(first)
    # GIVEN a framework that builds a second loader from the first one's attributes (accelerate)
    second = DataLoader(data, batch_size=4, num_workers=2, worker_init_fn=first.worker_init_fn)
    second_id = reg.register(second)
    # THEN the second loader's wrapper names the second loader and calls the user's function
    # itself, never the first loader's wrapper (whose records would go to the first loader)
    wrapper = second.worker_init_fn
    assert isinstance(wrapper, WorkerInit) and wrapper.loader_id == second_id
    assert wrapper.user_fn is seed


def test_a_crashed_sweep_trial_names_the_scripts_exception(tmp_path: Path) -> None:
    # issue 21 item 8: a trial whose script raised read "no loader fed a backward pass"
    from tracelens.capture.script.measure import run_timing_trial

    script = tmp_path / "train.py"
    script.write_text("import torch\nraise ValueError('bad config: lr')\n")
    res = run_timing_trial(str(script), [], {"num_workers": 0}, steps=12)
    assert res["exit_status"] == 1
    # the sweep names a failed trial from these (sweep.trials.failure: the script's error first)
    assert "ValueError: bad config: lr" in res["script_error"]
