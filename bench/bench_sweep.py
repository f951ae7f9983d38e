"""The wall time of ``tracelens sweep`` and its fixed cost per trial, this tree against another.

Runs each case's sweep ``--repeats`` times, alternating this source tree with ``--baseline-src``
(e.g. ``git archive <commit> tracelens templates | tar -x -C DIR``) so that a change of the
machine's load hits both alike, and reads each run's sweep.json:

- wall: the whole command (interpreter start to exit), as the user waits for it;
- per trial: measured = the steps timed (steps / steps/s, all its rounds); fixed = (wall − Σ
  measured) / trials: what the sweep spends per setting besides measuring (interpreter, torch and
  script start-up, the loader's warm-up, the steps each round discards, the wait for the
  workers to settle, the teardown, the parent's own start). Trials overlap in the new sweep, so
  a trial's own wall time says less. ``startup_s`` (trial process start to its first measurable
  step), where sweep.json has it, is given apart.

    python bench/bench_sweep.py --out /tmp/bs.jsonl --repeats 2 --baseline-src /tmp/tl-before stream cpu

Prints one Markdown row per case and tree (medians over the repeats; the 1-minute load average
before each run) and the chosen setting of every run.

``--accuracy`` also runs the script itself once per setting after each sweep (this tree only),
with the setting as the example's flags, and compares the sweep's rate with the
``steady-state: X steps/s`` the script prints (bench/example_grid.py's ``run_once``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from example_grid import run_once  # noqa: E402

#: name -> sweep arguments (the script and its arguments last).
CASES: dict[str, list[str]] = {
    "stream": ["--num-workers", "0,2,4", "examples/iterable_stream.py"],
    "cpu": ["--num-workers", "0,1,2", "examples/cpu_heavy_main_process.py", "--epochs", "4"],
    "image": ["--num-workers", "0,2,4", "examples/image_pipeline.py"],
    "article": ["--num-workers", "0,4,16", "examples/sleep_1ms_loader.py"],
    # the measured ceiling (the script's own settings, and its loop fed by replayed batches);
    # more epochs than the examples' own, so that the replay has steps left to measure
    "ceiling-io": ["--num-workers", "2", "--ceiling", "examples/latency_bound_reads.py", "--epochs", "20"],
    "ceiling-cpu": ["--num-workers", "0", "--ceiling", "examples/cpu_heavy_main_process.py", "--epochs", "20"],
    "ceiling-respawn": ["--num-workers", "2", "--ceiling", "examples/short_epoch_respawn.py", "--epochs", "400"],
}


def run_sweep(args: list[str], src: Path | None, out: Path, timeout: float) -> dict[str, Any]:
    """One ``tracelens sweep`` run with the package from ``src`` (None: this tree)."""
    env = dict(os.environ, PYTHONSAFEPATH="1")  # no cwd on sys.path: ``src`` wins over the checkout
    if src is not None:
        env["PYTHONPATH"] = str(src) + os.pathsep + env.get("PYTHONPATH", "")
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "tracelens", "sweep", "-q", "--out", str(out), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    row: dict[str, Any] = {"status": proc.returncode, "wall_s": round(wall, 2), "load_1m": round(load, 2)}
    path = out / "sweep.json"
    if not path.is_file():
        return row | {"error": proc.stderr[-500:]}
    doc = json.loads(path.read_text())
    trials = []
    for t in doc["trials"]:
        measured = t["steps_measured"] / t["steps_per_s"] if t["steps_per_s"] else 0.0
        trials.append({"label": t["label"], "steps_per_s": t["steps_per_s"], "wall_s": t["wall_s"],
                       "measured_s": round(measured, 3), "fixed_s": round(t["wall_s"] - measured, 3),
                       "startup_s": t.get("startup_s"), "rounds": len(t.get("rounds") or []) or None})
    best = doc.get("best") or {}
    fixed = (wall - sum(t["measured_s"] for t in trials)) / max(1, len(trials))
    return row | {"best": doc["trials"][doc["best_index"]]["label"] if best else None, "trials": trials,
                  "fixed_per_trial_s": round(fixed, 2), "sweep_wall_s": doc.get("wall_s"),
                  "rounds": len(doc.get("rounds") or []) or None, "ceiling": _ceiling(doc.get("ceiling")),
                  "other_cpu_cores": [r.get("other_cpu_cores") for r in doc.get("rounds") or []]}


def _ceiling(c: dict[str, Any] | None) -> dict[str, Any] | None:
    if not c:
        return None
    others = [r["other_cpu_cores"] for r in c["rounds"] if r.get("other_cpu_cores") is not None]
    return {"measured": c["measured"], "measured_ci": c["measured_ci"], "estimated": c["estimated"],
            "replay_steps_per_s": c["replay_steps_per_s"], "compute_step_ms": c["compute_step_ms"],
            "rounds": len(c["rounds"]), "other_cpu_cores": [min(others), max(others)] if others else None}


def ceilings(rows: list[dict[str, Any]]) -> list[str]:
    """Markdown rows: per ceiling case, the measured and estimated ceilings (medians, runs)."""
    out = ["| case | baseline steps/s | replay steps/s (compute-bound step) | measured ceiling, median [runs] | "
           "estimated ceiling, median [runs] | other processes (cores, over the replay's rounds) |",
           "|---|---:|---:|---:|---:|---|"]
    for case in dict.fromkeys(r["case"] for r in rows if r.get("ceiling")):
        mine = [r for r in rows if r["case"] == case and r.get("ceiling")]
        cs = [r["ceiling"] for r in mine]
        base = [r["trials"][0]["steps_per_s"] for r in mine]
        meas = [c["measured"] for c in cs if c["measured"]]
        est = [c["estimated"] for c in cs if c["estimated"]]
        rep = [c["replay_steps_per_s"] for c in cs]
        step = [c["compute_step_ms"] for c in cs if c["compute_step_ms"]]
        others = [c["other_cpu_cores"] for c in cs if c["other_cpu_cores"]]
        out.append(f"| {case} | {statistics.median(base):.1f} | {statistics.median(rep):.1f} "
                   f"({statistics.median(step):.2f} ms) | {_median(meas)}× {meas} | {_median(est)}× {est} | "
                   f"{', '.join(f'{a:.2f}–{b:.2f}' for a, b in others)} |")
    return out


def flags_of(label: str) -> str:
    """The example's own flags for a sweep label (``2 mt=1`` → ``--num-workers 2 --main-threads 1``)."""
    parts = label.split()
    out = [f"--num-workers {parts[0]}"]
    for p in parts[1:]:
        key, _, value = p.partition("=")
        out.append({"mt": f"--main-threads {value}", "wt": f"--worker-threads {value}",
                    "pf": f"--prefetch-factor {value}", "pin": "--pin-memory"}[key])
    return " ".join(out)


