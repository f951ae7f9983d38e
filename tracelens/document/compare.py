"""Before/after comparison of two analyses (``tracelens compare A B``, SPEC §4).

Pure functions over two SPEC §3 documents: the metric deltas (B − A), what happened to each
finding (gone / new / changed / unchanged, matched by id), and a one-sentence verdict. Rendering
(terminal table, HTML) is :mod:`tracelens.render.compare`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from tracelens.document.schema import AnalysisDocument, Document, Finding, JobDocument, to_json
from tracelens.vocab import SETTING_KEYS, pct

SCHEMA_VERSION = 1

#: Relative change of the median step time below which it counts as unchanged. Step times of
#: one run typically scatter by a few percent; the per-step spread widens this (see
#: :func:`step_time_noise_ms`).
MIN_STEP_CHANGE_FRACTION = 0.02
#: A confidence change smaller than this does not make a finding "changed".
CONFIDENCE_EPSILON = 0.05
#: Exposed-wait fractions below this (of step time) are "none" in the verdict (the rule
#: engine's healthy threshold is 5 %; 1 % is what remains after a clean fix).
NEGLIGIBLE_WAIT_FRACTION = 0.01

METRIC_KEYS = (
    "step_time_ms_median",
    "data_wait_fraction",
    "exposed_data_wait_fraction",
    "gpu_busy_fraction",
)
LOADER_KEYS = ("iterator", *SETTING_KEYS)


@dataclass(frozen=True)
class FindingChange:
    """One finding id in A, B or both, and what happened to it."""

    id: str
    kind: str
    status: str  # "gone" | "new" | "changed" | "unchanged"
    title: str
    severity_a: str | None
    severity_b: str | None
    confidence_a: float | None
    confidence_b: float | None


@dataclass(frozen=True)
class Comparison:
    """Two analyses side by side: deltas are B minus A."""

    a: AnalysisDocument  # SPEC §3 document of A (as analyze gives it)
    b: AnalysisDocument
    delta: dict[str, Any]  # the compare --json ``delta`` (SPEC §4): metric keys, loader, diagnosis, findings
    findings: tuple[FindingChange, ...]
    loader_changes: dict[str, tuple[Any, Any]]  # setting -> (A, B), only those that differ
    step_time_changed: bool  # the median moved by more than the noise
    verdict: str
    notes: tuple[str, ...] = ()


def rank_document(doc: AnalysisDocument) -> Document:
    """The single-rank document to compare: the document itself, or its slowest rank."""
    return doc.slowest() if isinstance(doc, JobDocument) else doc


def _sub(b: float | None, a: float | None) -> float | None:
    if a is None or b is None:
        return None
    return round(float(b) - float(a), 6)



def _iqr(xs: list[float]) -> float:
    if len(xs) < 4:
        return 0.0
    s = sorted(xs)
    q = len(s) / 4
    return s[min(len(s) - 1, math.ceil(3 * q) - 1)] - s[max(0, math.ceil(q) - 1)]


def step_time_noise_ms(a: Document, b: Document) -> float:
    """Smallest median step-time change (ms) that counts as real.

    The larger of :data:`MIN_STEP_CHANGE_FRACTION` of A's median and half the mean
    interquartile range of the two runs' per-step durations.
    """
    ma = a.metrics.step_time_ms_median or 0.0
    mean_iqr = (_iqr(a.step_durations()) + _iqr(b.step_durations())) / 2
    spread = mean_iqr / 2
    return max(MIN_STEP_CHANGE_FRACTION * float(ma), spread)


def _finding_key_list(findings: list[Finding]) -> list[tuple[str, Finding]]:
    """Key each finding by its id; a repeated id gets ``#2``, ``#3`` ... in order."""
    seen: dict[str, int] = {}
    out = []
    for f in findings:
        fid = f.id or f.kind or "?"
        seen[fid] = seen.get(fid, 0) + 1
        out.append((fid if seen[fid] == 1 else f"{fid}#{seen[fid]}", f))
    return out


def diff_findings(a: list[Finding], b: list[Finding]) -> tuple[FindingChange, ...]:
    """Match findings by id: gone (only in A), new (only in B), changed / unchanged (both)."""
    fa, fb = dict(_finding_key_list(a)), dict(_finding_key_list(b))
    out: list[FindingChange] = []
    for key in list(fa) + [k for k in fb if k not in fa]:
        x, y = fa.get(key), fb.get(key)
        ref = y if y is not None else x
        assert ref is not None
        if x is None:
            status = "new"
        elif y is None:
            status = "gone"
        else:
            moved = abs(x.confidence - y.confidence) >= CONFIDENCE_EPSILON
            status = "changed" if x.severity != y.severity or moved else "unchanged"
        out.append(FindingChange(
            id=key, kind=ref.kind, status=status, title=ref.title,
            severity_a=x.severity if x else None, severity_b=y.severity if y else None,
            confidence_a=x.confidence if x else None, confidence_b=y.confidence if y else None,
        ))
    order = {"gone": 0, "new": 1, "changed": 2, "unchanged": 3}
    return tuple(sorted(out, key=lambda c: order[c.status]))


