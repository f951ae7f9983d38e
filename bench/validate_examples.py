"""Judge tracelens' advice by measuring it: profile an example, turn the recommendation into the
example's own flags, then run the example with its defaults, with the recommendation and with
the best setting a grid found (docs/frameworks-findings.md), ``--repeats`` times interleaved,
and keep the script's own ``steady-state: X steps/s`` (under torchrun the slowest rank's).

    python bench/validate_examples.py --out /tmp/tl-val image_pipeline iterable_stream

Under load (issue 19): ``--neighbours N`` starts N CPU-bound processes (``python -c "while True:
pass"``, tests/busy.py) for the whole case, stopped by PID after it: the example is profiled once
quiet first (its quiet verdict), then profiled and measured beside the neighbours, so the advice is
applied and measured under the load it was given for.

    python bench/validate_examples.py --out /tmp/tl-busy --neighbours 2 --repeats 3 sleep_1ms_loader

Writes ``OUT/<case>/run`` (the profile), ``OUT/<case>/runs.jsonl`` (one line per measured run)
and prints one Markdown row per case for docs/validation.md.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))
from example_grid import run_once, wait_for_quiet

from tests.busy import neighbours

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2"]


@dataclass(frozen=True)
class Case:
    """One example: how to run it, how to profile it, and the best setting its grid measured."""

    script: str
    best: str | None  # None: no grid measured for it
    launcher: tuple[str, ...] = ()
    profile_flags: tuple[str, ...] = ()

    def command(self) -> list[str]:
        """The example as a user runs it (flags appended)."""
        return [*(self.launcher or (sys.executable,)), f"examples/{self.script}.py"]


CASES: dict[str, Case] = {
    "lightning_train": Case("lightning_train", "--num-workers 4 --main-threads 1"),
    "hf_trainer": Case("hf_trainer", "--num-workers 2 --main-threads 1"),
    "ddp_torchrun": Case("ddp_torchrun", "--num-workers 8", launcher=tuple(TORCHRUN)),
    "image_pipeline": Case("image_pipeline", "--num-workers 4 --main-threads 1"),
    "iterable_stream": Case("iterable_stream", "--num-workers 4 --main-threads 1"),
    "short_epoch_respawn": Case("short_epoch_respawn",
                                "--persistent-workers --prefetch-factor 6 --main-threads 1 --worker-threads 1"),
    # the plain examples (their verdicts under load: issue 19)
    "latency_bound_reads": Case("latency_bound_reads", None),
    "sleep_1ms_loader": Case("sleep_1ms_loader", None),
    "cpu_heavy_main_process": Case("cpu_heavy_main_process", None),
    "healthy_compute_bound": Case("healthy_compute_bound", None),
}


def recommended_flags(rec: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """The example's flags (and environment) that apply ``recommendation`` of analysis.json."""
    flags: list[str] = []
    nw = rec.get("num_workers")
    if nw is not None:
        flags += ["--num-workers", str(nw)]
    if rec.get("persistent_workers") and nw != 0:
        flags.append("--persistent-workers")
    if rec.get("prefetch_factor") is not None and nw != 0:
        flags += ["--prefetch-factor", str(rec["prefetch_factor"])]
    if rec.get("torch_threads_main") is not None:
        flags += ["--main-threads", str(rec["torch_threads_main"])]
    if rec.get("torch_threads_per_worker") is not None and nw != 0:
        flags += ["--worker-threads", str(rec["torch_threads_per_worker"])]
    return shlex.join(flags), {k: str(v) for k, v in (rec.get("env") or {}).items()}


def profile(case: Case, run_dir: Path) -> dict[str, Any]:
    """``tracelens profile`` the example; its analysis document."""
    cmd = [sys.executable, "-m", "tracelens", "profile", "--out", str(run_dir), "--force",
           *case.profile_flags]
    script = f"examples/{case.script}.py"
    # under a launcher, the form a user types: tracelens profile -- torchrun ARGS train.py
    cmd += ["--", "torchrun", *case.launcher[3:], script] if case.launcher else [script]
    subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    doc: dict[str, Any] = json.loads((run_dir / "analysis.json").read_text())
    return doc


