"""Progress on long work: profile's phases and window steps (the sweep's rounds carry their own ETA)."""

from __future__ import annotations

import io
import time
from pathlib import Path

from tracelens.capture.recorded.progress import (
    PROGRESS_FILE,
    Status,
    follow,
    progress_writer,
    read_progress,
    step_progress,
)


def test_step_progress_names_warm_up_then_recording() -> None:
    assert step_progress(1, 2, 20) == "warm-up 1/2"
    assert step_progress(2, 2, 20) == "recording 0/20 steps"
    assert step_progress(9, 2, 20) == "recording 7/20 steps"
    assert step_progress(30, 2, 20) == "recording 20/20 steps"


def test_the_script_side_writes_changes_throttled_and_phases_at_once(tmp_path: Path) -> None:
    write = progress_writer(tmp_path)
    write("warm-up 1/2", True)
    write("warm-up 2/2", False)  # within the interval: skipped
    assert read_progress(tmp_path) == "warm-up 1/2"
    write("recording 0/20 steps", True)  # a phase change: written at once
    assert read_progress(tmp_path) == "recording 0/20 steps"


class _Shown(Status):
    def __init__(self) -> None:
        super().__init__(io.StringIO())
        self.seen: list[str] = []

    @property
    def shown(self) -> bool:
        return True

    def update(self, text: str) -> None:
        self.seen.append(text)


def test_the_supervisor_shows_what_the_script_side_wrote(tmp_path: Path) -> None:
    status = _Shown()
    with follow(tmp_path, status):
        (tmp_path / PROGRESS_FILE).write_text("recording 3/20 steps")
        deadline = time.monotonic() + 5
        while "recording 3/20 steps" not in status.seen and time.monotonic() < deadline:
            time.sleep(0.05)
    assert status.seen[0] == "starting the script" and "recording 3/20 steps" in status.seen
    assert not (tmp_path / PROGRESS_FILE).exists()


def test_no_status_off_a_terminal() -> None:
    assert not Status(io.StringIO()).shown
    assert not Status(enabled=False).shown


def test_the_progress_file_is_gone_after_the_run_even_off_a_terminal(tmp_path: Path) -> None:
    with follow(tmp_path, Status(io.StringIO())):
        (tmp_path / PROGRESS_FILE).write_text("recording 3/20 steps")
    assert not (tmp_path / PROGRESS_FILE).exists()
