"""The diagnosis (SPEC §3): run every rule, name the main cause, merge the proposals into the
complete recommendation.

Rules read only ``TraceAnalysis`` and run facts (never events); see :mod:`tracelens.diagnosis.rule`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from tracelens.analysis import TraceAnalysis
from tracelens.diagnosis import sizing
from tracelens.diagnosis.checks import loader, quality, secondary
from tracelens.diagnosis.context import Context, build_context
from tracelens.diagnosis.facts import RunFacts
from tracelens.diagnosis.findings import Diagnosis, Finding, Recommendation, Skipped
from tracelens.diagnosis.rule import Rule
from tracelens.diagnosis.thresholds import threshold
from tracelens.runjson import RunInfo
from tracelens.vocab import Severity, pct

#: Every rule, in the order they run (and are listed).
RULES: tuple[Rule, ...] = (*loader.RULES, *secondary.RULES, *quality.RULES)
RULES_BY_ID = {r.id: r for r in RULES}
#: Finding kinds that can be the main cause, in order of precedence.
MAIN_KINDS = ("oversubscription", "cpu_starvation", "io_bound", "input_bound")


def run_rules(ctx: Context) -> tuple[list[Finding], list[Skipped]]:
    """Every rule's finding (if triggered) and every skipped rule with its reason."""
    findings: list[Finding] = []
    skipped: list[Skipped] = []
    for rule in RULES:
        reason = rule.requires(ctx)
        if reason is not None:
            skipped.append(Skipped(rule.id, reason))
            continue
        finding = rule.check(rule, ctx)
        if finding is not None:
            findings.append(finding)
    return findings, skipped


def main_cause(ctx: Context, findings: Sequence[Finding]) -> tuple[str, Finding | None]:
    """The diagnosis and the finding that names it (None for healthy / undetermined)."""
    kinds = {f.kind: f for f in findings}
    if {"TL301", "TL302"} & {f.id for f in findings}:
        return "undetermined", None
    for kind in MAIN_KINDS:
        if kind in kinds:
            return kind, kinds[kind]
    respawn = kinds.get("worker_respawn")
    if respawn is not None and ctx.steady is not None and ctx.steady.startup_fraction >= threshold(
            "exposed_wait_fraction"):
        return "input_bound", respawn  # the wait is worker start-up: persistent_workers, not workers
    if ctx.steady is None or ctx.analysis.next_calls == 0 or ctx.inconclusive is not None:
        return "undetermined", None  # no evidence the loader keeps up (TL3xx say why)
    return "healthy", None


def _diagnosis_note(ctx: Context, diagnosis: str, proposed: dict[str, Any]) -> str | None:
    """The first note: why the settings are what they are, for the diagnoses without a plan."""
    st = ctx.steady
    if diagnosis == "healthy" and st is not None:
        return (f"The loader keeps up: {pct(st.exposed_fraction)} of the step waits for data "
                f"(under the {pct(threshold('exposed_wait_fraction'))} threshold), so the "
                f"worker count stays; removing that wait entirely would gain at most "
                f"{sizing.speedup_ceiling(st.exposed_fraction):.3f}x.")
    if (diagnosis == "input_bound" and "num_workers" not in proposed and "persistent_workers" in proposed
            and st is not None):
        return (f"Input-bound by worker start-up: the epoch turnover (worker shutdown, start-up, "
                f"refilling the queue) is {pct(st.startup_fraction)} of the step time; between "
                f"epochs the loader keeps up ({pct(st.exposed_fraction)} waits for data), so "
                f"the per-batch work is neither CPU- nor I/O-bound in a way more workers would "
                f"fix: keep the worker count, make the workers persistent.")
    if diagnosis == "undetermined":
        return "The trace cannot answer (see the trace_quality findings): settings are repeated as they are."
    return None


def _num_workers(ctx: Context, proposed: dict[str, Any]) -> tuple[int | None, str | None]:
    """num_workers to use (None: keep the current, unknown value) and the note saying so."""
    if "num_workers" in proposed:
        return int(proposed["num_workers"]), None
    if ctx.workers_now is not None:
        return ctx.workers_now, None
    if ctx.analysis.iterator == "multi_process":
        return None, ("Keep your current num_workers: the trace shows worker processes (the "
                      "multi-process iterator) but not how many.")
    return None, "Keep your current num_workers: the trace does not show how many there are."


def _pin_memory(ctx: Context, proposed: dict[str, Any]) -> tuple[bool | None, str | None]:
    """pin_memory to use (None: keep the current, unknown value), and the note when it changes."""
    a = ctx.analysis
    if "pin_memory" in proposed:
        cp = a.copies
        return bool(proposed["pin_memory"]), (f"pin_memory=True: {cp.h2d_pageable} pageable host-to-device "
                                             f"copies cost {cp.h2d_pageable_ms_per_step:.2f} ms per step on the GPU.")
    has_gpu = a.has_gpu_activity or bool(ctx.facts and ctx.facts.has_gpu)
    if not has_gpu and not a.gpu_expected:
        note = "pin_memory=False: no accelerator in this run, pinning only costs a thread."
        return False, note if ctx.settings.pin_memory else None
    if ctx.settings.pin_memory is not None:
        return ctx.settings.pin_memory, None
    if a.copies.h2d_pinned or a.copies.h2d_pageable:  # the copies show it: pinned, or pageable
        return a.copies.h2d_pinned > 0, None
    return None, None


