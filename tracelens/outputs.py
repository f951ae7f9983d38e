"""The files a run directory gets after recording: ``analysis.json`` and ``report.html``."""

from __future__ import annotations

import json
from pathlib import Path

from tracelens.api import analyze_path
from tracelens.document.result import Result
from tracelens.render.html import write_atomic
from tracelens.render.report import write_report


def write_run_outputs(run_dir: str | Path) -> Result:
    """Analyze a run directory and write its ``analysis.json`` and ``report.html``."""
    d = Path(run_dir)
    result = analyze_path(d)
    write_atomic(d / "analysis.json", json.dumps(result.document, indent=2) + "\n")
    write_report(result, d / "report.html")
    return result
