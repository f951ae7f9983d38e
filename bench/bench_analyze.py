"""Benchmark: `tracelens analyze --json` against stdlib `json.load` (gc disabled) on big traces.

One command builds the traces and prints the table that bench/results.md holds:

    python bench/bench_analyze.py [--out /tmp/tracelens-bench] [--shared ../shared/traces] [--runs 3]

Traces, built once into ``--out`` (bench/make_big_trace.py, bench/make_steps_trace.py):

- ``resnet``: kineto's ResNet-50 profiler_api sample (num_workers=0) repeated to ~1 GB;
- ``control``: HTA's trace_diff control repeated to ~1 GB;
- ``steps``: 3 million small steps (a ProfilerStep and a DataLoader ``__next__`` each, ~800 MB);
- ``steps600``: the same 3 million steps written compactly (~600 MB: issue 21's memory bound).

Each command runs ``--runs`` times, alternating, each in a fresh process; the table gives the
medians of wall time, CPU time (user + system of the process and every child it waited for) and
peak memory. Memory is the peak, sampled every 50 ms with psutil, of the whole process tree
(tracelens decodes in worker processes): the sum of PSS where Linux gives it (pages shared by
forked workers counted once), else the sum of RSS. ``--baseline DIR`` adds the rows of another
tracelens source tree (run as ``python -m tracelens`` with ``PYTHONPATH=DIR``). ``--lock FILE``
takes an exclusive flock on FILE around each trace's runs (machines shared by several people).

The per-stage profile (bench/profile_stages.py, one process, one core) follows the table.
"""

from __future__ import annotations

import argparse
import fcntl
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "traces"
SOURCES = {
    "resnet": "kineto/tb_plugin/samples/resnet50_profiler_api_num_workers_0/worker0.pt.trace.json.gz",
    "control": "hta/tests/data/trace_diff/control/control.json.gz",
}
TIME = Path("/usr/bin/time")
JSON_LOAD = "import gc, json, sys; gc.disable(); json.load(open(sys.argv[1], 'rb'))"


@dataclass(frozen=True)
class Run:
    wall_s: float
    cpu_s: float
    peak_mb: float  # the process tree's summed PSS, sampled
    rss_mb: float  # the kernel's peak RSS of the largest process (/usr/bin/time's %M)


def _memory(p: psutil.Process) -> int:
    try:
        return int(p.memory_full_info().pss)
    except (AttributeError, psutil.AccessDenied):
        return int(p.memory_info().rss)


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def measure(cmd: list[str], env: dict[str, str] | None = None) -> Run:
    """Wall seconds, CPU seconds and peak memory of the process tree (MB) of one run of ``cmd``."""
    cpu0 = _children_cpu()
    fd, rss_file = tempfile.mkstemp(prefix="bench-rss-")
    os.close(fd)
    if TIME.is_file():
        cmd = [str(TIME), "-f", "%M", "-o", rss_file, *cmd]
    t0 = time.perf_counter()
    # From the temp directory: ``python -m`` puts the working directory first on sys.path, so run
    # from a checkout it would import that checkout's tracelens instead of PYTHONPATH's (--baseline).
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, env=env, cwd=tempfile.gettempdir())
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
    text = Path(rss_file).read_text().strip()
    os.unlink(rss_file)
    rss_kb = float(text.splitlines()[-1]) if text else math.nan
    return Run(wall, _children_cpu() - cpu0, peak / 1e6, rss_kb / 1e3)


