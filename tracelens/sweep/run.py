"""Orchestration: one trial per setting, each in its own Python process
(``python -m tracelens.capture.script.measure``), within a time budget, with a progress line on stderr;
and the public entry point that writes ``sweep.json`` and the page."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from tracelens.render.html import write_atomic
from tracelens.render.sweep import render_sweep_html
from tracelens.sweep.document import sweep_document
from tracelens.sweep.settings import Setting
from tracelens.sweep.stats import (
    AUTO_MAX_WORKERS_PER_CORE,
    Choice,
    Throughput,
    choose,
    is_faster,
    next_auto_workers,
    summarize,
)
from tracelens.sweep.trials import (
    SweepPlan,
    SweepResult,
    Trial,
    TrialRunner,
    TrialSpec,
    contention,
    cpu_bound,
    eligible,
    explain,
    machine_was_busy,
    steps_for,
)
from tracelens.system.procs import cores, run_group
from tracelens.system.rundirs import timestamped_dir


def run_setting(plan: SweepPlan, setting: Setting, runner: TrialRunner, index: int) -> Trial:
    """Measure one setting ``plan.repeats`` times; once more when the machine was busy during
    it (the measurement that waited less for a core is kept, with a note)."""
    trial = _run_setting_once(plan, setting, runner, index)
    if machine_was_busy(trial, plan.usable_cores):
        again = _run_setting_once(plan, setting, runner, index + 50)
        waits = [contention(t, "run_queue_delay_per_s") or 0.0 for t in (trial, again)]
        kept = again if again.ok and waits[1] < waits[0] else trial
        return Trial(kept.setting, kept.throughput, kept.raw, trial.wall_s + again.wall_s, remeasured=True)
    return trial


def _run_setting_once(plan: SweepPlan, setting: Setting, runner: TrialRunner, index: int) -> Trial:
    raws = []
    t0 = time.perf_counter()
    steps = steps_for(setting, plan.steps, plan.windows)
    for r in range(plan.repeats):
        spec = TrialSpec(plan.target, plan.args, plan.module, setting.overrides(), steps, plan.warmup)
        raws.append(runner(spec, index * 100 + r))
    # A repeat that cannot be compared (no batch, a handful of steps) adds nothing to the rate.
    usable = [raw for raw in raws if not raw.get("unusable")]
    tp = summarize([(raw.get("step_ns", []), raw.get("wait_ns", [])) for raw in usable], plan.windows)
    return Trial(setting, tp, tuple(raws), time.perf_counter() - t0)


class Progress:
    """``trial k of n`` and the running best, one line per trial on a stream (stderr)."""

    def __init__(self, stream: TextIO | None) -> None:
        self.stream = stream

    def start(self, k: int, n: int | None, setting: Setting) -> None:
        if self.stream is not None:
            of = f"{k} of {n}" if n else f"{k}"
            self.stream.write(f"[sweep] trial {of}: num_workers={setting.label()} ...\n")
            self.stream.flush()

    def done(self, trial: Trial, best: Trial | None) -> None:
        if self.stream is None:
            return
        t = trial.throughput
        line = (f"[sweep]   {t.steps_per_s:,.1f} steps/s (IQR {t.spread:,.1f}), data wait "
                f"{100 * t.data_wait_fraction:.0f} %, {trial.wall_s:.1f} s")
        if not trial.ok:
            line = f"[sweep]   no usable steps ({_failure(trial)})"
        if best is not None:
            line += f" | best so far: {best.setting.label()} at {best.throughput.steps_per_s:,.1f} steps/s"
        self.stream.write(line + "\n")
        self.stream.flush()


def _failure(trial: Trial) -> str:
    raw = trial.raw[0] if trial.raw else {}
    if raw.get("unusable"):
        return f"not compared: {raw['unusable']}"
    if raw.get("error"):
        return str(raw["error"])
    if raw.get("script_error"):
        return f"the script failed ({raw['script_error']}), exit status {raw.get('exit_status')}"
    return f"exit status {raw.get('exit_status')}, stopped: {raw.get('stop_reason')}"


def trial_notes(trials: Sequence[Trial], usable_cores: int) -> list[str]:
    """What the reader of the rates should know about how the trials were measured."""
    notes = []
    guessed = [t.setting.label() for t in trials if any(r.get("loader_choice") == "most_batches" for r in t.raw)]
    if guessed:
        notes.append(f"num_workers={', '.join(guessed)}: no batch was followed by a backward pass before the "
                     "measurement, so the loader that drew the most batches was timed (an inference loop, or an "
                     "evaluation before training)")
    for t in trials:
        if t.remeasured:
            notes.append(f"num_workers={t.setting.label()}: other processes held the cores during the first "
                         "measurement (its threads waited for a core while fewer than the cores); measured "
                         "again, the less disturbed run is kept"
                         + (": still disturbed, so it may understate this setting" if machine_was_busy(t, usable_cores) else ""))
    return notes


def _budget_allows(started: float, budget_s: float, trials: Sequence[Trial]) -> bool:
    """Whether another trial (as long as the longest so far) still fits the budget."""
    elapsed = time.perf_counter() - started
    longest = max((t.wall_s for t in trials), default=0.0)
    return elapsed + longest <= budget_s


def run_sweep(plan: SweepPlan, runner: TrialRunner, progress: Progress | None = None,
              auto_start: int | None = None, auto_start_source: str | None = None) -> SweepResult:
    """Run every setting of the plan (or the auto exploration from ``auto_start``)."""
    progress = progress or Progress(None)
    started = time.perf_counter()
    trials: list[Trial] = []
    notes: list[str] = []

    def best_so_far() -> Trial | None:
        ok = [trials[i] for i in eligible(trials, plan.usable_cores)]
        if not ok:
            return None
        c = choose([t.setting for t in ok], [t.throughput for t in ok])
        return ok[c.best]

    if plan.settings:
        queue = list(plan.settings)
        for k, s in enumerate(queue):
            if trials and not _budget_allows(started, plan.time_budget_s, trials):
                notes.append(f"time budget of {plan.time_budget_s:.0f} s reached: "
                             f"{len(queue) - k} setting(s) not measured ({', '.join(x.label() for x in queue[k:])})")
                break
            progress.start(k + 1, len(queue), s)
            trials.append(run_setting(plan, s, runner, k))
            progress.done(trials[-1], best_so_far())
    else:
        start = max(0, auto_start or 0)
        max_workers = max(1, AUTO_MAX_WORKERS_PER_CORE * plan.usable_cores)
        by_workers: dict[int, Throughput] = {}
        k = 0
        while True:
            cap = max_workers
            if cpu_bound(trials):  # more workers than cores cannot add throughput of its own
                cap = max(1, min(max_workers, plan.usable_cores))
            w = next_auto_workers({k: v for k, v in by_workers.items() if k <= cap}, min(start, cap), cap)
            if w is None:
                break
            if trials and not _budget_allows(started, plan.time_budget_s, trials):
                notes.append(f"time budget of {plan.time_budget_s:.0f} s reached before num_workers={w}")
                break
            s = Setting(w, plan.auto_pin_memory, plan.auto_prefetch_factor if w > 0 else None)
            k += 1
            progress.start(k, None, s)
            trial = run_setting(plan, s, runner, k - 1)
            trials.append(trial)
            by_workers[w] = trial.throughput
            progress.done(trial, best_so_far())
            if not trial.ok:
                notes.append(f"num_workers={w} measured no step: auto exploration stopped")
                break
    notes += trial_notes(trials, plan.usable_cores)
    ok = eligible(trials, plan.usable_cores)
    choice: Choice | None = None
    reason = "no trial measured any step: " + "; ".join(f"{t.setting.label()}: {_failure(t)}" for t in trials)
    if ok:
        sub = choose([trials[i].setting for i in ok], [trials[i].throughput for i in ok])
        choice = Choice(ok[sub.best], ok[sub.fastest], tuple(ok[i] for i in sub.within_noise))
        reason = explain(trials, choice, plan.usable_cores)
        over = [t for i, t in enumerate(trials) if t.ok and i not in ok
                and is_faster(t.throughput, trials[choice.fastest].throughput)]
        if over:
            t = max(over, key=lambda t: t.throughput.steps_per_s)
            wait = contention(t, "run_queue_delay_per_s")
            notes.append(
                f"num_workers={t.setting.label()} measured {t.throughput.steps_per_s:,.1f} steps/s, more than "
                f"any setting within the {plan.usable_cores}-core budget, but the loading is CPU-bound: "
                "beyond the budget its workers only win CPU time from other processes on this machine"
                + (f" (its threads waited {wait:.1f} s per second for a core)" if wait is not None else "")
                + "; not chosen")
    return SweepResult(plan, tuple(trials), choice, reason, auto_start, auto_start_source, tuple(notes),
                       time.perf_counter() - started)


# --- running trials in child processes --------------------------------------------------------

def subprocess_runner(out_dir: Path, timeout_s: float | None = None) -> TrialRunner:
    """A runner that starts ``python -m tracelens.capture.script.measure`` per trial.

    The script's own output goes to ``trials/trial-<k>.log``; the result to ``trial-<k>.json``.
    """
    trials_dir = out_dir / "trials"

    def run(spec: TrialSpec, k: int) -> dict[str, Any]:
        trials_dir.mkdir(parents=True, exist_ok=True)
        spec_path = trials_dir / f"trial-{k}.spec.json"
        result_path = trials_dir / f"trial-{k}.json"
        spec_path.write_text(json.dumps(asdict(spec)))
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        with open(trials_dir / f"trial-{k}.log", "wb") as log:
            try:
                status = run_group([sys.executable, "-m", "tracelens.capture.script.measure", str(spec_path),
                                    str(result_path)], stdout=log, timeout_s=timeout_s, env=env)
            except subprocess.TimeoutExpired:
                return {"error": f"trial timed out after {timeout_s:.0f} s", "step_ns": [], "wait_ns": []}
        if not result_path.is_file():
            return {"error": f"the trial process failed (status {status}); see {trials_dir / f'trial-{k}.log'}",
                    "step_ns": [], "wait_ns": []}
        return dict(json.loads(result_path.read_text()))

    return run


def recommended_start(target: str, args: Sequence[str], module: bool, out_dir: Path,
                      timeout_s: float = 300.0) -> tuple[int | None, str]:
    """num_workers the diagnosis recommends, from one short profiled run of the script.

    Returns (None, why) when the profiled run or its analysis fails.
    """
    run_dir = out_dir / "profile"
    code = (
        "import sys; from pathlib import Path; "
        "from tracelens.capture import ProfileOptions, run_profile; "
        "r = run_profile(ProfileOptions(target=sys.argv[1], args=tuple(sys.argv[4:]), module=sys.argv[2] == '1', "
        "out=Path(sys.argv[3]), force=True, no_report=True)); "
        "sys.exit(0 if r.window_captured else 3)"
    )
    with open(out_dir / "profile.log", "wb") as log:
        try:
            status = run_group([sys.executable, "-c", code, target, "1" if module else "0", str(run_dir), *args],
                               stdout=log, timeout_s=timeout_s)
        except subprocess.TimeoutExpired:
            return None, f"the profiled run timed out after {timeout_s:.0f} s"
    if status != 0:
        return None, f"the profiled run captured no window (status {status}, see {out_dir / 'profile.log'})"
    try:
        from tracelens.api import analyze_path
        from tracelens.document.schema import rank_documents

        doc = analyze_path(run_dir).document
    except Exception as exc:
        return None, f"the profiled run could not be analyzed ({exc})"
    rank = rank_documents(doc)[0]
    workers = rank.recommendation.num_workers
    if workers is None:
        return None, "the profiled run's recommendation keeps num_workers as it is"
    return int(workers), f"diagnosis {rank.diagnosis} of a profiled run"


def usable_cores() -> int:
    """Cores this process may use (affinity, cgroup quota), at least 1."""
    try:
        from tracelens.capture.machine.facts import core_facts

        n = core_facts().get("usable_cores")
        if n:
            return int(n)
    except Exception:
        pass
    return cores()


def default_out_dir(target: str, root: Path = Path("tracelens-runs")) -> Path:
    """``tracelens-runs/sweep-<stem>-<YYYYmmdd-HHMMSS>`` (suffixed when it exists)."""
    stem = Path(target).stem if target.endswith(".py") else target.rsplit(".", 1)[-1]
    return timestamped_dir(root, f"sweep-{stem}")


def write_outputs(result: SweepResult, out_dir: Path) -> tuple[Path, Path]:
    """Write ``sweep.json`` and ``report.html`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = sweep_document(result)
    js = write_atomic(out_dir / "sweep.json", json.dumps(doc, indent=2, allow_nan=False) + "\n")
    return js, write_atomic(out_dir / "report.html", render_sweep_html(doc))


def plan_trial_timeout(plan: SweepPlan) -> float:
    """Per-trial timeout (s): the whole budget, at least a minute."""
    return max(60.0, plan.time_budget_s)


def sweep(plan: SweepPlan, out_dir: Path, progress: TextIO | None = sys.stderr,
          auto: bool = False) -> tuple[SweepResult, Path, Path]:
    """Run the sweep with child processes and write its outputs; the public entry point."""
    out_dir.mkdir(parents=True, exist_ok=True)
    start: int | None = None
    source: str | None = None
    if auto:
        if progress is not None:
            progress.write("[sweep] auto: one profiled run for the diagnosis' recommendation ...\n")
        start, source = recommended_start(plan.target, plan.args, plan.module, out_dir)
        if start is None:
            source = f"{source}; started from num_workers=0"
        if progress is not None:
            progress.write(f"[sweep] auto: starting at num_workers={start or 0} ({source})\n")
    runner = subprocess_runner(out_dir, plan_trial_timeout(plan))
    result = run_sweep(plan, runner, Progress(progress), auto_start=start, auto_start_source=source)
    js, html = write_outputs(result, out_dir)
    return result, js, html
