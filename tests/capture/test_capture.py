"""The capture wrapper on real (tiny) CPU runs: steps, run.json, exit statuses, workers."""

from __future__ import annotations

import gzip
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from tracelens.capture import ProfileOptions, ProfileResult, run_profile  # noqa: E402
from tracelens.runjson import read_run_info  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.slow]

TOY = """
import argparse, json, sys, time
import torch
from torch.utils.data import DataLoader, Dataset

class Items(Dataset):
    def __len__(self):
        return {n_items}
    def __getitem__(self, i):
        time.sleep(0.0005)
        return torch.randn(8), i % 2

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--num-workers", type=int, default=0)
    ap.add_argument("--ctx", default=None)
    ap.add_argument("--exit-at", type=int, default=-1)
    ap.add_argument("--raise-at", type=int, default=-1)
    ap.add_argument("--epochs", type=int, default=1)
    a, rest = ap.parse_known_args()
    with open({argv_file!r}, "w") as fh:
        json.dump({{"argv": sys.argv, "path0": sys.path[0], "name": __name__}}, fh)
    dl = DataLoader(Items(), batch_size=4, num_workers=a.num_workers,
                    multiprocessing_context=a.ctx)
    model = torch.nn.Linear(8, 2)
    i = 0
    for _ in range(a.epochs):
        for x, y in dl:
            model(x).sum().backward()
            if i == a.exit_at:
                sys.exit(7)
            if i == a.raise_at:
                raise RuntimeError("boom in the script")
            i += 1
    print("script finished")
"""


def _write_toy(tmp_path: Path, n_items: int = 120) -> tuple[Path, Path]:
    argv_file = tmp_path / "argv.json"
    script = tmp_path / "train_toy.py"
    script.write_text(TOY.format(n_items=n_items, argv_file=str(argv_file)))
    return script, argv_file


def _run(
    tmp_path: Path, target: str, *args: str, **kw: Any
) -> tuple[ProfileResult, dict[str, Any]]:
    kw.setdefault("no_report", True)
    kw.setdefault("supervise", False)  # the recorder itself, in this process (the supervisor: test_profile_survives)
    result = run_profile(
        ProfileOptions(target=target, args=tuple(args), out=tmp_path / "run", **kw)
    )
    return result, json.loads(result.run_json_path.read_text())


def _trace_names(path: Path) -> list[str]:
    with gzip.open(path, "rt") as fh:
        return [e.get("name", "") for e in json.load(fh)["traceEvents"]]


def test_script_runs_with_argv_unchanged_and_window_captured(tmp_path: Path) -> None:
    # GIVEN a training script with flags, WHEN profiled with a short window
    script, argv_file = _write_toy(tmp_path)
    result, run = _run(
        tmp_path, str(script), "--num-workers", "0", "--unknown", "x y", wait=2, active=5
    )
    # THEN the script saw exactly its own argv, __main__ and its directory as sys.path[0]
    seen = json.loads(argv_file.read_text())
    assert seen == {
        "argv": [str(script), "--num-workers", "0", "--unknown", "x y"],
        "path0": str(tmp_path),
        "name": "__main__",
    }
    assert sys.argv[0] != str(script)  # restored
    # AND it was stopped after the window, which holds 5 steps and their DataLoader waits
    assert (result.exit_status, result.stop_reason, result.steps_captured) == (
        0,
        "window_captured",
        5,
    )
    names = _trace_names(result.run_dir / "trace.json.gz")
    assert sum(n.startswith("ProfilerStep#") for n in names) == 5
    assert sum(n.startswith("enumerate(DataLoader)#") for n in names) == 5
    assert "tracelens#sync" in names
    # AND run.json holds the loader settings, machine facts and the clock
    loader = run["loaders"][0]
    assert loader["num_workers"] == 0 and loader["batch_size"] == 4
    assert loader["dataset_class"].endswith("Items") and loader["dataset_len"] == 120
    assert run["machine"]["logical_cores"] >= 1 and run["machine"]["usable_cores"] >= 1
    assert run["trace"]["clock"]["source"] == "sync_marker"
    assert abs(run["trace"]["clock"]["offset_ns"]) < 50_000_000
    assert run["window"]["steps"] == 5 and run["window"]["start_us"] < run["window"]["end_us"]
    # AND the main-process fetches were timed (num_workers=0)
    assert len(run["main_fetch"]["dur_us"]) >= 7
    assert not (result.run_dir / ".workers").exists()