@contextmanager
def held(lock: Path | None) -> Iterator[None]:
    """An exclusive flock on ``lock`` (nothing without one)."""
    if lock is None:
        yield
        return
    with lock.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build(name: str, out: Path, shared: Path) -> Path:
    """The trace ``name`` in ``out``, built when missing."""
    path = out / f"{name}.json"
    if path.exists():
        return path
    py = sys.executable
    if name in ("steps", "steps600"):
        cmd = [py, str(HERE / "make_steps_trace.py"), str(path), "--steps", "3000000"]
        cmd += ["--compact"] if name == "steps600" else []
    else:
        source = shared / SOURCES[name]
        if not source.is_file():
            raise SystemExit(f"{source}: not found (give --shared the directory of ../shared/traces)")
        cmd = [py, str(HERE / "make_big_trace.py"), str(source), str(path), "--size-mb", "1000"]
    subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL)
    return path


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    mem = psutil.virtual_memory().total / 2**30
    return (f"{psutil.cpu_count()} cores ({cpu}), {mem:.0f} GiB, Python {platform.python_version()}, "
            f"load average {load} at the start")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "tracelens-bench",
                    help="where the traces are built and kept (~2.8 GB; default: the temp directory)")
    ap.add_argument("--shared", type=Path, default=SHARED, help="../shared/traces (the real traces repeated)")
    ap.add_argument("--traces", default="resnet,control,steps", help="comma-separated: resnet, control, steps, steps600")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--baseline", type=Path, help="another tracelens source tree to run beside this one")
    ap.add_argument("--no-json-load", action="store_true", help="skip the json.load rows (no ratio then)")
    ap.add_argument("--no-stages", action="store_true", help="skip the per-stage profile")
    ap.add_argument("--lock", type=Path, help="flock this file around each trace's runs")
    a = ap.parse_args()
    a.out = a.out.resolve()  # the runs start in the temp directory
    a.out.mkdir(parents=True, exist_ok=True)
    names = [n.strip() for n in a.traces.split(",") if n.strip()]
    header = f"Machine: {machine()}; medians of {a.runs} alternating runs."
    print(header, file=sys.stderr)
    py = sys.executable
    here_env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    lines = [header, "",
             "| trace | size MB | command | wall s | CPU s | CPU s/GB | peak PSS MB | max RSS MB | speed vs json.load "
             "| PSS / size | RSS / size |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    paths = {n: build(n, a.out, a.shared) for n in names}
    for name in names:
        path = paths[name]
        size_mb = path.stat().st_size / 1e6
        cmds: dict[str, tuple[list[str], dict[str, str]]] = {}
        if not a.no_json_load:
            cmds["json.load (gc off)"] = ([py, "-c", JSON_LOAD, str(path)], dict(os.environ))
        if a.baseline is not None:
            env = {**os.environ, "PYTHONPATH": str(a.baseline.resolve())}
            cmds[f"tracelens analyze ({a.baseline.name})"] = ([py, "-m", "tracelens", "analyze", "--json", str(path)], env)
        cmds["tracelens analyze"] = ([py, "-m", "tracelens", "analyze", "--json", str(path)], here_env)
        runs: dict[str, list[Run]] = {k: [] for k in cmds}
        with held(a.lock):
            for i in range(a.runs):
                for label, (cmd, env) in cmds.items():
                    r = measure(cmd, env)
                    runs[label].append(r)
                    print(f"  {name} run {i + 1}/{a.runs} {label}: {r.wall_s:.2f} s, {r.cpu_s:.2f} CPU s, "
                          f"{r.peak_mb:.0f} MB PSS, {r.rss_mb:.0f} MB RSS (load {os.getloadavg()[0]:.2f})",
                          file=sys.stderr)
        base = statistics.median(r.wall_s for r in runs["json.load (gc off)"]) if not a.no_json_load else None
        for label, rs in runs.items():
            wall = statistics.median(r.wall_s for r in rs)
            cpu = statistics.median(r.cpu_s for r in rs)
            peak = statistics.median(r.peak_mb for r in rs)
            rss = statistics.median(r.rss_mb for r in rs)
            speed = f"{base / wall:.2f}x" if base else "-"
            lines.append(f"| {name} | {size_mb:.0f} | {label} | {wall:.2f} | {cpu:.2f} | {cpu / size_mb * 1e3:.1f} | "
                         f"{peak:.0f} | {rss:.0f} | {speed} | {peak / size_mb:.2f} | {rss / size_mb:.2f} |")
    table = "\n".join(lines)
    print(table)
    if not a.no_stages:
        with held(a.lock):
            stages = subprocess.run([py, str(HERE / "profile_stages.py"), *(str(paths[n]) for n in names)],
                                    check=True, capture_output=True, text=True, env=here_env).stdout
        print()
        print(stages)
        table += "\n\n" + stages
    (a.out / "results.md").write_text(table + "\n")
    print(f"\n(written to {a.out / 'results.md'})", file=sys.stderr)


if __name__ == "__main__":
    main()
