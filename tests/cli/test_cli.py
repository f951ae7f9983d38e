"""The command line: exit codes, one-line errors, JSON output, both entry points."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.builders import TraceBuilder, starved_loop


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tracelens", *args], capture_output=True, text=True, timeout=120)


@pytest.fixture
def trace(tmp_path: Path) -> Path:
    return starved_loop(TraceBuilder(device_names=("NVIDIA H100",)), steps=4).write(tmp_path / "t.json.gz", compress=True)


def test_analyze_prints_the_verdict_and_numbers(trace: Path) -> None:
    out = run("analyze", str(trace))
    assert out.returncode == 0, out.stderr
    assert "input" in out.stdout.lower()
    assert "30.0 %" in out.stdout
    assert "truncated" not in out.stdout


def test_analyze_json_is_one_parseable_document(trace: Path) -> None:
    out = run("analyze", "--json", str(trace))
    doc = json.loads(out.stdout)
    assert doc["steps"] == 4
    assert doc["metrics"]["exposed_data_wait_fraction"] == pytest.approx(0.3)
    assert doc["source"]["format"] == "json.gz"


@pytest.mark.parametrize(
    ("content", "needle"),
    [(b"", "empty"), (b"{not json", "not valid JSON"), (b"<html><body>502</body></html>", "HTML"),
     (b'{"a": 1}', "not a Chrome trace"), (b"\x1f\x8bnot-really-gzip", "gzip")],
)
def test_bad_input_exits_1_with_one_line_naming_the_file(tmp_path: Path, content: bytes, needle: str) -> None:
    p = tmp_path / "bad.json"
    p.write_bytes(content)
    out = run("analyze", str(p))
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert str(p) in lines[0] and needle in lines[0]
    assert "Traceback" not in out.stderr


def test_missing_file_exits_1_and_debug_shows_the_traceback(tmp_path: Path) -> None:
    out = run("analyze", str(tmp_path / "missing.json"))
    assert out.returncode == 1 and "no such file" in out.stderr and "Traceback" not in out.stderr
    dbg = run("--debug", "analyze", str(tmp_path / "missing.json"))
    assert dbg.returncode == 1 and "Traceback" in dbg.stderr


def test_directory_of_ranks_gives_the_multi_rank_document(tmp_path: Path) -> None:
    for r in range(3):
        b = starved_loop(TraceBuilder(rank=r), steps=2, wait_us=10_000 * (r + 1), compute_us=50_000)
        b.write(tmp_path / f"rank{r}.json")
    doc = json.loads(run("analyze", "--json", str(tmp_path)).stdout)
    assert [r["rank"] for r in doc["ranks"]] == [0, 1, 2]
    assert doc["slowest_rank"] == 2


def test_ranks_come_from_file_names_when_traces_do_not_say(tmp_path: Path) -> None:
    for r in (3, 1):
        starved_loop(TraceBuilder(), steps=2, wait_us=1000 * r).write(tmp_path / f"worker{r}.pt.trace.json")
    doc = json.loads(run("analyze", "--json", str(tmp_path)).stdout)
    assert [r["rank"] for r in doc["ranks"]] == [1, 3]


def test_several_windows_of_one_rank_are_analyzed_together(tmp_path: Path) -> None:
    logdir = tmp_path / "plugins" / "profile" / "run1"
    logdir.mkdir(parents=True)
    starved_loop(TraceBuilder(rank=0), steps=2).write(logdir / "host.1.pt.trace.json")
    starved_loop(TraceBuilder(rank=0), steps=3).write(logdir / "host.2.pt.trace.json.gz", compress=True)
    doc = json.loads(run("analyze", "--json", str(tmp_path)).stdout)
    assert doc["steps"] == 5
    assert doc["metrics"]["data_wait_fraction"] == pytest.approx(0.3)


def test_empty_directory_is_a_bad_input(tmp_path: Path) -> None:
    out = run("analyze", str(tmp_path))
    assert out.returncode == 1 and "no trace files" in out.stderr


def test_help_explains_the_commands() -> None:
    out = run("--help")
    assert out.returncode == 0 and "analyze" in out.stdout
    assert "--json" in run("analyze", "--help").stdout


def test_console_script_and_module_agree(trace: Path) -> None:
    exe = shutil.which("tracelens")
    if exe is None:
        pytest.skip("console script not installed")
    a = subprocess.run([exe, "analyze", "--json", str(trace)], capture_output=True, text=True, check=True)
    b = run("analyze", "--json", str(trace))
    assert json.loads(a.stdout) == json.loads(b.stdout)


def test_fail_on_rejects_an_unknown_severity(trace: Path) -> None:
    out = run("analyze", "--fail-on", "urgent", str(trace))
    assert out.returncode == 2 and "--fail-on" in out.stderr


def test_html_outputs_are_never_overwritten_without_force(trace: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    out.write_text("mine")
    for args in (("analyze", str(trace), "--html", str(out)), ("compare", str(trace), str(trace), "--html", str(out))):
        refused = run(*args)
        assert refused.returncode == 2 and "--force" in refused.stderr and out.read_text() == "mine"
        assert run(*args, "--force").returncode == 0 and out.read_text().startswith("<!doctype html>")
        out.write_text("mine")
    assert run("analyze", str(trace), "--html", str(tmp_path)).returncode == 2  # a directory


def test_error_lines_show_escape_sequences_instead_of_obeying_them(tmp_path: Path) -> None:
    name = tmp_path / "t\x1b]0;pwned\x07\x1b[2J\u202egnp.json"
    name.write_text("not json")
    out = run("analyze", str(name))
    assert out.returncode == 1
    assert "\x1b" not in out.stderr and "\x07" not in out.stderr and "\u202e" not in out.stderr
    assert "\\x1b]0;pwned\\x07" in out.stderr and "\\u202egnp.json" in out.stderr


def test_counts_beyond_their_caps_are_usage_errors(trace: Path, tmp_path: Path) -> None:
    script = tmp_path / "s.py"
    script.write_text("pass\n")
    for args in (("analyze", "-j", "100000", str(trace)), ("sweep", "--num-workers", "0,100000", str(script)),
                 ("sweep", "--steps", "0", str(script)), ("profile", "--active", "100000000", str(script))):
        out = run(*args)
        assert out.returncode == 2 and "Traceback" not in out.stderr, (args, out.stderr)


def test_special_files_are_named_for_what_they_are(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    for path, what in ((fifo, "is a named pipe (FIFO)"), (Path("/dev/null"), "is a character device")):
        out = run("analyze", str(path))
        assert out.returncode == 1 and what in out.stderr and "holds no trace files" not in out.stderr


def test_every_rank_file_gets_its_own_verdict(tmp_path: Path) -> None:
    # GIVEN two good ranks, an empty one, an HTML page saved as a rank, and one cut mid-event
    for r in range(2):
        starved_loop(TraceBuilder(rank=r), steps=3).write(tmp_path / f"rank{r}.json")
    (tmp_path / "rank2.json").write_text("")
    (tmp_path / "rank3.json").write_text("<!doctype html><html>502 Bad Gateway</html>")
    whole = starved_loop(TraceBuilder(rank=4), steps=3).text()
    (tmp_path / "rank4.json").write_text(whole[: len(whole) * 2 // 3])
    out = run("analyze", "--json", str(tmp_path))
    # THEN the good and the cut ranks are analyzed, each bad one is named, and the exit status says so
    doc = json.loads(out.stdout)
    assert out.returncode == 1 and sorted(r["rank"] for r in doc["ranks"]) == [0, 1, 4]
    assert [f["rank"] for f in doc["failed_ranks"]] == [2, 3]
    assert "rank2.json: the file is empty" in out.stderr and "is an HTML page" in out.stderr
    assert next(r for r in doc["ranks"] if r["rank"] == 4)["trace"]["truncated"] is True
