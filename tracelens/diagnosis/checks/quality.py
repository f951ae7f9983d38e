"""The trace-quality rules (TL3xx): what the trace cannot answer, and how to record it again."""

from __future__ import annotations

import shlex
from typing import Any

from tracelens.diagnosis.context import Context
from tracelens.diagnosis.facts import Recording
from tracelens.diagnosis.findings import Finding
from tracelens.diagnosis.rule import RERUN_PROFILER, Rule, always, declare_rule, rounded
from tracelens.diagnosis.thresholds import threshold
from tracelens.vocab import Severity


def _q(rule: Rule, ctx: Context, sev: Severity, title: str, evidence: dict[str, Any], adv: str) -> Finding:
    return Finding(rule.id, rule.kind, sev, 1.0, title, {k: rounded(v) for k, v in evidence.items()}, adv,
                   {}, {n: threshold(n) for n in rule.thresholds})


@declare_rule("TL301", "trace_quality", Severity.HIGH, "No steps", precondition="none", requires=always)
def no_steps(rule: Rule, ctx: Context) -> Finding | None:
    if ctx.steady is not None:
        return None
    return _q(rule, ctx, Severity.HIGH, "No steps: the trace holds neither ProfilerStep# nor DataLoader __next__ events",
              {"step_source": ctx.analysis.step_source, "events": ctx.analysis.events},
              f"Re-run with {RERUN_PROFILER}; iterate a torch DataLoader inside the profiled window.")


@declare_rule("TL302", "trace_quality", Severity.HIGH, "No DataLoader events", precondition="none", requires=always)
def no_loader(rule: Rule, ctx: Context) -> Finding | None:
    if ctx.steady is None or ctx.analysis.next_calls > 0:
        return None
    return _q(rule, ctx, Severity.HIGH, "No DataLoader events inside the steps: the loader cannot be judged",
              {"steps": ctx.analysis.measured_steps},
              "The profiled loop does not draw batches from a torch.utils.data.DataLoader inside the "
              "ProfilerStep window (or the iterator is wrapped so its __next__ is not recorded). Another "
              "input pipeline (torchdata.nodes, DALI, FFCV, webdataset, a generator) leaves no event of its "
              "own: `tracelens profile train.py ARGS` times whatever feeds the training loop (the "
              "`tracelens#next(...)` event), and a trace recorded with_stack=True shows torchdata.nodes', "
              f"DALI's and FFCV's __next__ frames. Profile the training loop itself: {RERUN_PROFILER}.")


@declare_rule("TL303", "trace_quality", Severity.LOW, "Steps from the DataLoader fallback", precondition="none",
              requires=always)
def fallback_steps(rule: Rule, ctx: Context) -> Finding | None:
    if ctx.analysis.step_source != "dataloader_next":
        return None
    return _q(rule, ctx, Severity.LOW, "No ProfilerStep# events: steps were taken between DataLoader __next__ calls",
              {"fallback": ctx.analysis.fallback, "measured_steps": ctx.analysis.measured_steps},
              f"The step boundaries are approximate. Re-run with {RERUN_PROFILER}.")


@declare_rule("TL304", "trace_quality", Severity.MEDIUM, "Too few steps to judge", precondition="none",
              thresholds=("min_steps", "confident_steps", "few_steps_confidence"), requires=always)
def few_steps(rule: Rule, ctx: Context) -> Finding | None:
    st = ctx.steady
    if st is None or st.steps >= threshold("confident_steps"):
        return None
    rec = ctx.facts.recording if ctx.facts is not None else None
    severity = Severity.MEDIUM if st.steps < threshold("min_steps") else Severity.LOW
    evidence: dict[str, Any] = {"steady_steps": st.steps, "excluded_steps": st.excluded_steps}
    if rec is not None:
        evidence |= {"loader_id": rec.loader_id, "loader_batches": rec.loader_batches,
                     "wait": rec.wait, "warmup": rec.warmup, "active": rec.active}
    return _q(rule, ctx, severity, f"Only {st.steps} steady step(s): too few to judge the wait pattern",
              evidence, "Confidence is lowered (a healthy verdict is capped at "
              f"{threshold('few_steps_confidence'):.1f}). " + (
                  own_profiler_advice() if ctx.facts is not None and ctx.facts.user_profiler
                  else more_steps_advice(rec, st.excluded_steps)))


#: Steps to record when recording again: the default window of ``tracelens profile``.
TARGET_STEPS = 20


def rerun_command(rec: Recording, wait: int, warmup: int, active: int) -> str:
    """The ``tracelens profile`` command line (or ``tracelens.profile(...)`` call) of ``rec``'s
    run with this window."""
    if rec.kind == "api":
        return f"tracelens.profile(wait={wait}, warmup={warmup}, active={active})"
    target = f"-m {shlex.quote(rec.target)}" if rec.kind == "module" else shlex.quote(rec.target)
    flags = f"--wait {wait} --warmup {warmup} --active {active}"
    return " ".join(["tracelens profile", flags, target, *(shlex.quote(a) for a in rec.args)])


