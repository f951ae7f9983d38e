"""Input pipelines that are no DataLoader (generators, Python iterators, torchdata.nodes) and
DataLoader subclasses (StatefulDataLoader): found from the training loop, timed, windowed
(in-process loops: fast)."""

from __future__ import annotations

import gzip
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from tracelens.capture import profile  # noqa: E402
from tracelens.capture.script.loopfind import find_training_input  # noqa: E402

pytestmark = pytest.mark.torch


def _events(run_dir: Path) -> list[dict[str, Any]]:
    with gzip.open(run_dir / "trace.json.gz", "rt") as fh:
        return [e for e in json.load(fh)["traceEvents"] if e.get("ph") == "X"]


def _step(model: torch.nn.Module, x: torch.Tensor) -> None:
    model(x).sum().backward()


def _batches(n: int) -> Iterator[torch.Tensor]:
    for _ in range(n):
        yield torch.randn(4, 4)


class _Batches:
    """An iterator written as a class (its own ``__next__``)."""

    def __init__(self, n: int) -> None:
        self.left = n

    def __iter__(self) -> _Batches:
        return self

    def __next__(self) -> torch.Tensor:
        if self.left == 0:
            raise StopIteration
        self.left -= 1
        return torch.randn(4, 4)


def _run(tmp_path: Path, loop: Any, **kw: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    with profile(tmp_path / "run", no_report=True, stop_after_window=True, **kw) as session:
        loop()
    assert session.result is not None
    return json.loads(session.result.run_json_path.read_text()), _events(session.result.run_dir)


def _steps_and_nexts(events: list[dict[str, Any]], prefix: str) -> tuple[list[Any], list[Any]]:
    steps = [e for e in events if e["name"].startswith("ProfilerStep#")]
    return steps, [e for e in events if e["name"].startswith(prefix)]


def test_a_generator_feeding_the_training_loop_is_windowed_and_each_next_is_a_trace_event(tmp_path: Path) -> None:
    model = torch.nn.Linear(4, 1)

    def loop() -> None:
        for x in _batches(200):
            _step(model, x)

    run, events = _run(tmp_path, loop, active=6)
    # THEN the generator is the window's loader, its batches fed backward passes
    pipe = run["loaders"][run["window"]["loader_id"]]
    assert pipe["class"].endswith("_batches") and pipe["framework"] == "generator" and pipe["training"] is True
    assert "test_capture_pipelines.py:" in pipe["created_at"]
    # AND each step holds one tracelens#next(...) event
    steps, nexts = _steps_and_nexts(events, "tracelens#next(")
    assert len(steps) == 6 and len(nexts) >= 6
    assert all(n["name"] == "tracelens#next(tests.test_capture_pipelines._batches)" or
               n["name"].endswith("_batches)") for n in nexts)
    assert any("not a DataLoader" in n for n in run["notes"])
    assert sys.gettrace() is None  # the trace function is gone


def test_an_iterator_class_is_timed_through_its_class_and_restored_after(tmp_path: Path) -> None:
    model = torch.nn.Linear(4, 1)
    own_next = _Batches.__next__

    def loop() -> None:
        for _epoch in range(3):  # a new iterator each epoch: timed too
            for i, x in enumerate(_Batches(40)):
                for _micro in range(2):  # gradient accumulation over a range is no pipeline
                    _step(model, x[i % 2:])

    run, events = _run(tmp_path, loop, active=50)
    pipe = run["loaders"][run["window"]["loader_id"]]
    assert pipe["class"].endswith("._Batches") and pipe["framework"] is None
    steps, nexts = _steps_and_nexts(events, "tracelens#next(")
    assert len(steps) == 50 and len(nexts) >= 50  # the window spans epochs
    assert _Batches.__next__ is own_next and "__next__" in _Batches.__dict__


def test_a_dataloader_drawn_inside_a_generator_is_part_of_its_wait(tmp_path: Path) -> None:
    # GIVEN webdataset's shape: a generator that rebatches a DataLoader's batches in the main process
    loader = DataLoader(TensorDataset(torch.randn(4000, 4)), batch_size=2)
    model = torch.nn.Linear(4, 1)

    def rebatch() -> Iterator[torch.Tensor]:
        buf: list[torch.Tensor] = []
        for (x,) in loader:
            buf.append(x)
            if len(buf) == 2:
                yield torch.cat(buf)
                buf = []

    def loop() -> None:
        for x in rebatch():
            _step(model, x)

    run, events = _run(tmp_path, loop, active=5)
    window = run["loaders"][run["window"]["loader_id"]]
    assert window["class"].endswith("rebatch")
    steps, nexts = _steps_and_nexts(events, "tracelens#next(")
    inner = [e for e in events if e["name"].startswith("enumerate(DataLoader)")]
    assert len(steps) == 5 and len(nexts) >= 5
    # AND the DataLoader's __next__ events lie inside the pipeline's
    assert inner and all(any(n["ts"] <= e["ts"] <= n["ts"] + n["dur"] for n in nexts) for e in inner[2:])


def test_a_dataloader_loop_is_left_to_the_dataloader_hooks(tmp_path: Path) -> None:
    loader = DataLoader(TensorDataset(torch.randn(400, 4)), batch_size=4)
    model = torch.nn.Linear(4, 1)

    def loop() -> None:
        for i, (x,) in enumerate(loader):
            _step(model, x + i)

    run, events = _run(tmp_path, loop, active=5)
    assert len(run["loaders"]) == 1 and run["window"]["loader_id"] == 0
    assert not [e for e in events if e["name"].startswith("tracelens#next(")]


def test_stateful_dataloader_is_windowed_and_takes_the_overrides(tmp_path: Path) -> None:
    sdl = pytest.importorskip("torchdata.stateful_dataloader")
    model = torch.nn.Linear(4, 1)

    def loop() -> None:
        loader = sdl.StatefulDataLoader(TensorDataset(torch.randn(400, 4)), batch_size=4, num_workers=0)
        for (x,) in loader:
            _step(model, x)

    run, _events = _run(tmp_path, loop, active=5)
    # THEN StatefulDataLoader is registered from its own __init__ and windowed (no whole-run recording)
    assert run["loaders"][0]["class"].endswith("StatefulDataLoader")
    assert run["window"]["loader_id"] == 0 and run["window"]["steps"] == 5
    assert run["loaders"][0]["batches_drawn"] < 30  # stopped after the window, counted once per batch


def test_torchdata_nodes_loader_is_timed(tmp_path: Path) -> None:
    tn = pytest.importorskip("torchdata.nodes")
    model = torch.nn.Linear(4, 1)

    def loop() -> None:
        node = tn.Batcher(tn.ParallelMapper(tn.IterableWrapper(range(800)), map_fn=lambda i: torch.randn(4),
                                            num_workers=2, method="thread"), batch_size=4)
        loader = tn.Loader(tn.Mapper(node, torch.stack))
        for x in loader:
            _step(model, x)

    run, events = _run(tmp_path, loop, active=5)
    pipe = run["loaders"][run["window"]["loader_id"]]
    assert pipe["class"] == "torchdata.nodes.loader.LoaderIterator" and pipe["framework"] == "torchdata.nodes"
    steps, nexts = _steps_and_nexts(events, "tracelens#next(torchdata.nodes.loader.LoaderIterator)")
    assert len(steps) == 5 and len(nexts) >= 5


def test_the_loop_finder_looks_through_enumerate_and_skips_containers() -> None:
    def train(source: Any) -> Any:
        for _epoch in range(1):
            for _i, _x in enumerate(source):
                for _micro in [1, 2]:
                    return find_training_input(sys._getframe())
        return None

    gen = _batches(3)
    found = train(gen)
    assert found is not None and found.kind == "generator" and found.iterator is gen
    found = train(_Batches(2))
    assert found is not None and found.kind == "class"
    assert train([torch.randn(2)]) is None  # a list is no pipeline
    found = train(DataLoader(TensorDataset(torch.randn(8, 4))))
    assert found is not None and found.kind == "dataloader"


def _timing_trial(tmp_path: Path, overrides: dict[str, Any], build: Any) -> Any:
    import contextlib

    from tracelens.capture.script.measure import TimingSession
    from tracelens.capture.script.target import StopRun

    model = torch.nn.Linear(4, 1)
    session = TimingSession(tmp_path, overrides, warmup=1, steps=3)
    session.start()
    try:
        loader = build()
        with contextlib.suppress(StopRun):
            for (x,) in loader:
                _step(model, x)
    finally:
        session.close()
    return session


def test_a_sweep_trial_whose_override_did_not_reach_the_loader_is_refused(tmp_path: Path) -> None:
    def build() -> Any:
        class Fixed(DataLoader):  # type: ignore[type-arg]  # defined during the session, drops num_workers
            def __init__(self, dataset: Any, **kwargs: Any) -> None:
                super().__init__(dataset, batch_size=2)

        return Fixed(TensorDataset(torch.randn(80, 4)), num_workers=0)

    session = _timing_trial(tmp_path, {"num_workers": 2}, build)
    why = session.unusable()
    assert why is not None and "did not take effect" in why and "num_workers=0 (asked 2)" in why


def test_a_sweep_override_reaches_stateful_dataloader(tmp_path: Path) -> None:
    sdl = pytest.importorskip("torchdata.stateful_dataloader")
    session = _timing_trial(tmp_path, {"num_workers": 2},
                            lambda: sdl.StatefulDataLoader(TensorDataset(torch.randn(200, 4)), batch_size=2))
    info = session.registry.records[session.timed_loader].info
    assert info.num_workers == 2 and info.overrides_applied["num_workers"]["to"] == 2
    assert info.cls.endswith(".StatefulDataLoader")  # what sweep.json's trials[].loader_class name
    assert session.unusable() is None


def test_a_script_driving_its_own_profiler_gets_its_first_cycle_analyzed(tmp_path: Path) -> None:
    loader = DataLoader(TensorDataset(torch.randn(200, 4)), batch_size=4)
    model = torch.nn.Linear(4, 1)
    logdir = tmp_path / "tb"

    def loop() -> None:
        schedule = torch.profiler.schedule(wait=1, warmup=1, active=4, repeat=2)
        with torch.profiler.profile(schedule=schedule,
                                    on_trace_ready=torch.profiler.tensorboard_trace_handler(str(logdir))) as prof:
            for (x,) in loader:
                _step(model, x)
                prof.step()

    with profile(tmp_path / "run", no_report=True) as session:
        loop()
    assert session.result is not None and session.result.user_profiler
    # THEN the script's handler still wrote both cycles, and the first is the run's trace
    assert len(list(logdir.glob("*.pt.trace.json"))) == 2
    assert session.result.trace_path is not None and session.result.steps_captured == 4
    run = json.loads(session.result.run_json_path.read_text())
    assert run["window"]["captured"] and any("first cycle" in n for n in run["notes"])
    # AND with too few steps for a confident verdict, the advice is about the script's own
    # profiler, never the `tracelens profile` command that was just run as it is
    from tracelens.api import analyze_path

    doc = analyze_path(session.result.run_dir).document
    advice = " ".join(f.advice for f in doc.findings)  # type: ignore[union-attr]
    assert "its first cycle" in advice and "simply `tracelens profile" not in advice


def test_a_torchdata_nodes_graph_s_threads_stop_when_the_script_is_stopped() -> None:
    # (daemon threads still running torch code while the interpreter exits abort it: exit 134)
    import threading
    import time

    tn = pytest.importorskip("torchdata.nodes")
    from tracelens.capture.script.pipeline import shutdown_nodes

    before = threading.active_count()
    node = tn.Prefetcher(tn.ParallelMapper(tn.IterableWrapper(range(10_000)), map_fn=lambda i: i,
                                           num_workers=3, method="thread"), prefetch_factor=2)
    it = iter(tn.Loader(node))
    next(it)
    assert threading.active_count() > before
    shutdown_nodes(it)
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() == before
