"""A saved trace recorded with_stack whose loader is no DataLoader (torchdata.nodes, DALI,
FFCV): the outermost python_function frame of the loader's __next__ is the data wait."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.builders import TraceBuilder, single_of
from tracelens.api import analyze_path

FRAMES = {
    "torchdata.nodes": "site-packages/torchdata/nodes/base_node.py(75): __next__",
    "DALI": "site-packages/nvidia/dali/plugin/pytorch/__init__.py(210): __next__",
    "FFCV": "site-packages/ffcv/loader/epoch_iterator.py(145): __next__",
}


@pytest.mark.parametrize("loader", list(FRAMES))
def test_a_known_loader_s_next_frame_is_the_data_wait_and_nested_frames_count_once(tmp_path: Path, loader: str) -> None:
    b = TraceBuilder()
    t = 0.0
    for i in range(6):  # steps of 30 ms wait (a node calling its source's __next__ inside) + 70 ms compute
        b.step(i + 1, t, 100_000)
        b.add(FRAMES[loader], "python_function", t, 30_000)
        b.add(FRAMES[loader], "python_function", t + 1_000, 28_000)  # the inner node
        b.kernel(t + 30_100, 69_800)
        t += 100_000
    doc = single_of(analyze_path(b.write(tmp_path / "t.json")).document)
    assert doc.metrics.next_calls == 6
    assert doc.metrics.data_wait_fraction == pytest.approx(0.3, abs=0.01)


def test_unknown_python_frames_are_not_a_data_wait(tmp_path: Path) -> None:
    b = TraceBuilder()
    for i in range(3):
        b.step(i + 1, i * 100_000.0, 100_000)
        b.add("train.py(12): __next__", "python_function", i * 100_000.0, 30_000)
    doc = single_of(analyze_path(b.write(tmp_path / "t.json")).document)
    assert doc.metrics.next_calls == 0