def median(rows: list[dict[str, Any]], flags: str) -> tuple[float | None, list[float]]:
    """Median steps/s of the runs with ``flags``, and the runs."""
    rates = [r["steps_per_s"] for r in rows if r["flags"] == flags and r["steps_per_s"] is not None]
    return (statistics.median(rates) if rates else None), rates


def busy_cores(doc: dict[str, Any]) -> str:
    """The busy_machine finding's other_cpu_cores, or "none"."""
    busy = next((f for f in doc.get("findings") or [] if f.get("kind") == "busy_machine"), None)
    return "none" if busy is None else f"{busy['evidence'].get('other_cpu_cores') or 0:.2f} cores"


def validate(name: str, case: Case, out: Path, repeats: int, max_load: float, timeout: float,
             hogs: int = 0) -> str:
    """Profile, measure, and the Markdown row of one case (beside ``hogs`` neighbours: its quiet
    verdict first)."""
    cdir = out / name
    cdir.mkdir(parents=True, exist_ok=True)
    quiet = profile(case, cdir / "quiet") if hogs else None
    rows: list[dict[str, Any]] = []
    with neighbours(hogs):
        doc = profile(case, cdir / "run")
        rec = doc.get("recommendation") or {}
        flags, env = recommended_flags(rec)
        settings = [("", {}), (flags, env)]
        if case.best is not None and case.best not in (flags, ""):
            settings.append((case.best, {}))
        with (cdir / "runs.jsonl").open("w") as fh:
            for _ in range(repeats):
                for f, e in settings:
                    if not hogs:
                        wait_for_quiet(max_load, 120)
                    row = {"flags": f, "env": e, "neighbours": hogs, **run_once(case.command(), f, timeout, e)}
                    rows.append(row)
                    fh.write(json.dumps(row) + "\n")
                    print(name, json.dumps(row), flush=True)
    base, base_runs = median(rows, "")
    after, after_runs = median(rows, flags)
    best, best_runs = median(rows, case.best) if case.best is not None else (None, [])
    loads = [x for r in rows for x in (r["load_before"], r["load_after"])]
    effect = f"{after / base:.2f}x" if base and after else "n/a"
    of_best = f"`{case.best}` {best} {best_runs}: {after / best:.0%} of best" if best and after else "n/a"
    envs = " ".join(f"{k}={v}" for k, v in env.items())
    expected = (f"expected ≤ {rec.get('expected_speedup')}x" if rec.get("expected_speedup") is not None
                else f"no estimate (bound {rec.get('expected_speedup_bound')}x)")
    verdicts = f"{doc.get('diagnosis')} ({doc.get('diagnosis_confidence')})"
    if quiet is not None:
        verdicts = (f"{quiet.get('diagnosis')} → {verdicts}; busy_machine: quiet {busy_cores(quiet)}, "
                    f"loaded {busy_cores(doc)}")
    return (f"| {name} | {verdicts} | `{flags or '(no change)'}`{' ' + envs if envs else ''}, {expected} | "
            f"{base} {base_runs} → {after} {after_runs} | {effect} | {of_best} | "
            f"{hogs} | {min(loads):.1f}–{max(loads):.1f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("cases", nargs="*", default=list(CASES), help=f"of {', '.join(CASES)}")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-load", type=float, default=3.0,
                    help="wait (up to 120 s) for the 1-minute load average to fall under this before each run")
    ap.add_argument("--timeout", type=float, default=240.0)
    ap.add_argument("--neighbours", type=int, default=0,
                    help="CPU-bound neighbours running through each case (its quiet profile comes first)")
    args = ap.parse_args()
    rows = [validate(n, CASES[n], args.out, args.repeats, args.max_load, args.timeout, args.neighbours)
            for n in args.cases]
    print("\n| case | diagnosis (confidence) | recommendation applied | steps/s before → after, median [runs] "
          "| effect | grid's best, same session | neighbours | load |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
