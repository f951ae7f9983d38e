"""Orchestration: the sweep's trial processes and rounds (:mod:`.schedule`), the result (the
choice, the ceiling, how disturbed the machine was), and the public entry point that writes
``sweep.json`` and the page."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from tracelens.render.html import write_atomic
from tracelens.render.sweep import render_sweep_html
from tracelens.sweep.document import sweep_document
from tracelens.sweep.pool import SubprocessTrial, TrialProcess
from tracelens.sweep.rounds import choose, disturbance, faster, paired, undecided
from tracelens.sweep.schedule import Launcher, Probe, Progress, Scheduler, Slot
from tracelens.sweep.settings import Setting
from tracelens.sweep.stats import Choice
from tracelens.sweep.trials import (
    Ceiling,
    SweepPlan,
    SweepResult,
    Trial,
    contention,
    eligible,
    explain,
    failure,
)
from tracelens.system.procs import cores, run_group
from tracelens.system.rundirs import timestamped_dir


def run_sweep(plan: SweepPlan, launch: Launcher, probe: Probe | None = None, progress: Progress | None = None,
              auto_start: int | None = None, auto_start_source: str | None = None) -> SweepResult:
    """Measure the plan's settings (or the auto exploration from ``auto_start``) in interleaved
    rounds, and choose."""
    sched = Scheduler(plan, launch, probe or (lambda: (None, None)), progress or Progress(None), auto_start)
    sched.run()
    slots = [s for s in sched.slots if not s.duplicate]
    trials = [s.trial() for s in slots if not s.setting.replay]
    notes = list(sched.notes) + trial_notes(trials)
    ok = eligible(trials, plan.usable_cores)
    choice: Choice | None = None
    reason = "no trial measured any step: " + "; ".join(f"{t.setting.label()}: {failure(t)}" for t in trials)
    if ok:
        sub = choose([_measured(trials[i]) for i in ok])
        choice = Choice(ok[sub.best], ok[sub.fastest], tuple(ok[i] for i in sub.within_noise))
        reason = explain(trials, choice, plan.usable_cores)
        notes += [f"{t.setting.label()}: not chosen, its script failed ({t.raw['script_error']})"
                  for i, t in enumerate(trials) if t.ok and i not in ok and t.crashed]
        over = [t for i, t in enumerate(trials) if t.ok and i not in ok and not t.setting.replay and not t.crashed
                and faster(_measured(t), _measured(trials[choice.fastest]))]
        if over:
            t = max(over, key=lambda t: t.throughput.steps_per_s)
            wait = contention(t, "run_queue_delay_per_s")
            notes.append(
                f"num_workers={t.setting.label()} measured {t.throughput.steps_per_s:,.1f} steps/s, more than "
                f"any setting within the {plan.usable_cores}-core budget, but the loading is CPU-bound: "
                "beyond the budget its workers only win CPU time from other processes on this machine"
                + (f" (its threads waited {wait:.1f} s per second for a core)" if wait is not None else "")
                + "; not chosen")
    live_last = [_measured(t) for t in trials if t.ok and not t.stopped]
    dist = disturbance([_measured(t) for t in trials if t.ok], undecided(live_last)) if trials else None
    if dist is not None and dist.too_disturbed:
        reason += " " + dist.text
    return SweepResult(plan, tuple(trials), choice, reason, auto_start, auto_start_source, tuple(notes),
                       sched.elapsed(), tuple(sched.summaries), dist, _ceiling(sched, slots, trials),
                       sched.startup_wall_s)


def _measured(t: Trial) -> Any:
    from tracelens.sweep.rounds import Measured

    return Measured(t.setting, t.rounds, t.throughput)


def _ceiling(sched: Scheduler, slots: list[Slot], trials: list[Trial]) -> Ceiling | None:
    """The replay against the script's own loader, measured and estimated."""
    replay = next((s for s in slots if s.setting.replay), None)
    if replay is None:
        return None
    rt = replay.trial()
    base_slot = next((s for s in slots if s.key == sched.baseline_key), None)
    base = next((i for i, t in enumerate(trials) if base_slot is not None and t.setting == base_slot.setting), None)
    notes = []
    measured_ratio = estimated = None
    pair = None
    if base is not None and trials[base].ok and rt.ok:
        bt = trials[base].throughput
        measured_ratio = rt.throughput.steps_per_s / bt.steps_per_s
        pair = paired(rt.rounds, trials[base].rounds)
    if base is not None and trials[base].ok:
        wait = trials[base].throughput.data_wait_fraction
        estimated = 1 / (1 - wait) if wait < 1 else None
    info = rt.raw.get("replay") or {}
    if info.get("copied_on_serve"):
        notes.append("the loop changes its batches in place: every replayed batch was a copy of the cached "
                     "one (a cost a free loader would not have), so the measured ceiling is a little low")
    if info and info.get("batches", 0) < info.get("max_batches", 0):
        notes.append(f"{info.get('batches')} batch(es) cached, not {info.get('max_batches')}: the cache holds at "
                     f"most {info.get('max_bytes', 0) / 2**20:.0f} MiB")
    if rt.raw.get("loader_choice") == "most_batches":
        notes.append("no backward pass was seen: the loader replayed is the one that drew the most batches")
    if not rt.ok:
        notes.append(f"the replay measured no step: {failure(rt)}")
    elif rt.stopped:
        notes.append(f"the replay: {rt.stopped}")
    if base is None:
        notes.append("the script's own loader was not measured, so there is no baseline")
    return Ceiling(base, rt, measured_ratio, pair, estimated, tuple(notes))


