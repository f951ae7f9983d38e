"""Benchmark: `tracelens analyze` against stdlib `json.load` (gc disabled) on a big trace.

Builds ``bench/out/big.json`` (and ``.json.gz``) of about ``--size-mb`` MB from a real trace by
repeating its steps with shifted times (bench/make_big_trace.py), then runs each command
``--runs`` times, alternating, each in a fresh process, and reports the median wall time and
the median peak memory. Memory is the peak, sampled every 50 ms with psutil, of the memory of
the whole process tree (tracelens decodes in worker processes): the sum of PSS where Linux
gives it (pages shared by forked workers counted once), else the sum of RSS.

    python bench/bench_analyze.py [--source TRACE] [--size-mb 1000] [--runs 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
DEFAULT_SOURCE = HERE.parent.parent / "shared/traces/hta/tests/data/trace_diff/control/control.json.gz"

JSON_LOAD = "import gc, json, sys; gc.disable(); json.load(open(sys.argv[1], 'rb'))"
JSON_LOAD_GZ = "import gc, gzip, json, sys; gc.disable(); json.load(gzip.open(sys.argv[1], 'rb'))"
GUNZIP = "import gzip, sys\nf = gzip.open(sys.argv[1], 'rb')\nwhile f.read(1 << 24): pass"


def _memory(p: psutil.Process) -> int:
    try:
        return int(p.memory_full_info().pss)
    except (AttributeError, psutil.AccessDenied):
        return int(p.memory_info().rss)


def measure(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, peak memory of the process tree in MB) of one run of ``cmd``."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    root = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            procs = [root, *root.children(recursive=True)]
            peak = max(peak, sum(_memory(p) for p in procs if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with {proc.returncode}")
    return wall, peak / 1e6


def bench(label: str, cmds: dict[str, list[str]], runs: int) -> dict[str, tuple[float, float]]:
    results: dict[str, list[tuple[float, float]]] = {k: [] for k in cmds}
    for i in range(runs):
        for name, cmd in cmds.items():
            results[name].append(measure(cmd))
            w, m = results[name][-1]
            print(f"  {label} run {i + 1}/{runs} {name}: {w:.2f} s, {m:.0f} MB", file=sys.stderr)
    return {k: (statistics.median(w for w, _ in v), statistics.median(m for _, m in v)) for k, v in results.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="real trace whose steps are repeated")
    ap.add_argument("--size-mb", type=float, default=1000.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=HERE / "out")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    plain, gz = a.out / "big.json", a.out / "big.json.gz"
    make = [sys.executable, str(HERE / "make_big_trace.py"), str(a.source)]
    if not plain.exists():
        subprocess.run([*make, str(plain), "--size-mb", str(a.size_mb)], check=True)
    if not gz.exists():
        subprocess.run([*make, str(gz), "--size-mb", str(a.size_mb), "--gzip"], check=True)
    exe = shutil.which("tracelens") or "tracelens"
    py = sys.executable
    size_mb = plain.stat().st_size / 1e6
    r_plain = bench("json", {
        "json.load (gc off)": [py, "-c", JSON_LOAD, str(plain)],
        "tracelens analyze": [exe, "analyze", "--json", str(plain)],
    }, a.runs)
    r_gz = bench("json.gz", {
        "json.load (gc off)": [py, "-c", JSON_LOAD_GZ, str(gz)],
        "gunzip only": [py, "-c", GUNZIP, str(gz)],
        "tracelens analyze": [exe, "analyze", "--json", str(gz)],
    }, a.runs)
    lines = [
        f"Trace: {size_mb:.0f} MB uncompressed ({gz.stat().st_size / 1e6:.0f} MB gzipped), "
        f"{a.source.name} repeated; median of {a.runs} runs; {psutil.cpu_count()} cores.",
        "",
        "| file | command | wall s | peak memory MB | speed vs json.load | memory / uncompressed size |",
        "|---|---|---|---|---|---|",
    ]
    for fmt, res in (("json", r_plain), ("json.gz", r_gz)):
        base = res["json.load (gc off)"][0]
        for name, (w, m) in res.items():
            lines.append(f"| {fmt} | {name} | {w:.2f} | {m:.0f} | {base / w:.2f}x | {m / size_mb:.2f} |")
    table = "\n".join(lines)
    print(table)
    (HERE / "results.md").write_text("# `tracelens analyze` benchmark\n\n" + table + "\n")


if __name__ == "__main__":
    main()
