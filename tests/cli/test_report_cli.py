"""``tracelens report``: default names, no silent overwrite, --force, --redact, exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.builders import TraceBuilder
from tracelens.cli.report import default_output


def _trace(tmp_path: Path) -> Path:
    b = TraceBuilder()
    for i in range(3):
        b.step(i, i * 10_000, 10_000).next_call(i * 10_000, 3_000).kernel(i * 10_000 + 3_100, 5_000)
    return b.write(tmp_path / "node7_123.pt.trace.json")


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tracelens", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_default_output_names(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text("{}")
    assert default_output(run_dir) == run_dir / "report.html"
    assert default_output(Path("x/a b.pt.trace.json.gz")) == Path("tracelens-report-a_b.html")


def test_report_writes_default_file_and_regenerates_it(tmp_path: Path) -> None:
    trace = _trace(tmp_path)
    for _ in range(2):  # the default name is tracelens's own: regenerating it is fine
        r = _run("report", str(trace), cwd=tmp_path)
        assert r.returncode == 0, r.stderr
    out = tmp_path / "tracelens-report-node7_123.html"
    assert out.is_file() and f"report: {out.name}" in r.stdout


def test_explicit_output_needs_force_to_overwrite(tmp_path: Path) -> None:
    trace = _trace(tmp_path)
    out = tmp_path / "mine.html"
    out.write_text("keep me")
    r = _run("report", str(trace), "-o", str(out), cwd=tmp_path)
    assert r.returncode == 2 and "--force" in r.stderr and "Traceback" not in r.stderr
    assert out.read_text() == "keep me"
    r = _run("report", str(trace), "-o", str(out), "--force", "--redact", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    html = out.read_text()
    assert "node7_123" not in html and str(tmp_path) not in html


def test_bad_input_is_one_line_and_exit_1(tmp_path: Path) -> None:
    bad = tmp_path / "notatrace.json"
    bad.write_text("hello")
    r = _run("report", str(bad), cwd=tmp_path)
    assert r.returncode == 1 and "notatrace.json" in r.stderr and "Traceback" not in r.stderr
    assert not list(tmp_path.glob("*.html"))
