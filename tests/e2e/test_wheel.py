"""The built wheel, installed with its dependencies in a bare virtual environment (nothing
borrowed from the interpreter's site-packages, as on a new machine), analyzes and reports
without torch, and its console script turns usage errors into one line.

It checks what a source checkout hides: that the top-level templates/ travel inside the wheel,
that the declared dependencies are enough, and that analyzing a saved trace imports no torch.
"""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.conftest import REPO

SAMPLE = REPO / "sample_traces" / "sleep_1ms_loader"

CHECK = """
import builtins, json, sys
real_import = builtins.__import__
def no_torch(name, *a, **k):
    if name == "torch" or name.startswith("torch."):
        raise ImportError("torch is blocked in this test")
    return real_import(name, *a, **k)
builtins.__import__ = no_torch
import tracelens
from tracelens.api import analyze_path
from tracelens.render.report import write_report
assert "site-packages" in tracelens.__file__, tracelens.__file__
r = analyze_path(sys.argv[1])
write_report(r, sys.argv[2])
print(json.dumps({"file": tracelens.__file__, "diagnosis": r.document.diagnosis}))
"""


@pytest.mark.slow
def test_installed_wheel_analyzes_and_reports_without_torch(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(REPO)],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    wheel = next(dist.glob("tracelens_dataloader-*.whl"))
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=False, with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    inst = subprocess.run([str(py), "-m", "pip", "install", "-q", str(wheel)],
                          capture_output=True, text=True, timeout=900)
    assert inst.returncode == 0, inst.stderr[-3000:]
    work = tmp_path / "elsewhere"
    work.mkdir()
    out = subprocess.run([str(py), "-c", CHECK, str(SAMPLE), str(work / "r.html")],
                         cwd=work, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert str(env_dir) in out.stdout
    html = (work / "r.html").read_text()
    assert html.lower().startswith("<!doctype html>") and "</html>" in html
    assert "<svg" in html  # charts rendered from the templates the wheel carries
    cli = subprocess.run([str(env_dir / "bin" / "tracelens"), "analyze", "--json", str(SAMPLE)],
                         cwd=work, capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0, cli.stderr[-3000:]
    assert json.loads(cli.stdout)["diagnosis"] == "io_bound"
    _usage_errors_are_one_line(env_dir / "bin" / "tracelens", work)


def _usage_errors_are_one_line(tracelens: Path, work: Path) -> None:
    """Usage errors and bad input through the installed console script: no traceback."""
    (work / "notes.txt").write_text("not a trace")
    cases = {("analyze",): 2, ("analyze", "--nosuch", "x"): 2, ("nosuch",): 2,
             ("analyze", "--jobs", "abc", "x"): 2, ("analyze", "missing.json"): 1,
             ("analyze", "notes.txt"): 1}
    for args, code in cases.items():
        out = subprocess.run([str(tracelens), *args], cwd=work, capture_output=True, text=True, timeout=120)
        assert out.returncode == code, (args, out.returncode, out.stderr)
        assert "Traceback" not in out.stderr and out.stderr.strip(), (args, out.stderr)