def script_rates(case: str, labels: list[str], timeout: float) -> dict[str, Any]:
    """The script's own steady-state rate for each setting (one run each, in order)."""
    args = CASES[case]
    script = next(i for i, a in enumerate(args) if a.endswith(".py"))
    cmd = [sys.executable, str(ROOT / args[script]), *args[script + 1:]]
    return {label: run_once(cmd, flags_of(label), timeout) for label in labels}


def accuracy(rows: list[dict[str, Any]]) -> list[str]:
    """Markdown rows: per case and setting, the sweep's rate and the script's, medians."""
    out = ["| case | setting | sweep steps/s, median [runs] | script's own steps/s, median [runs] | difference |",
           "|---|---|---:|---:|---:|"]
    for case in dict.fromkeys(r["case"] for r in rows if r.get("script")):
        mine = [r for r in rows if r["case"] == case and r.get("script")]
        for label in mine[0]["script"]:
            sw = [t["steps_per_s"] for r in mine for t in r["trials"] if t["label"] == label and t["steps_per_s"]]
            own = [r["script"][label]["steps_per_s"] for r in mine if r["script"][label]["steps_per_s"]]
            if not sw or not own:
                continue
            a, b = statistics.median(sw), statistics.median(own)
            out.append(f"| {case} | {label} | {a:.1f} {[round(x, 1) for x in sw]} | {b:.1f} "
                       f"{[round(x, 1) for x in own]} | {100 * (a - b) / b:+.1f} % |")
    return out


def _median(xs: list[float]) -> float | None:
    return round(statistics.median(xs), 2) if xs else None


def summary(rows: list[dict[str, Any]]) -> list[str]:
    """Markdown rows: case, tree, median wall, median fixed and measured per trial, choices."""
    out = ["| case | tree | sweep wall, median [runs] | fixed per trial (median) | start-up to first measured step | "
           "measured per trial | chosen | 1-min load |", "|---|---|---|---:|---:|---:|---|---|"]
    for case in dict.fromkeys(r["case"] for r in rows):
        for tree in dict.fromkeys(r["tree"] for r in rows):
            mine = [r for r in rows if r["case"] == case and r["tree"] == tree and r.get("trials")]
            if not mine:
                continue
            walls = [r["wall_s"] for r in mine]
            fixed = [r["fixed_per_trial_s"] for r in mine]
            startup = [t["startup_s"] for r in mine for t in r["trials"] if t.get("startup_s") is not None]
            measured = [t["measured_s"] for r in mine for t in r["trials"]]
            out.append(f"| {case} | {tree} | {_median(walls)} s {walls} | {_median(fixed)} s | "
                       f"{_median(startup) if startup else 'n/a'} | {_median(measured)} s | "
                       f"{[r['best'] for r in mine]} | {min(r['load_1m'] for r in mine)}–"
                       f"{max(r['load_1m'] for r in mine)} |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("cases", nargs="*", default=["stream", "cpu"], help=f"of {sorted(CASES)}")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--baseline-src", type=Path, default=None, help="the tree to compare with (its tracelens/)")
    ap.add_argument("--only", choices=("this", "baseline"), default=None, help="run one tree only")
    ap.add_argument("--out", type=Path, required=True, help="JSON lines, one per sweep run (appended)")
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--accuracy", action="store_true", help="also run the script per setting (this tree)")
    args = ap.parse_args()
    trees: list[tuple[str, Path | None]] = [("this", None)]
    if args.baseline_src is not None:
        trees.append(("baseline", args.baseline_src.resolve()))
    if args.only:
        trees = [t for t in trees if t[0] == args.only]
    rows = []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp, args.out.open("a") as fh:
        for rep in range(args.repeats):
            order = trees if rep % 2 == 0 else trees[::-1]
            for case in args.cases:
                for tree, src in order:
                    row = {"case": case, "tree": tree, "repeat": rep,
                           **run_sweep(CASES[case], src, Path(tmp) / f"{case}-{tree}-{rep}", args.timeout)}
                    if args.accuracy and tree == "this" and row.get("trials"):
                        row["script"] = script_rates(case, [t["label"] for t in row["trials"]], args.timeout)
                    rows.append(row)
                    fh.write(json.dumps(row) + "\n")
                    fh.flush()
                    print(json.dumps(row), file=sys.stderr, flush=True)
    print("\n".join(summary(rows)))
    if args.accuracy:
        print()
        print("\n".join(accuracy(rows)))
    if any(r.get("ceiling") for r in rows):
        print()
        print("\n".join(ceilings(rows)))


if __name__ == "__main__":
    main()
