"""The report in a real browser: headless Chromium loads it with no console error.

Console messages reach Chromium's stderr log as ``CONSOLE`` lines (``--enable-logging=stderr``);
a control page with a deliberate error proves the harness sees them, so a changed log format
fails loudly instead of passing silently. ``--dump-dom`` shows the page script ran under its
Content-Security-Policy (it turns SVG titles into tooltips). The page also reads without its
script and prints to PDF. Screenshots are kept in
``$TRACELENS_SCREENSHOT_DIR`` (default: pytest's tmp dir).

Skipped where no chromium is installed, except in CI (``CI`` set), where it must run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.builders import TraceBuilder, synthetic_job
from tests.conftest import REPO, SHARED_TRACES
from tracelens.api import analyze_path
from tracelens.document.result import Result
from tracelens.render.report import write_report

pytestmark = pytest.mark.browser

CONSOLE = re.compile(r"CONSOLE[:(]\d*\)?\]?\s*(.*)")
HOSTILE = "</script><img src=x onerror=alert(1)>"


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed; CI must run the browser test (.ci/run installs it)")
    pytest.skip("chromium is not installed")


def _run(page: Path, *mode: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-default-apps", "--hide-scrollbars", f"--user-data-dir={profile}",
             "--enable-logging=stderr", "--v=0", "--window-size=1280,2400", *mode, page.as_uri()],
            capture_output=True, text=True, timeout=120,
        )


def _console(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [m.group(1) for line in proc.stderr.splitlines() if (m := CONSOLE.search(line))]


def _shot_dir(tmp_path: Path) -> Path:
    d = Path(os.environ.get("TRACELENS_SCREENSHOT_DIR") or tmp_path)
    d.mkdir(parents=True, exist_ok=True)
    return d


def test_harness_sees_console_errors(tmp_path: Path) -> None:
    page = tmp_path / "control.html"
    page.write_text("<!doctype html><p>x</p><script>console.error('control-error'); nosuchfn();</script>")
    messages = _console(_run(page, "--dump-dom"))
    assert any("control-error" in m for m in messages), "chromium's console log format changed"


def _reports(tmp_path: Path) -> list[tuple[str, Path]]:
    b = TraceBuilder(device_names=(HOSTILE,))
    for i in range(30):
        t0 = i * 100_000
        b.step(i, t0, 100_000).next_call(t0, 20_000 + (i % 5) * 5_000, iterator=HOSTILE)
        b.kernel(t0 + 26_000, 55_000, name=HOSTILE).memcpy(t0 + 25_000, 500)
    inputs = [("built", b.write(tmp_path / "built.json"))]
    samples = sorted(p for p in (REPO / "sample_traces").glob("*") if p.is_dir())
    inputs += [(p.name, p) for p in samples[:2]]
    pair = SHARED_TRACES / "kineto" / "plugin" / "samples"
    for name in ("resnet50_num_workers_0", "resnet50_num_workers_4"):
        f = pair / name / "worker0.pt.trace.json.gz"
        if f.is_file():
            inputs.append((name, f))
    ranks = SHARED_TRACES / "param/train/compute/python/test/data/dlrm_kineto"
    if ranks.is_dir():
        inputs.append(("dlrm_8_ranks", ranks))
    out = []
    for name, src in inputs:
        page = tmp_path / f"{name}.html"
        write_report(analyze_path(src), page)
        out.append((name, page))
    page = tmp_path / "ranks_4096.html"  # a big job's documents, as a cluster returns them
    write_report(Result("job/", (), synthetic_job(tmp_path, 4096)), page)
    return [*out, ("ranks_4096", page)]


def test_reports_load_without_console_errors(tmp_path: Path) -> None:
    shots = _shot_dir(tmp_path)
    for name, page in _reports(tmp_path):
        shot = shots / f"report-{name}.png"
        proc = _run(page, f"--screenshot={shot}")
        assert _console(proc) == [], f"{name}: console messages {_console(proc)}"
        assert shot.is_file() and shot.stat().st_size > 10_000, f"{name}: no screenshot"
        dom = _run(page, "--dump-dom")
        assert _console(dom) == []
        # the page script ran (allowed by the CSP hash) and the hostile names stayed text
        assert 'class="tip"' in dom.stdout and "data-tip=" in dom.stdout, f"{name}: the page script did not run"
        assert "<img" not in dom.stdout.lower()


def _sample_report(tmp_path: Path) -> Path:
    """The oversubscribed example: telemetry, thread and environment advice, several pages."""
    page = tmp_path / "sample.html"
    write_report(analyze_path(REPO / "sample_traces" / "oversubscribed"), page)
    return page


def test_report_reads_with_scripts_disabled(tmp_path: Path) -> None:
    # GIVEN the report without its page script (headless Chromium cannot screenshot with
    # scriptEnabled=false, so the script is removed, which is what a reader without scripts gets)
    html = _sample_report(tmp_path).read_text(encoding="utf-8")
    bare = re.sub(r"<script>\(function.*?</script>", "", html, flags=re.S)
    assert bare != html
    page = tmp_path / "noscript.html"
    page.write_text(bare, encoding="utf-8")
    shot = _shot_dir(tmp_path) / "report-noscript.png"
    proc = _run(page, f"--screenshot={shot}")
    assert _console(proc) == [] and shot.is_file() and shot.stat().st_size > 10_000
    dom = _run(page, "--dump-dom").stdout
    # THEN the verdict, the change and the charts are there, hover texts stay SVG titles,
    # and the copy button (which needs the script) stays hidden
    assert 'id="verdict"' in dom and "loader = DataLoader(" in dom and "<svg" in dom
    assert "<title>" in dom and 'class="tip"' not in dom
    assert re.search(r"<button[^>]*data-copy[^>]*hidden", dom)


def test_report_prints_to_pdf(tmp_path: Path) -> None:
    page = _sample_report(tmp_path)
    pdf = _shot_dir(tmp_path) / "report-print.pdf"
    proc = _run(page, "--no-pdf-header-footer", f"--print-to-pdf={pdf}")
    assert _console(proc) == []
    data = pdf.read_bytes()
    pages = len(re.findall(rb"/Type\s*/Page[^s]", data))
    assert data.startswith(b"%PDF") and 2 <= pages <= 12, f"{pages} pages"
