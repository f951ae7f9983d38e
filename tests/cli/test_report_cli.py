"""``tracelens report``: default names, no silent overwrite, --force, --redact, exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.builders import TraceBuilder
from tests.conftest import REPO
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


def test_report_never_replaces_a_file_tracelens_did_not_write(tmp_path: Path) -> None:
    # GIVEN a user's own file where the default report would go
    trace = _trace(tmp_path)
    mine = tmp_path / "tracelens-report-node7_123.html"
    mine.write_text("my notes")
    r = _run("report", str(trace), cwd=tmp_path)
    assert r.returncode == 2 and "--force" in r.stderr
    assert mine.read_text() == "my notes"
    assert _run("report", str(trace), "--force", cwd=tmp_path).returncode == 0
    assert "my notes" not in mine.read_text()


def test_redacted_report_of_a_run_keeps_the_runs_own_report(tmp_path: Path) -> None:
    # GIVEN a run directory with the report profile wrote
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(REPO / "sample_traces" / "sleep_1ms_loader", run_dir)
    own = run_dir / "report.html"
    own.write_text('<!doctype html><head><meta name="generator" content="tracelens"></head>original')
    # WHEN a redacted report is asked for without -o
    r = _run("report", str(run_dir), "--redact", cwd=tmp_path)
    # THEN it goes beside the run's own report, which is untouched
    assert r.returncode == 0, r.stderr
    assert own.read_text().endswith("original")
    assert (run_dir / "report-redacted.html").is_file()
    assert default_output(run_dir, redact=True) == run_dir / "report-redacted.html"


def test_open_hands_the_written_report_to_the_browser(tmp_path: Path) -> None:
    # GIVEN a "browser" that records what it is asked to open ($BROWSER, as webbrowser reads it)
    trace = _trace(tmp_path)
    seen = tmp_path / "opened.txt"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\necho "$1" > {seen}\n')
    browser.chmod(0o755)
    import os

    env = {**os.environ, "BROWSER": str(browser)}
    r = subprocess.run([sys.executable, "-m", "tracelens", "report", str(trace), "-o", "r.html", "--open"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    assert seen.read_text().strip() == (tmp_path / "r.html").resolve().as_uri()