def own_profiler_advice() -> str:
    """How to record enough steps when the script drives its own profiler (``tracelens profile``
    keeps that profiler's first cycle, so re-running it alone records no more)."""
    return (f"The script drives its own profiler and tracelens analyzed its first cycle: give that "
            f"cycle at least {TARGET_STEPS} active steps (torch.profiler.schedule(wait=5, warmup=2, "
            f"active={TARGET_STEPS}) with prof.step() after every batch), then run `tracelens profile` again.")


def more_steps_advice(rec: Recording | None, excluded: int) -> str:
    """How to record enough steps: this run's own command with the window that gets them, or the
    profiler settings for a trace recorded without ``tracelens profile``."""
    if rec is None:
        return f"Record at least {TARGET_STEPS} steps after warm-up: {RERUN_PROFILER}."
    active = max(TARGET_STEPS, rec.active + excluded)
    if rec.loader_batches >= rec.wait + rec.warmup + active or (rec.stopped_after_window and rec.steps >= rec.active):
        return f"Record {active} steps: `{rerun_command(rec, rec.wait, rec.warmup, active)}`."
    per_epoch = f", {rec.batches_per_epoch} per epoch" if rec.batches_per_epoch else ""
    drawn = f"The script drew only {rec.loader_batches} batches from loader #{rec.loader_id}{per_epoch}"
    room = rec.loader_batches - 2  # with --wait 1 --warmup 1
    if room >= threshold("confident_steps"):
        return (f"{drawn}: skip fewer of them, `{rerun_command(rec, 1, 1, min(room, active))}` (the "
                "first steps then include worker start-up), or run it longer.")
    need = rec.wait + rec.warmup + active
    return (f"{drawn}: run it for at least {need} batches (more epochs or steps: the window spans "
            f"epochs), then `{rerun_command(rec, rec.wait, rec.warmup, active)}`.")


@declare_rule("TL305", "trace_quality", Severity.MEDIUM, "Truncated or malformed trace", precondition="none",
              requires=always)
def damaged_trace(rule: Rule, ctx: Context) -> Finding | None:
    a = ctx.analysis
    if not a.truncated and not a.skipped_events and not a.zero_length_steps:
        return None
    what = [w for w, on in (("truncated", a.truncated), ("malformed events", a.skipped_events),
                            ("events with unusable times", a.bad_time_events),
                            ("zero-length steps", a.zero_length_steps)) if on]
    lost = a.dropped_steps + a.dropped_waits
    severity = Severity.HIGH if lost else Severity.MEDIUM
    advice = ("Numbers cover the complete events only. Let the profiler finish writing (exit the "
              "`with profile()` block, or export_chrome_trace after stop()) before copying the file.")
    if lost:
        advice = (f"{a.dropped_steps} ProfilerStep# and {a.dropped_waits} DataLoader __next__ event(s) were "
                  "dropped for unusable times (e.g. " + "; ".join(a.bad_time_examples[:3]) + "), so a wait may "
                  "be missing from the numbers: the trace cannot show that the loader keeps up. " + advice)
    return _q(rule, ctx, severity, "The trace is damaged: " + ", ".join(what),
              {"truncated": a.truncated, "skipped_events": a.skipped_events,
               "bad_time_events": a.bad_time_events, "bad_time_examples": list(a.bad_time_examples),
               "dropped_steps": a.dropped_steps, "dropped_waits": a.dropped_waits,
               "zero_length_steps": a.zero_length_steps}, advice)


@declare_rule("TL306", "trace_quality", Severity.LOW, "Profiler overhead: with_stack", precondition="none",
              requires=always)
def with_stack(rule: Rule, ctx: Context) -> Finding | None:
    if not ctx.analysis.with_stack:
        return None
    return _q(rule, ctx, Severity.LOW, "Recorded with with_stack=True: host times are inflated",
              {"with_stack": True},
              "Python stack recording adds overhead to every operator and makes CPU work look longer "
              "than it is; re-run with with_stack=False (and record_shapes=False) for timing.")


@declare_rule("TL307", "trace_quality", Severity.MEDIUM, "No GPU activity in a GPU run", precondition="none",
              requires=always)
def gpu_without_activity(rule: Rule, ctx: Context) -> Finding | None:
    a = ctx.analysis
    if not a.gpu_expected or a.has_gpu_activity:
        return None
    return _q(rule, ctx, Severity.MEDIUM, "A GPU run without GPU activity in the trace",
              {"gpu_expected": True, "has_gpu_activity": False},
              "The trace shows GPUs or CUDA runtime calls but no kernels or copies, so exposed wait "
              "equals data wait. Record device activity: activities=[ProfilerActivity.CPU, "
              "ProfilerActivity.CUDA] (CUPTI must be available).")


#: The rules of this module, in the order they run.
RULES: tuple[Rule, ...] = (no_steps, no_loader, fallback_steps, few_steps, damaged_trace, with_stack, gpu_without_activity,)