def test_sys_exit_keeps_status_and_saves_trace(tmp_path: Path) -> None:
    script, _ = _write_toy(tmp_path)
    result, run = _run(tmp_path, str(script), "--exit-at", "6", wait=1, active=30)
    assert result.exit_status == 7 and run["exit_status"] == 7
    assert result.stop_reason == "exited"
    assert result.trace_path is not None and result.trace_path.exists()
    assert 1 <= result.steps_captured < 30
    assert any("ended inside the window" in n for n in result.notes)


def test_exception_exits_1_with_traceback(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    script, _ = _write_toy(tmp_path)
    result, run = _run(tmp_path, str(script), "--raise-at", "5", wait=1, active=30)
    assert result.exit_status == 1 and result.stop_reason == "error"
    assert "RuntimeError: boom in the script" in run["error"]
    err = capfd.readouterr().err  # the script runs in the recording child process
    assert "Traceback (most recent call last)" in err and "train_toy.py" in err
    assert "tracelens/capture" not in err  # our frames are hidden, like `python script.py`
    assert result.trace_path is not None


def test_run_to_completion_and_epochs(tmp_path: Path) -> None:
    script, _ = _write_toy(tmp_path, n_items=24)  # 6 batches per epoch
    result, run = _run(
        tmp_path, str(script), "--epochs", "3", wait=1, warmup=1, active=4, run_to_completion=True
    )
    assert result.stop_reason == "finished" and result.steps_captured == 4
    assert run["loaders"][0]["iter_calls"] == 3 and run["loaders"][0]["batches_drawn"] == 18
    assert run["batches"]["count"] == 18


def test_a_window_longer_than_an_epoch_spans_epochs(tmp_path: Path) -> None:
    # GIVEN a loader of 10 batches per epoch, 3 epochs, and the default window (3 + 2 + 20)
    script, _ = _write_toy(tmp_path, n_items=40)
    result, run = _run(tmp_path, str(script), "--epochs", "3")
    # THEN the window is not shrunk: its 20 steps run across the epochs
    assert run["schedule"]["active"] == 20 and run["schedule"]["adapted"] is False
    assert result.steps_captured == 20 and result.stop_reason == "window_captured"
    names = _trace_names(result.run_dir / "trace.json.gz")
    assert sum(n.startswith("ProfilerStep#") for n in names) == 20
    # AND each epoch change shows: the StopIteration call inside the epoch's last step, and
    # the new iterator between steps
    assert sum(n == "tracelens#DataLoader.__iter__" for n in names) == 2
    assert run["window"]["loader_id"] == 0 and run["loaders"][0]["iter_calls"] == 3


def test_a_script_shorter_than_the_window_keeps_the_steps_it_drew(tmp_path: Path) -> None:
    # GIVEN one epoch of 10 batches: fewer than the default window
    script, _ = _write_toy(tmp_path, n_items=40)
    result, run = _run(tmp_path, str(script))
    # THEN the steps drawn after wait and warm-up are recorded, and the notes say so
    assert result.steps_captured == 5 and run["schedule"]["active"] == 20
    assert any("holds 5 of 20 planned steps" in n for n in result.notes)


def test_spawn_workers_found_in_telemetry(tmp_path: Path) -> None:
    script, _ = _write_toy(tmp_path)
    result, run = _run(
        tmp_path,
        str(script),
        "--num-workers",
        "2",
        "--ctx",
        "spawn",
        wait=4,
        active=8,
        telemetry_interval_ms=20,
    )
    assert result.steps_captured == 8
    assert run["loaders"][0]["multiprocessing_context"] == "spawn"
    worker_pids = {w["pid"] for w in run["workers"]}
    assert len(worker_pids) == 2
    sampled = {p["pid"] for p in run["telemetry"]["processes"] if p["role"] == "worker"}
    assert worker_pids <= sampled
    assert all(w["torch_threads"] == 1 for w in run["workers"])
    assert len(run["worker_batches"]["dur_us"]) >= 8
    info = read_run_info(result.run_dir)
    assert info.batch_production_ms_median() is not None
    assert {s.role for s in info.process_summaries()} >= {"main", "worker"}


def test_script_without_dataloader_gets_whole_run_trace(tmp_path: Path) -> None:
    script = tmp_path / "no_loader.py"
    script.write_text("import torch\nx = torch.ones(8, 8)\nfor _ in range(5):\n    x = x @ x\n")
    result, run = _run(tmp_path, str(script))
    assert result.exit_status == 0 and result.steps_captured == 0
    assert result.trace_path is not None and run["window"]["unstepped"] is True
    assert any("no torch.utils.data.DataLoader" in n for n in result.notes)
    assert "aten::mm" in _trace_names(result.trace_path)


def test_module_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    script, argv_file = _write_toy(tmp_path)
    (pkg / "train.py").write_text(script.read_text())
    monkeypatch.chdir(tmp_path)
    result, run = _run(tmp_path, "mypkg.train", "--num-workers", "0", module=True, wait=1, active=3)
    seen = json.loads(argv_file.read_text())
    assert seen["argv"] == [str(pkg / "train.py"), "--num-workers", "0"]
    assert seen["name"] == "__main__"
    assert result.steps_captured == 3 and run["command"]["kind"] == "module"


def test_script_with_its_own_profiler_keeps_its_events_and_its_recording_is_the_trace(tmp_path: Path) -> None:
    script = tmp_path / "own.py"
    script.write_text(
        textwrap.dedent("""
        import torch
        from torch.utils.data import DataLoader, TensorDataset
        dl = DataLoader(TensorDataset(torch.randn(40, 4)), batch_size=4)
        with torch.profiler.profile() as prof:
            for (x,) in dl:
                x.sum()
        assert prof.events() is not None
    """)
    )
    result, run = _run(tmp_path, str(script))
    # THEN the script's profiler works as it would (its events are there: the assert in the script)
    assert result.exit_status == 0 and result.user_profiler and run["user_profiler"].endswith("profile")
    # AND its recording (no schedule: no ProfilerStep#) is kept as the run's trace
    assert result.trace_path is not None and result.steps_captured == 0
    assert run["batches"]["count"] == 10


def test_loader_overrides_and_tensorboard(tmp_path: Path) -> None:
    script, _ = _write_toy(tmp_path)
    tb = tmp_path / "tb"
    result, run = _run(
        tmp_path,
        str(script),
        "--num-workers",
        "0",
        wait=1,
        active=3,
        loader_overrides={"num_workers": 1, "pin_memory": True},
        tensorboard_dir=tb,
    )
    loader = run["loaders"][0]
    assert loader["num_workers"] == 1 and loader["pin_memory"] is True
    assert loader["overrides_applied"]["num_workers"] == {"from": 0, "to": 1}
    assert result.tensorboard_dir is not None
    files = sorted(p.name for p in result.tensorboard_dir.iterdir())
    assert any(f.endswith(".pt.trace.json.gz") for f in files)
    assert any(f.startswith("events.out.tfevents") for f in files)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(result.tensorboard_dir))
    acc.Reload()
    assert {"tracelens/data_wait_ms", "tracelens/step_time_ms"} <= set(acc.Tags()["scalars"])


