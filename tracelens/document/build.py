"""The ``analyze --json`` / ``analysis.json`` document of SPEC §3, built from analysis results
as the structs of :mod:`tracelens.document.schema`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import msgspec
import numpy as np
from msgspec.structs import replace

from tracelens._version import __version__
from tracelens.analysis import TraceAnalysis
from tracelens.diagnosis import Diagnosis
from tracelens.diagnosis import Finding as RuleFinding
from tracelens.diagnosis.knobs import knob_for
from tracelens.diagnosis.ranks import RankTimes, Straggler, find_straggler
from tracelens.document.jsondoc import Rows, Values
from tracelens.document.schema import (
    PART_FIELDS,
    SCHEMA_VERSION,
    Copies,
    CpuSupplySummary,
    Device,
    Document,
    FailedRank,
    Finding,
    JobDocument,
    JobSource,
    Loader,
    Metrics,
    Recommendation,
    RecommendationPart,
    SkippedRule,
    Source,
    StepBreakdown,
    StepRow,
    TraceFacts,
)
from tracelens.runjson import RunInfo, Tool

#: The writer, named in every document (SPEC §3).
TOOL = Tool(name="tracelens", version=__version__)


def _num(x: float | None, digits: int = 6) -> float | None:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return None
    return round(float(x), digits)


def _step_row(values: dict[str, Any]) -> StepRow:
    return StepRow(**values)


def per_step_records(analysis: TraceAnalysis) -> Rows:
    """The per-step table as rows of :class:`StepRow` (ms rounded to 4 decimals, NaN as null),
    kept as its numpy columns: millions of steps must not become millions of structs."""
    table = analysis.per_step
    columns = {str(k): table[k] for k in table.columns}
    return Rows(columns, {k: "int" if k in ("step", "next_calls") else "ms" for k in columns}, _step_row)


def step_breakdown_of(analysis: TraceAnalysis) -> StepBreakdown | None:
    """The median step's breakdown (ms, 6 decimals: the parts sum to ``step_ms``), None without steps."""
    b = analysis.step_breakdown
    if b is None:
        return None
    gpu = b.get("gpu_busy_ms")
    return StepBreakdown(steps=[int(x) for x in b["steps"]], step_ms=float(_num(b["step_ms"]) or 0.0),
                         gpu_busy_ms=_num(gpu) if gpu is not None else None,
                         **{k: float(_num(b[k]) or 0.0) for k in PART_FIELDS})


def loader_of(analysis: TraceAnalysis, diagnosis: Diagnosis, run: RunInfo | None) -> Loader:
    """The loader's settings as known, and which loader it is (run.json's; null for a bare trace)."""
    s = diagnosis.settings
    known = Loader(iterator=analysis.iterator, num_workers=s.num_workers, pin_memory=s.pin_memory,
                   persistent_workers=s.persistent_workers, prefetch_factor=s.prefetch_factor,
                   iterator_names=list(analysis.iterator_names))
    lo = run.main_loader if run is not None else None
    if lo is None:
        return known
    return replace(known, id=lo.id, cls=lo.cls, dataset_class=lo.dataset_class, dataset_len=lo.dataset_len,
                   batches_per_epoch=lo.batches_per_epoch, batch_size=lo.batch_size, created_at=lo.created_at,
                   framework=lo.framework, training=lo.training, pipeline=dict(lo.pipeline),
                   max_workers=lo.max_workers)


def finding_of(f: RuleFinding) -> Finding:
    """A rule's finding as a document entry."""
    return Finding(id=f.id, kind=f.kind, severity=f.severity.value, confidence=f.confidence, title=f.title,
                   evidence=dict(f.evidence), advice=f.advice, settings=dict(f.settings),
                   thresholds=dict(f.thresholds))


def recommendation_of(diagnosis: Diagnosis, loader: Loader | None = None) -> Recommendation:
    """The diagnosis' recommendation as a document entry, naming the knob of ``loader``."""
    rec = diagnosis.recommendation
    knob = (knob_for(loader.cls, loader.framework, loader.pipeline, rec.num_workers, diagnosis.diagnosis)
            if loader is not None else None)
    return Recommendation(
        num_workers=rec.num_workers, pin_memory=rec.pin_memory, persistent_workers=rec.persistent_workers,
        prefetch_factor=rec.prefetch_factor, notes=list(rec.notes), expected_speedup=_num(rec.expected_speedup, 4),
        torch_threads_per_worker=rec.torch_threads_per_worker, torch_threads_main=rec.torch_threads_main,
        env=dict(rec.env), keep_current=list(rec.keep_current),
        expected_speedup_bound=_num(rec.expected_speedup_bound, 4), expected_basis=rec.expected_basis,
        measure_with=rec.measure_with,
        parts=[RecommendationPart(setting=p.setting, value=p.value, rule=p.rule, kind=p.kind, reason=p.reason)
               for p in rec.parts],
        knob=knob.name if knob is not None else None, knob_advice=knob.text or None if knob is not None else None)


def cpu_supply(run: RunInfo | None) -> CpuSupplySummary | None:
    """run.json's CPU supply over the window (who else used the cores), without the per-sample
    columns; None for a bare trace or an older run.json."""
    s = run.telemetry.supply if run is not None and run.telemetry is not None else None
    if s is None:
        return None
    return CpuSupplySummary(usable_cores=s.usable_cores, busy_cores=s.busy_cores, job_cpu_cores=s.job_cpu_cores,
                            other_cpu_cores=s.other_cpu_cores, cores_left=s.cores_left,
                            cgroup_throttled_fraction=s.cgroup_throttled_fraction,
                            pressure_fraction=s.pressure_fraction, top_other_processes=list(s.top_other_processes))