def _worker_lifetime(ctx: Context, workers: int | None, proposed: dict[str, Any],
                     findings: Sequence[Finding]) -> tuple[bool | None, int | None, list[str]]:
    """persistent_workers and prefetch_factor for ``workers`` (None: keep the current, unknown
    value), and the notes on them."""
    if workers == 0:
        return False, None, []
    s, current, notes = ctx.settings, ctx.workers_now, []
    persistent: bool | None = proposed.get("persistent_workers", s.persistent_workers)
    if not persistent and not current and ctx.facts is not None and (ctx.facts.iterator_creations or 0) >= 2:
        persistent = True
        notes.append(f"persistent_workers=True: the loop creates {ctx.facts.iterator_creations} "
                     "iterators in the window (one per epoch), and new workers would start each time.")
    elif "persistent_workers" in proposed:
        notes.append(next(f.advice for f in findings if f.kind == "worker_respawn"))
    prefetch = proposed.get("prefetch_factor", s.prefetch_factor if current else None)
    if "prefetch_factor" in proposed:
        notes.append(next(f.advice for f in findings if f.kind == "prefetch_depth"))
    elif current == 0 and prefetch is None:
        prefetch = 2
        notes.append("prefetch_factor=2 (PyTorch's default for workers): the waits give no sign "
                     "that a deeper queue is needed.")
    return persistent, prefetch, notes


def recommend(ctx: Context, diagnosis: str, findings: Sequence[Finding]) -> Recommendation:
    """Merge the findings' proposals into complete settings; the current value elsewhere."""
    proposed: dict[str, Any] = {}
    for f in findings:
        for k, v in f.settings.items():
            proposed.setdefault(k, v)
    workers, keep_note = _num_workers(ctx, proposed)
    notes = [n for n in (_diagnosis_note(ctx, diagnosis, proposed), keep_note) if n is not None]
    notes += [f.advice for f in findings if f.kind in MAIN_KINDS and f.kind == diagnosis]
    pin, pin_note = _pin_memory(ctx, proposed)
    if pin_note is not None:
        notes.append(pin_note)
    persistent, prefetch, lifetime_notes = _worker_lifetime(ctx, workers, proposed, findings)
    notes += lifetime_notes
    host = next((f for f in findings if f.kind == "host_bound"), None)
    if host is not None and diagnosis in ("healthy", "input_bound", "cpu_starvation", "io_bound"):
        notes.append("Beyond the loader: " + host.title + ". " + host.advice)
    speed = proposed.get("expected_speedup")
    chosen = {"num_workers": workers, "pin_memory": pin, "persistent_workers": persistent}
    keep = tuple(k for k, v in chosen.items() if v is None)
    if workers != 0 and prefetch is None and ctx.workers_now is None:  # the trace hides it
        keep += ("prefetch_factor",)
    return Recommendation(
        num_workers=workers, pin_memory=pin, persistent_workers=persistent, prefetch_factor=prefetch,
        notes=tuple(notes),
        expected_speedup=round(float(speed), 3) if isinstance(speed, int | float)
        else (1.0 if diagnosis == "healthy" else None),
        torch_threads_per_worker=proposed.get("torch_threads_per_worker"),
        torch_threads_main=proposed.get("torch_threads_main"),
        env=dict(proposed.get("env", {})),
        keep_current=keep,
    )


def reconcile(findings: Sequence[Finding], rec: Recommendation) -> list[Finding]:
    """Findings whose proposal lost to the recommendation say so and drop it: one number per
    setting across the headline, the findings and the JSON."""
    chosen = {"num_workers": rec.num_workers, "pin_memory": rec.pin_memory,
              "persistent_workers": rec.persistent_workers, "prefetch_factor": rec.prefetch_factor,
              "torch_threads_main": rec.torch_threads_main, "torch_threads_per_worker": rec.torch_threads_per_worker}
    out = []
    for f in findings:
        lost = {k: v for k, v in f.settings.items() if k in chosen and chosen[k] is not None and v != chosen[k]}
        if lost:
            said = ", ".join(f"{k}={chosen[k]!r}" for k in lost)
            f = replace(f, settings={k: v for k, v in f.settings.items() if k not in lost},
                        advice=f"Superseded by the recommendation ({said}). {f.advice}")
        out.append(f)
    return out


def healthy_confidence(ctx: Context) -> float:
    """Confidence of a "healthy" verdict: 0.9 scaled by the trace's quality, and at most
    ``few_steps_confidence`` from fewer than ``confident_steps`` steady steps."""
    conf = 0.9 * ctx.quality_factor
    if ctx.steady is not None and ctx.steady.steps < threshold("confident_steps"):
        conf = min(conf, threshold("few_steps_confidence"))
    return round(conf, 2)


def diagnose(analysis: TraceAnalysis, run: RunInfo | RunFacts | None = None) -> Diagnosis:
    """Name the main loader-related cause of lost throughput and the settings to use next."""
    ctx = build_context(analysis, run)
    findings, skipped = run_rules(ctx)
    diagnosis, main = main_cause(ctx, findings)
    findings.sort(key=lambda f: (f.id != (main.id if main else ""), -Severity(f.severity).rank, f.id))
    rec = recommend(ctx, diagnosis, findings)
    findings = reconcile(findings, rec)
    conf = healthy_confidence(ctx) if diagnosis == "healthy" else (main.confidence if main else None)
    return Diagnosis(diagnosis, rec, tuple(findings), tuple(skipped), conf, ctx.settings)