def trial_notes(trials: Sequence[Trial]) -> list[str]:
    """What the reader of the rates should know about how the trials were measured."""
    notes = []
    guessed = [t.setting.label() for t in trials if t.raw.get("loader_choice") == "most_batches"]
    if guessed:
        notes.append(f"{', '.join(guessed)}: no batch was followed by a backward pass before the "
                     "measurement, so the loader that drew the most batches was timed (an inference loop, or an "
                     "evaluation before training)")
    for t in trials:
        calls = t.raw.get("script_thread_calls") or []
        if calls and t.setting.main_threads is not None:
            notes.append(f"{t.setting.label()}: the script calls torch.set_num_threads({calls[-1]}) itself; the trial "
                         f"kept {t.setting.main_threads} as the setting asks")
        if t.stopped and t.ok:
            notes.append(f"{t.setting.label()}: {t.stopped}")
    return notes


# --- trial processes --------------------------------------------------------------------------

def subprocess_launcher(plan: SweepPlan, out_dir: Path) -> Launcher:
    """Starts ``python -m tracelens.capture.script.measure`` for a setting (``trials/trial-<k>.*``)."""

    def launch(setting: Setting, k: int) -> TrialProcess:
        spec: dict[str, Any] = {
            "target": plan.target, "args": list(plan.args), "module": plan.module,
            "overrides": setting.overrides(), "steps": plan.steps, "warmup": plan.warmup,
            "main_threads": setting.main_threads, "worker_threads": setting.worker_threads,
            "replay": {"batches": plan.replay_batches, "bytes": plan.replay_bytes} if setting.replay else None,
        }
        return SubprocessTrial(spec, out_dir / "trials", k)

    return launch


def supply_probe() -> Probe:
    """The machine's CPU supply and the sweep's own CPU (this process and all its trials)."""
    from tracelens.capture.machine import cpu_supply

    me = os.getpid()
    return lambda: (cpu_supply.sample(), cpu_supply.tree_cpu_ns(me))


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
    result = run_sweep(plan, subprocess_launcher(plan, out_dir), supply_probe(), Progress(progress),
                       auto_start=start, auto_start_source=source)
    js, html = write_outputs(result, out_dir)
    return result, js, html
