"""The files a run directory gets after recording: ``analysis.json`` and ``report.html``."""

from __future__ import annotations

from pathlib import Path

from tracelens import jsondoc
from tracelens.api import analyze_path
from tracelens.render.report import write_report
from tracelens.results import Result


def write_run_outputs(run_dir: str | Path) -> Result:
    """Analyze a run directory and write its ``analysis.json`` and ``report.html``."""
    d = Path(run_dir)
    result = analyze_path(d)
    jsondoc.write_file(result.document, d / "analysis.json")
    write_report(result, d / "report.html")
    return result
