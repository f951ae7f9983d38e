"""Fast unit tests of the capture pieces that need no training run: ``run_target`` (shared by
``tracelens profile`` and the sweep trials) and the workers' buffered batch records."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from tracelens.capture.dataloader.worker import FLUSH_INTERVAL_NS, _RecordFile, read_record_file
from tracelens.capture.script import target as target_mod
from tracelens.capture.script.target import StopRun, exit_status_of, run_target


def _script(tmp_path: Path, body: str, name: str = "s.py") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(body))
    return p


def test_run_target_gives_the_script_python_s_argv_path_and_main(tmp_path: Path) -> None:
    out = tmp_path / "seen.txt"
    script = _script(
        tmp_path,
        f"""
        import sys
        open({str(out)!r}, "w").write(repr((sys.argv, sys.path[0], __name__)))
        """,
    )
    argv, path, main = sys.argv[:], sys.path[:], sys.modules["__main__"]
    status, reason, error = run_target(str(script), ["--lr", "0.1", "x y"], module=False)
    assert (status, reason, error) == (0, "finished", None)
    seen = eval(out.read_text())
    assert seen == ([str(script), "--lr", "0.1", "x y"], str(tmp_path.resolve()), "__main__")
    assert sys.argv == argv and sys.path == path and sys.modules["__main__"] is main


def test_run_target_module_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "tlmod_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text("import sys\nsys.exit(int(sys.argv[1]))\n")
    monkeypatch.chdir(tmp_path)
    assert run_target("tlmod_pkg", ["4"], module=True) == (4, "exited", "SystemExit: 4")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("import sys; sys.exit(7)", (7, "exited", "SystemExit: 7")),
        ("import sys; sys.exit(0)", (0, "finished", None)),
        ("import sys; sys.exit()", (0, "finished", None)),
        ("import sys; sys.exit('bad')", (1, "exited", "SystemExit: 'bad'")),
        ("raise ValueError('boom')", (1, "error", "ValueError: boom")),
        ("raise KeyboardInterrupt", (130, "interrupted", "KeyboardInterrupt")),
    ],
)
def test_run_target_keeps_the_exit_status(
    tmp_path: Path, body: str, expected: tuple[int, str, str | None]
) -> None:
    assert run_target(str(_script(tmp_path, body)), [], module=False) == expected


def test_run_target_stop_reason_is_the_callers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A capture session stops the script by raising StopRun from DataLoader.__next__.
    monkeypatch.setattr(target_mod.runpy, "run_path", _raise_stop_run)
    script = _script(tmp_path, "pass")
    assert run_target(str(script), [], False, stop_reason="steps_measured") == (
        0,
        "steps_measured",
        None,
    )


def _raise_stop_run(*_a: object, **_k: object) -> None:
    raise StopRun()


def test_traceback_hides_internal_frames(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_target(str(_script(tmp_path, "def f():\n    raise ValueError('x')\nf()\n")), [], False)
    err = capsys.readouterr().err
    assert "ValueError: x" in err and "s.py" in err
    assert "target.py" not in err and "runpy" not in err


def test_exit_status_of_matches_the_interpreter() -> None:
    assert [exit_status_of(c) for c in (None, 0, 3, 256 + 5, -1, True)] == [0, 0, 3, 5, 255, 1]


def test_worker_records_are_buffered_then_appended(tmp_path: Path) -> None:
    path = tmp_path / "0-0-1.rec"
    rec = _RecordFile(str(path))
    rec.write_line('#{"pid": 1}\n')  # the header goes out at once (the sampler finds workers)
    t = rec.last_flush_ns
    rec.record(t, t + 10, 5)
    rec.record(t + 10, t + 20, 6)
    assert read_record_file(str(path)) == ({"pid": 1}, [])  # no system call per batch
    rec.record(t + 20, t + FLUSH_INTERVAL_NS, 7)  # a quarter second later: one block write
    assert read_record_file(str(path))[1] == [
        (t, t + 10, 5),
        (t + 10, t + 20, 6),
        (t + 20, t + FLUSH_INTERVAL_NS, 7),
    ]
    rec.record(1, 2, 3)
    rec.flush()  # what the worker's exit finalizer does
    assert read_record_file(str(path))[1][-1] == (1, 2, 3)
    rec.flush()  # nothing pending: nothing written twice
    assert len(read_record_file(str(path))[1]) == 4


def test_main_process_fetches_are_timed_only_near_the_window(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader

    from tracelens.capture.options import ProfileOptions
    from tracelens.capture.script.session import MAIN_FETCH_LEAD_BATCHES, CaptureSession

    wait = MAIN_FETCH_LEAD_BATCHES + 40
    session = CaptureSession(ProfileOptions("t.py", wait=wait, record_unstepped=False), tmp_path / "r", {})
    session.start()
    try:
        for i, _ in enumerate(DataLoader(torch.zeros(200, 1), batch_size=1)):
            if i + 1 == wait - 10:  # stop before the window: no profiler starts
                break
    finally:
        session.finish(0, "finished", None, shutdown_workers=True)
    # the batches from `wait - lead` on are timed, the 40 before them are not
    assert len(session.main_fetch) == wait - 10 - 40
