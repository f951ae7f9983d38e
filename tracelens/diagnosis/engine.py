"""The diagnosis (SPEC §3): run every rule, name the main cause, compose the proposals into the
complete recommendation (:mod:`tracelens.diagnosis.compose`).

Rules read only ``TraceAnalysis`` and run facts (never events); see :mod:`tracelens.diagnosis.rule`.
"""

from __future__ import annotations

from collections.abc import Sequence

from tracelens.analysis import TraceAnalysis
from tracelens.diagnosis.checks import cpu, loader, quality, secondary
from tracelens.diagnosis.compose import recommend, reconcile
from tracelens.diagnosis.context import Context, build_context
from tracelens.diagnosis.facts import RunFacts
from tracelens.diagnosis.findings import Diagnosis, Finding, Skipped
from tracelens.diagnosis.rule import Rule
from tracelens.diagnosis.thresholds import threshold
from tracelens.runjson import RunInfo
from tracelens.vocab import Severity

#: Every rule, in the order they run (and are listed).
RULES: tuple[Rule, ...] = (cpu.oversubscription, *loader.RULES, cpu.busy_machine, *secondary.RULES, *quality.RULES)
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
    if (ctx.analysis.exposed_data_wait_fraction or 0.0) >= threshold("healthy_exposed_max"):
        return "input_bound", None  # the wait sits in the epoch turnover the steady state leaves out
    return "healthy", None


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