def _verdict(a: Document, b: Document, changed: bool) -> str:
    ma, mb = a.metrics, b.metrics
    ea, eb = ma.exposed_data_wait_fraction, mb.exposed_data_wait_fraction
    ta, tb = ma.step_time_ms_median, mb.step_time_ms_median
    parts: list[str] = []
    if ea is not None and eb is not None:
        if ea < NEGLIGIBLE_WAIT_FRACTION and eb < NEGLIGIBLE_WAIT_FRACTION:
            parts.append("neither run waits for data")
        elif eb < ea:
            removed = (ea - eb) / ea
            parts.append(f"B removed {100 * removed:.0f} % of the exposed data wait "
                         f"({pct(ea)} → {pct(eb)} of step time)")
        elif eb > ea:
            grown = "appeared" if ea < NEGLIGIBLE_WAIT_FRACTION else "grew"
            parts.append(f"exposed data wait {grown} ({pct(ea)} → {pct(eb)} of step time)")
        else:
            parts.append(f"exposed data wait unchanged ({pct(ea)} of step time)")
    if ta is not None and tb is not None and ta > 0 and tb > 0:
        step = f"step time {ta:,.1f} → {tb:,.1f} ms"
        if not changed:
            step += " (within noise)"
        elif tb < ta:
            step += f" ({ta / tb:.2f}× faster)"
        else:
            step += f" ({tb / ta:.2f}× slower)"
        parts.append(step)
    if not parts:
        return "The two analyses have no comparable metrics."
    s = "; ".join(parts)
    return s[0].upper() + s[1:] + "."


def compare_documents(doc_a: AnalysisDocument, doc_b: AnalysisDocument) -> Comparison:
    """Compare two SPEC §3 documents (multi-rank ones through their slowest rank)."""
    a, b = rank_document(doc_a), rank_document(doc_b)
    notes: list[str] = []
    for name, d in (("A", doc_a), ("B", doc_b)):
        if isinstance(d, JobDocument):
            notes.append(f"{name} has {len(d.ranks)} ranks: compared through its slowest rank {d.slowest_rank}")
    ma, mb = a.metrics, b.metrics
    gpu_a, gpu_b = ma.gpu_busy_fraction is not None, mb.gpu_busy_fraction is not None
    if gpu_a != gpu_b:
        cpu_side, gpu_side = ("A", "B") if gpu_b else ("B", "A")
        notes.append(f"{cpu_side} has no GPU activity and {gpu_side} has: on {cpu_side} all data wait counts as "
                     f"exposed, on {gpu_side} only the wait the GPU does not cover, so the exposed wait and the "
                     "step times are not like for like (compare two runs on the same kind of device)")
    delta: dict[str, Any] = {k: _sub(getattr(mb, k), getattr(ma, k)) for k in METRIC_KEYS}
    ta, tb = ma.step_time_ms_median, mb.step_time_ms_median
    delta["step_time_change_fraction"] = round(tb / ta - 1, 6) if ta and tb is not None else None
    delta["speedup"] = round(ta / tb, 6) if ta and tb else None
    delta["exposed_data_wait_ms_per_step"] = _sub(mb.exposed_wait_ms_per_step(), ma.exposed_wait_ms_per_step())
    ea, eb = ma.exposed_data_wait_fraction, mb.exposed_data_wait_fraction
    delta["exposed_data_wait_removed_fraction"] = round((ea - eb) / ea, 6) if ea and eb is not None else None
    delta["steps"] = b.steps - a.steps
    changed = ta is not None and tb is not None and abs(tb - ta) > step_time_noise_ms(a, b)
    delta["step_time_changed"] = changed
    loader_changes = {
        k: (getattr(a.loader, k), getattr(b.loader, k))
        for k in LOADER_KEYS
        if getattr(a.loader, k) != getattr(b.loader, k)
    }
    delta["loader"] = {k: {"a": x, "b": y} for k, (x, y) in loader_changes.items()}
    if a.diagnosis != b.diagnosis:
        delta["diagnosis"] = {"a": a.diagnosis, "b": b.diagnosis}
    findings = diff_findings(a.findings, b.findings)
    delta["findings"] = [asdict(f) for f in findings]
    return Comparison(doc_a, doc_b, delta, findings, loader_changes, changed, _verdict(a, b, changed), tuple(notes))


def comparison_document(c: Comparison) -> dict[str, Any]:
    """The ``compare --json`` document of SPEC §4 (``a`` and ``b`` are the typed documents)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "a": c.a,
        "b": c.b,
        "delta": c.delta,
        "verdict": c.verdict,
        "notes": list(c.notes),
    }


def encode_comparison(c: Comparison) -> bytes:
    """The ``compare --json`` bytes: the documents encoded as analysis.json encodes them."""
    return to_json(comparison_document(c))
