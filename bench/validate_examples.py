"""Judge tracelens' advice by measuring it: profile an example, turn the recommendation into the
example's own flags, then run the example with its defaults, with the recommendation and with
the best setting a grid found (docs/frameworks-findings.md), ``--repeats`` times interleaved,
and keep the script's own ``steady-state: X steps/s`` (under torchrun the slowest rank's).

    python bench/validate_examples.py --out /tmp/tl-val image_pipeline iterable_stream

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
from example_grid import run_once, wait_for_quiet

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2"]


@dataclass(frozen=True)
class Case:
    """One example: how to run it, how to profile it, and the best setting its grid measured."""

    script: str
    best: str
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


def validate(name: str, case: Case, out: Path, repeats: int, max_load: float, timeout: float) -> str:
    """Profile, measure, and the Markdown row of one case."""
    cdir = out / name
    cdir.mkdir(parents=True, exist_ok=True)
    doc = profile(case, cdir / "run")
    rec = doc.get("recommendation") or {}
    flags, env = recommended_flags(rec)
    settings = [("", {}), (flags, env)] + ([(case.best, {})] if case.best != flags else [])
    rows: list[dict[str, Any]] = []
    with (cdir / "runs.jsonl").open("w") as fh:
        for _ in range(repeats):
            for f, e in settings:
                wait_for_quiet(max_load, 120)
                row = {"flags": f, "env": e, **run_once(case.command(), f, timeout, e)}
                rows.append(row)
                fh.write(json.dumps(row) + "\n")
                print(name, json.dumps(row), flush=True)
    base, base_runs = median(rows, "")
    after, after_runs = median(rows, flags)
    best, best_runs = median(rows, case.best)
    loads = [x for r in rows for x in (r["load_before"], r["load_after"])]
    effect = f"{after / base:.2f}x" if base and after else "n/a"
    of_best = f"{after / best:.0%} of best" if best and after else "n/a"
    envs = " ".join(f"{k}={v}" for k, v in env.items())
    return (f"| {name} | {doc.get('diagnosis')} ({doc.get('diagnosis_confidence')}) | `{flags or '(no change)'}`"
            f"{' ' + envs if envs else ''}, expected ≤ {rec.get('expected_speedup')}x | "
            f"{base} {base_runs} → {after} {after_runs} | {effect} | `{case.best}` {best} {best_runs}: {of_best} | "
            f"{min(loads):.1f}–{max(loads):.1f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("cases", nargs="*", default=list(CASES), help=f"of {', '.join(CASES)}")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-load", type=float, default=3.0,
                    help="wait (up to 120 s) for the 1-minute load average to fall under this before each run")
    ap.add_argument("--timeout", type=float, default=240.0)
    args = ap.parse_args()
    rows = [validate(n, CASES[n], args.out, args.repeats, args.max_load, args.timeout) for n in args.cases]
    print("\n| case | diagnosis (confidence) | recommendation applied | steps/s before → after, median [runs] "
          "| effect | grid's best, same session | load |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
