"""Files appear whole or not at all; OS errors and signals reach the user as one line (issue 21).

The atomic writer (``system.atomic``), the held signals (``system.signals``), the trace export
(``capture.script.export``, with a stand-in for torch's profiler) and the command line's error boundary.
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import tracelens.cli as cli
from tests.builders import TraceBuilder, starved_loop
from tracelens.capture.script.export import RAW_TRACE_NAME, TRACE_NAME, export_trace
from tracelens.system import atomic
from tracelens.system.atomic import OutputError, copy_atomic, write_atomic
from tracelens.system.procs import Terminated
from tracelens.system.rundirs import claim_dir, remove_temp_outputs
from tracelens.system.signals import held_signals

TRACE_TEXT = json.dumps({"traceEvents": [{"ph": "X", "name": "a", "ts": 1, "dur": 2, "pid": 1, "tid": 1}]})


def _full_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every fsync fails as on a full disk (where the data is flushed and the space runs out)."""
    def fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.os, "fsync", fsync)


# --------------------------------------------------------------------------- the writer


def test_an_atomic_write_leaves_the_file_and_nothing_else(tmp_path: Path) -> None:
    out = write_atomic(tmp_path / "sub" / "run.json", b'{"a": 1}')
    assert out.read_bytes() == b'{"a": 1}'
    assert os.listdir(out.parent) == ["run.json"]
    assert oct(out.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_full_disk_names_the_path_and_the_cause_and_keeps_the_old_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN run.json from before, and a disk that fills up while the new one is written
    old = tmp_path / "run.json"
    old.write_text("old")
    _full_disk(monkeypatch)
    # WHEN it is written again
    with pytest.raises(OutputError) as caught:
        write_atomic(old, "new")
    # THEN one line names the file and the OS's reason; the old file is whole, no temp is left
    assert str(caught.value) == f"{old}: cannot write: No space left on device"
    assert old.read_text() == "old" and os.listdir(tmp_path) == ["run.json"]


def test_a_compressed_copy_is_whole_or_absent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "trace.json"
    src.write_text(TRACE_TEXT)
    assert gzip.decompress(copy_atomic(src, tmp_path / "trace.json.gz", compress=True).read_bytes()) == TRACE_TEXT.encode()
    _full_disk(monkeypatch)
    with pytest.raises(OutputError, match="No space left on device"):
        copy_atomic(src, tmp_path / "other.json.gz", compress=True)
    assert sorted(os.listdir(tmp_path)) == ["trace.json", "trace.json.gz"]


def test_temporary_files_of_a_killed_writer_are_removed_and_nothing_else(tmp_path: Path) -> None:
    names = [".run.json.ab12.tmp", ".trace.json.123.tmp", ".trace.json.123.tmp.tmp", ".report.html.x.tmp",
             "notes.tmp", ".mine.tmp", "run.json"]
    for n in names:
        (tmp_path / n).write_text("x")
    remove_temp_outputs(tmp_path)
    assert sorted(os.listdir(tmp_path)) == [".mine.tmp", "notes.tmp", "run.json"]


# --------------------------------------------------------------------------- held signals


def test_a_signal_during_held_work_is_delivered_once_after_it(tmp_path: Path) -> None:
    seen: list[str] = []
    old = signal.signal(signal.SIGUSR1, lambda s, f: seen.append("handler"))
    try:
        with held_signals((signal.SIGUSR1,)) as received:
            os.kill(os.getpid(), signal.SIGUSR1)
            os.kill(os.getpid(), signal.SIGUSR1)
            seen.append("work done")
            assert received == [signal.SIGUSR1]
        assert seen == ["work done", "handler"]
    finally:
        signal.signal(signal.SIGUSR1, old)


def test_ctrl_c_during_held_work_interrupts_only_after_it() -> None:
    done = []
    with pytest.raises(KeyboardInterrupt), held_signals():
        os.kill(os.getpid(), signal.SIGINT)
        done.append(True)
    assert done == [True]


# --------------------------------------------------------------------------- the trace export


class FakeProfiler:
    """Writes a trace as Kineto does: ``<path>.tmp``, renamed when complete; ``during`` runs
    half-way (a signal arriving mid-export)."""

    def __init__(self, text: str = TRACE_TEXT, during: Any = None, complete: bool = True) -> None:
        self.text, self.during, self.complete = text, during, complete

    def export_chrome_trace(self, path: str) -> None:
        tmp = path + ".tmp"
        with open(tmp, "w") as fh:
            fh.write(self.text[: len(self.text) // 2])
            fh.flush()
            if self.during is not None:
                self.during()
            if not self.complete:
                return  # Kineto logs the failed write and leaves its .tmp; nothing is raised
            fh.write(self.text[len(self.text) // 2:])
        os.replace(tmp, path)


def test_the_trace_is_exported_beside_the_run_and_nothing_is_left_in_tmpdir(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmpdir))
    path, problem = export_trace(FakeProfiler(), tmp_path)
    assert path == tmp_path / TRACE_NAME and problem is None
    assert json.loads(gzip.decompress(path.read_bytes())) == json.loads(TRACE_TEXT)
    assert sorted(os.listdir(tmp_path)) == ["tmpdir", TRACE_NAME] and not os.listdir(tmpdir)


def test_sigterm_during_the_export_waits_for_the_whole_trace(tmp_path: Path) -> None:
    # GIVEN a SIGTERM handler (the capture guard's: save, then die) and a SIGTERM mid-export
    order: list[str] = []

    def on_term(signum: int, frame: object) -> None:
        order.append(f"SIGTERM handled; trace whole: {_whole(tmp_path / TRACE_NAME)}")

    old = signal.signal(signal.SIGTERM, on_term)
    try:
        export_trace(FakeProfiler(during=lambda: os.kill(os.getpid(), signal.SIGTERM)), tmp_path)
    finally:
        signal.signal(signal.SIGTERM, old)
    # THEN the handler ran once, after the trace was complete
    assert order == ["SIGTERM handled; trace whole: True"]


def _whole(path: Path) -> bool:
    try:
        return bool(json.loads(gzip.decompress(path.read_bytes())))
    except (OSError, ValueError, EOFError):
        return False


def test_an_incomplete_trace_from_torch_is_not_saved_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match=f"{TRACE_NAME}: cannot write: torch could not write the trace"):
        export_trace(FakeProfiler(complete=False), tmp_path)
    assert os.listdir(tmp_path) == []


def test_a_full_disk_while_compressing_keeps_torchs_raw_trace_and_says_where(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _full_disk(monkeypatch)
    path, problem = export_trace(FakeProfiler(), tmp_path)
    assert path == tmp_path / RAW_TRACE_NAME and json.loads(path.read_text()) == json.loads(TRACE_TEXT)
    assert problem is not None and "No space left on device" in problem and str(path) in problem
    assert os.listdir(tmp_path) == [RAW_TRACE_NAME]


# --------------------------------------------------------------------------- the command line


def _run(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tracelens", *args], capture_output=True, text=True,
                          timeout=120, **kw)


@pytest.fixture
def trace(tmp_path: Path) -> Path:
    return starved_loop(TraceBuilder(), steps=4).write(tmp_path / "t.json")


def test_an_existing_file_or_a_dangling_link_as_a_run_directory_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    for name, says in (("afile", "is a file, not a directory"), ("dangling", "is a dangling symbolic link")):
        with pytest.raises(cli.TracelensError, match=says):
            claim_dir(tmp_path / name, force=True)


def test_an_output_under_a_file_names_the_path_and_the_cause(trace: Path, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    out = _run("analyze", str(trace), "--html", str(tmp_path / "afile" / "r.html"))
    assert out.returncode == 1 and "Traceback" not in out.stderr and "internal error" not in out.stderr
    assert out.stderr.strip().splitlines()[-1].endswith(f"/afile/r.html: cannot write: Not a directory ({tmp_path / 'afile'} is a file)")


def test_a_dangling_link_as_html_output_is_refused_without_force(trace: Path, tmp_path: Path) -> None:
    link = tmp_path / "r.html"
    link.symlink_to(tmp_path / "gone" / "r.html")
    out = _run("analyze", str(trace), "--html", str(link))
    assert out.returncode == 2 and "dangling symbolic link" in out.stderr


def _main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], error: BaseException,
          *args: str) -> tuple[int, str]:
    def fail(*a: Any, **k: Any) -> None:
        raise error

    monkeypatch.setattr("tracelens.api.analyze_path", fail)
    monkeypatch.setattr(sys, "argv", ["tracelens", *args])
    with pytest.raises(SystemExit) as ended:
        cli.main()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # main() installed its handler in this process
    return int(ended.value.code or 0), capsys.readouterr().err


@pytest.mark.parametrize(("error", "status", "line"), [
    (KeyboardInterrupt(), 130, ""),  # typer turns Ctrl-C inside a command into a silent exit 130
    (Terminated("terminated by SIGTERM", 143), 143, "tracelens: terminated by SIGTERM"),
    (OSError(errno.EROFS, os.strerror(errno.EROFS), "/mnt/ro/r.html"), 1,
     "tracelens: error: /mnt/ro/r.html: Read-only file system"),
    (PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/root/x"), 1,
     "tracelens: error: /root/x: Permission denied"),
    (OutputError("/full/r.html", os.strerror(errno.ENOSPC)), 1,
     "tracelens: error: /full/r.html: cannot write: No space left on device"),
])
def test_signals_and_os_errors_end_every_command_in_one_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], trace: Path,
        error: BaseException, status: int, line: str) -> None:
    for command in (("analyze", str(trace)), ("report", str(trace), "-o", str(trace.with_suffix(".html")))):
        code, err = _main(monkeypatch, capsys, error, *command)
        assert (code, err.strip()) == (status, line)


def test_sigterm_to_a_command_exits_143_in_one_line(trace: Path) -> None:
    # GIVEN `tracelens analyze --scheduler` connecting to a "scheduler" that accepts and never answers
    pytest.importorskip("distributed")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.settimeout(60)
        proc = subprocess.Popen([sys.executable, "-m", "tracelens", "analyze", str(trace), "--scheduler",
                                 f"tcp://127.0.0.1:{server.getsockname()[1]}"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            conn, _ = server.accept()  # the command is inside its work now
            # WHEN it gets SIGTERM
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
            conn.close()
        finally:
            proc.kill()
    # THEN one line and 143, as the shell reports a process ended by SIGTERM
    assert proc.returncode == 143 and err.strip() == "tracelens: terminated by SIGTERM"