def test_in_script_api(tmp_path: Path) -> None:
    from torch.utils.data import DataLoader, TensorDataset

    from tracelens.capture import profile

    dl = DataLoader(TensorDataset(torch.randn(80, 4)), batch_size=4)
    with profile(
        tmp_path / "api", wait=1, warmup=1, active=4, no_report=True, stop_after_window=True
    ) as session:
        for (x,) in dl:
            x.sum()
    assert session.result is not None and session.result.stop_reason == "window_captured"
    assert session.result.steps_captured == 4 and session.batches_drawn == 6
    # AND the hooks are gone afterwards: a plain loop is untouched
    assert sum(1 for _ in dl) == 20


def test_out_dir_not_overwritten_without_force(tmp_path: Path) -> None:
    from tracelens.errors import UsageError

    script, _ = _write_toy(tmp_path)
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(UsageError):
        run_profile(ProfileOptions(target=str(script), out=out))
    with pytest.raises(UsageError):
        run_profile(ProfileOptions(target=str(tmp_path / "missing.py")))


def test_window_filling_one_epoch_closes_cleanly(tmp_path: Path) -> None:
    # GIVEN a one-epoch script of exactly wait + warmup + active batches
    script, _ = _write_toy(tmp_path, n_items=40)  # 10 batches
    result, _run_doc = _run(tmp_path, str(script), wait=3, warmup=2, active=5)
    # THEN the window closes at the epoch's end, not at the script's end
    assert result.window_captured and result.steps_captured == 5
    assert result.stop_reason == "window_captured"
    assert not result.notes


def test_loader_reused_across_two_api_sessions(tmp_path: Path) -> None:
    from torch.utils.data import DataLoader, TensorDataset

    from tracelens.capture import profile

    dl = DataLoader(TensorDataset(torch.randn(40, 4)), batch_size=4)
    for name in ("first", "second"):
        with profile(tmp_path / name, wait=1, warmup=1, active=3, no_report=True) as session:
            for (x,) in dl:
                x.sum()
        assert session.result is not None and session.result.steps_captured == 3
        run = json.loads(session.result.run_json_path.read_text())
        assert len(run["loaders"]) == 1 and run["loaders"][0]["batches_drawn"] == 10
