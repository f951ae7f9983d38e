"""The ``analyze --json`` / ``analysis.json`` document of SPEC §3, built from analysis results."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

from tracelens.analysis import TraceAnalysis
from tracelens.diagnosis import Diagnosis
from tracelens.diagnosis.knobs import knob_for
from tracelens.diagnosis.ranks import find_straggler, mark_waiting_ranks
from tracelens.runjson import RunInfo

SCHEMA_VERSION = 1


def _num(x: float | None, digits: int = 6) -> float | None:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return None
    return round(float(x), digits)


def per_step_records(analysis: TraceAnalysis) -> list[dict[str, Any]]:
    """The per-step table as JSON-ready rows (ms, NaN as null)."""
    rows: list[dict[str, Any]] = []
    for rec in analysis.per_step.to_dict(orient="records"):
        rows.append({str(k): (int(v) if k in ("step", "next_calls") else _num(v, 4)) for k, v in rec.items()})
    return rows


def loader_identity(run: RunInfo | None) -> dict[str, Any]:
    """Which loader the numbers are about (run.json's; all null for a bare trace)."""
    lo = run.main_loader if run is not None else None
    if lo is None:
        keys = ("id", "class", "dataset_class", "dataset_len", "batches_per_epoch", "batch_size",
                "created_at", "framework", "training", "max_workers")
        return dict.fromkeys(keys) | {"pipeline": {}}
    return {"id": lo.id, "class": lo.cls, "dataset_class": lo.dataset_class, "dataset_len": lo.dataset_len,
            "batches_per_epoch": lo.batches_per_epoch, "batch_size": lo.batch_size,
            "created_at": lo.created_at, "framework": lo.framework, "training": lo.training,
            "pipeline": dict(lo.pipeline), "max_workers": lo.max_workers}


def build_document(analysis: TraceAnalysis, diagnosis: Diagnosis, run: RunInfo | None = None) -> dict[str, Any]:
    """One rank's analysis as the SPEC §3 object (required keys first, extras after)."""
    settings = diagnosis.settings
    rec = diagnosis.recommendation
    doc: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "source": {
            "path": analysis.path,
            "format": analysis.format,
            "ranks": [analysis.rank] if analysis.rank is not None else None,
            "devices": [d.label for d in analysis.devices],
        },
        "steps": analysis.steps,
        "metrics": {
            "step_time_ms_median": _num(analysis.step_time_ms_median, 4),
            "data_wait_fraction": _num(analysis.data_wait_fraction),
            "exposed_data_wait_fraction": _num(analysis.exposed_data_wait_fraction),
            "gpu_busy_fraction": _num(analysis.gpu_busy_fraction),
            "step_time_ms_total": _num(analysis.step_time_ms, 4),
            "measured_steps": analysis.measured_steps,
            "speedup_ceiling": _num(analysis.speedup_ceiling, 4),
            "gpu_idle_other_fraction": _num(analysis.gpu_idle_other_fraction),
            "sync_ms_per_step": _num(analysis.sync_ms_per_step, 4),
            "next_calls": analysis.next_calls,
            "collective_ms_per_step": _num(analysis.collective_ms_per_step, 4),
        },
        "loader": {
            "iterator": analysis.iterator,
            "num_workers": settings.num_workers,
            "pin_memory": settings.pin_memory,
            "persistent_workers": settings.persistent_workers,
            "prefetch_factor": settings.prefetch_factor,
            "iterator_names": list(analysis.iterator_names),
            **loader_identity(run),
        },
        "diagnosis": diagnosis.diagnosis,
        "recommendation": {
            "num_workers": rec.num_workers,
            "pin_memory": rec.pin_memory,
            "persistent_workers": rec.persistent_workers,
            "prefetch_factor": rec.prefetch_factor,
            "notes": list(rec.notes),
            "expected_speedup": _num(rec.expected_speedup, 4),
            "torch_threads_per_worker": rec.torch_threads_per_worker,
            "torch_threads_main": rec.torch_threads_main,
            "env": dict(rec.env),
            "keep_current": list(rec.keep_current),
        },
        "findings": [asdict(f) | {"severity": f.severity.value} for f in diagnosis.findings],
        "diagnosis_confidence": _num(diagnosis.confidence, 3),
        "rules_skipped": [asdict(s) for s in diagnosis.skipped],
        "step_source": analysis.step_source,
        "fallback": analysis.fallback,
        "devices": [asdict(d) for d in analysis.devices],
        "copies": asdict(analysis.copies),
        "trace": {
            "events": analysis.events,
            "truncated": analysis.truncated,
            "skipped_events": analysis.skipped_events,
            "with_stack": analysis.with_stack,
            "has_gpu_activity": analysis.has_gpu_activity,
            "bad_time_events": analysis.bad_time_events,
            "bad_time_examples": list(analysis.bad_time_examples),
            "dropped_steps": analysis.dropped_steps,
            "dropped_waits": analysis.dropped_waits,
            "zero_length_steps": analysis.zero_length_steps,
        },
        "warnings": list(analysis.warnings),
        "per_step": per_step_records(analysis),
        "next_wait_ms": [round(x, 4) for x in analysis.next_wait_ms],
    }
    if analysis.rank is not None:
        doc["rank"] = analysis.rank
    knob = knob_for(doc["loader"], rec.num_workers, diagnosis.diagnosis)
    doc["recommendation"]["knob"] = knob.name
    if knob.text:
        doc["recommendation"]["knob_advice"] = knob.text
    return doc


def build_multirank_document(docs: list[dict[str, Any]], path: str) -> dict[str, Any]:
    """The SPEC §3 multi-rank shape: per-rank objects, the slowest rank, and the job's diagnosis,
    recommendation and findings (the slowest rank's, led by ``rank_straggler`` when one rank's
    loader holds the others at the collectives)."""
    def exposed(d: dict[str, Any]) -> float:
        v = d["metrics"]["exposed_data_wait_fraction"]
        return -1.0 if v is None else float(v)

    slowest = max(docs, key=exposed)
    medians = [d["metrics"]["step_time_ms_median"] for d in docs if d["metrics"]["step_time_ms_median"] is not None]
    straggler = find_straggler(docs)
    if straggler is not None:
        mark_waiting_ranks(docs, straggler)
    findings = [straggler] if straggler is not None else []
    findings += [f | {"rank": slowest["rank"]} for f in slowest.get("findings", [])]
    rec = dict(slowest["recommendation"])
    rec["notes"] = [f"From rank {slowest['rank']}, the slowest (every rank waits for it at the next collective): "
                    "apply it to every rank's loader when they run the same script.", *rec.get("notes", [])]
    return {
        "schema_version": SCHEMA_VERSION,
        "source": {"path": path, "format": "directory", "ranks": [d["rank"] for d in docs]},
        "ranks": docs,
        "slowest_rank": slowest["rank"],
        "slowest_rank_exposed_data_wait_fraction": slowest["metrics"]["exposed_data_wait_fraction"],
        "step_time_ms_median_max": max(medians) if medians else None,
        "diagnosis": slowest["diagnosis"],
        "recommendation": rec,
        "findings": findings,
        "rank_straggler": straggler["evidence"]["rank"] if straggler is not None else None,
    }