def build_document(analysis: TraceAnalysis, diagnosis: Diagnosis, run: RunInfo | None = None) -> Document:
    """One rank's analysis as the SPEC §3 document."""
    a = analysis
    loader = loader_of(a, diagnosis, run)
    return Document(
        schema_version=SCHEMA_VERSION,
        tool=TOOL,
        source=Source(path=a.path, format=a.format, ranks=[a.rank] if a.rank is not None else None,
                      devices=[d.label for d in a.devices]),
        steps=a.steps,
        metrics=Metrics(
            step_time_ms_median=_num(a.step_time_ms_median, 4),
            data_wait_fraction=_num(a.data_wait_fraction),
            exposed_data_wait_fraction=_num(a.exposed_data_wait_fraction),
            gpu_busy_fraction=_num(a.gpu_busy_fraction),
            step_time_ms_total=_num(a.step_time_ms, 4),
            measured_steps=a.measured_steps,
            speedup_ceiling=_num(a.speedup_ceiling, 4),
            gpu_idle_other_fraction=_num(a.gpu_idle_other_fraction),
            sync_ms_per_step=_num(a.sync_ms_per_step, 4),
            next_calls=a.next_calls,
            collective_ms_per_step=_num(a.collective_ms_per_step, 4),
            step_breakdown=step_breakdown_of(a),
        ),
        loader=loader,
        diagnosis=diagnosis.diagnosis,
        recommendation=recommendation_of(diagnosis, loader),
        findings=[finding_of(f) for f in diagnosis.findings],
        diagnosis_confidence=_num(diagnosis.confidence, 3),
        rules_skipped=[SkippedRule(id=s.id, reason=s.reason) for s in diagnosis.skipped],
        step_source=a.step_source,
        fallback=a.fallback,
        devices=[Device(device=d.device, label=d.label, busy_ms=d.busy_ms, busy_fraction=d.busy_fraction,
                        exposed_data_wait_fraction=d.exposed_data_wait_fraction) for d in a.devices],
        copies=Copies(h2d_pageable=a.copies.h2d_pageable, h2d_pinned=a.copies.h2d_pinned,
                      h2d_other=a.copies.h2d_other, h2d_pageable_ms_per_step=a.copies.h2d_pageable_ms_per_step,
                      h2d_pageable_host_blocked_ms_per_step=a.copies.h2d_pageable_host_blocked_ms_per_step),
        trace=TraceFacts(
            events=a.events, truncated=a.truncated, skipped_events=a.skipped_events, with_stack=a.with_stack,
            has_gpu_activity=a.has_gpu_activity, bad_time_events=a.bad_time_events,
            bad_time_examples=list(a.bad_time_examples), dropped_steps=a.dropped_steps,
            dropped_waits=a.dropped_waits, zero_length_steps=a.zero_length_steps,
        ),
        warnings=list(a.warnings),
        per_step=per_step_records(a),
        next_wait_ms=Values(np.asarray(a.next_wait_ms, dtype=np.float64)),
        cpu_supply=cpu_supply(run),
        rank_=a.rank if a.rank is not None else msgspec.UNSET,
    )


def _straggler(docs: Sequence[Document]) -> tuple[Straggler | None, list[Document]]:
    """The rank whose loader holds the others (None: none does) and the rank documents, those
    that only wait for it at the collectives marked so, with its info finding."""
    times = [t for d in docs if (t := RankTimes.measured(
        d.rank, d.metrics.step_time_ms_total, d.metrics.measured_steps, d.metrics.exposed_data_wait_fraction,
        d.metrics.collective_ms_per_step)) is not None]
    found = find_straggler(times)
    if found is None:
        return None, list(docs)
    marked = [d if (w := found.waiting.get(d.rank or 0)) is None else replace(
        d, waits_for_rank_=found.rank, findings=[*d.findings, finding_of(w)]) for d in docs]
    return found, marked


def build_multirank_document(docs: Sequence[Document], path: str,
                             failed: Sequence[FailedRank] = ()) -> JobDocument:
    """The SPEC §3 multi-rank shape: per-rank objects, the slowest rank, and the job's diagnosis,
    recommendation and findings (the slowest rank's, led by ``rank_straggler`` when one rank's
    loader holds the others at the collectives); ``failed`` lists the ranks that gave none."""
    def exposed(d: Document) -> float:
        v = d.metrics.exposed_data_wait_fraction
        return -1.0 if v is None else float(v)

    straggler, ranks = _straggler(docs)
    slowest = max(ranks, key=exposed)
    rank = slowest.rank
    assert rank is not None, "every rank of a job has its rank"
    medians = [d.metrics.step_time_ms_median for d in ranks if d.metrics.step_time_ms_median is not None]
    findings = [finding_of(straggler.finding)] if straggler is not None else []
    findings += [replace(f, rank_=rank) for f in slowest.findings]
    note = (f"From rank {rank}, the slowest (every rank waits for it at the next collective): "
            "apply it to every rank's loader when they run the same script.")
    return JobDocument(
        schema_version=SCHEMA_VERSION,
        tool=TOOL,
        source=JobSource(path=path, format="directory", ranks=[d.rank for d in ranks if d.rank is not None]),
        ranks=ranks,
        slowest_rank=rank,
        slowest_rank_exposed_data_wait_fraction=slowest.metrics.exposed_data_wait_fraction,
        step_time_ms_median_max=max(medians) if medians else None,
        diagnosis=slowest.diagnosis,
        recommendation=replace(slowest.recommendation, notes=[note, *slowest.recommendation.notes]),
        findings=findings,
        rank_straggler=straggler.rank if straggler is not None else None,
        failed_ranks_=list(failed) if failed else msgspec.UNSET,
    )
