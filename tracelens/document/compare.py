"""Before/after comparison of two analyses (``tracelens compare A B``, SPEC §4).

Pure functions over two SPEC §3 documents: the metric deltas (B − A), what happened to each
finding (gone / new / changed / unchanged, matched by id), and a one-sentence verdict. Rendering
(terminal table, HTML) is :mod:`tracelens.render.compare`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

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

    a: dict[str, Any]  # SPEC §3 document of A (as analyze gives it)
    b: dict[str, Any]
    delta: dict[str, Any]
    findings: tuple[FindingChange, ...]
    loader_changes: dict[str, tuple[Any, Any]]  # setting -> (A, B), only those that differ
    step_time_changed: bool  # the median moved by more than the noise
    verdict: str
    notes: tuple[str, ...] = ()


def rank_document(doc: dict[str, Any]) -> dict[str, Any]:
    """The single-rank document to compare: the document itself, or its slowest rank."""
    ranks = doc.get("ranks")
    if isinstance(ranks, list) and ranks:
        slowest = doc.get("slowest_rank")
        return next((r for r in ranks if r.get("rank") == slowest), ranks[0])
    return doc


def _sub(b: float | None, a: float | None) -> float | None:
    if a is None or b is None:
        return None
    return round(float(b) - float(a), 6)


def exposed_wait_ms_per_step(doc: dict[str, Any]) -> float | None:
    """Mean exposed data wait per step (ms): the exposed fraction of the total step time."""
    m = doc.get("metrics", {})
    frac, total, n = m.get("exposed_data_wait_fraction"), m.get("step_time_ms_total"), m.get("measured_steps")
    if frac is None or total is None or not n:
        return None
    return float(frac) * float(total) / int(n)


def step_durations(doc: dict[str, Any]) -> list[float]:
    return [float(r["duration_ms"]) for r in doc.get("per_step", []) if r.get("duration_ms") is not None]


def _iqr(xs: list[float]) -> float:
    if len(xs) < 4:
        return 0.0
    s = sorted(xs)
    q = len(s) / 4
    return s[min(len(s) - 1, math.ceil(3 * q) - 1)] - s[max(0, math.ceil(q) - 1)]


def step_time_noise_ms(a: dict[str, Any], b: dict[str, Any]) -> float:
    """Smallest median step-time change (ms) that counts as real.

    The larger of :data:`MIN_STEP_CHANGE_FRACTION` of A's median and half the mean
    interquartile range of the two runs' per-step durations.
    """
    ma = a["metrics"].get("step_time_ms_median") or 0.0
    mean_iqr = (_iqr(step_durations(a)) + _iqr(step_durations(b))) / 2
    spread = mean_iqr / 2
    return max(MIN_STEP_CHANGE_FRACTION * float(ma), spread)


def _finding_key_list(findings: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """Key each finding by its id; a repeated id gets ``#2``, ``#3`` ... in order."""
    seen: dict[str, int] = {}
    out = []
    for f in findings:
        fid = str(f.get("id") or f.get("kind") or "?")
        seen[fid] = seen.get(fid, 0) + 1
        out.append((fid if seen[fid] == 1 else f"{fid}#{seen[fid]}", f))
    return out


def diff_findings(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> tuple[FindingChange, ...]:
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
            moved = abs(float(x.get("confidence", 0)) - float(y.get("confidence", 0))) >= CONFIDENCE_EPSILON
            status = "changed" if x.get("severity") != y.get("severity") or moved else "unchanged"
        out.append(FindingChange(
            id=key, kind=str(ref.get("kind", "")), status=status, title=str(ref.get("title", "")),
            severity_a=x.get("severity") if x else None, severity_b=y.get("severity") if y else None,
            confidence_a=x.get("confidence") if x else None, confidence_b=y.get("confidence") if y else None,
        ))
    order = {"gone": 0, "new": 1, "changed": 2, "unchanged": 3}
    return tuple(sorted(out, key=lambda c: order[c.status]))


def _wait_phrase(ea: float, eb: float) -> tuple[str, int]:
    """What happened to the exposed data wait, and its direction (-1 less, 0 same, 1 more)."""
    if ea < NEGLIGIBLE_WAIT_FRACTION and eb < NEGLIGIBLE_WAIT_FRACTION:
        return "neither run waits for data", 0
    if eb < ea:
        return (f"B removed {100 * (ea - eb) / ea:.0f} % of the exposed data wait "
                f"({pct(ea)} → {pct(eb)} of step time)"), -1
    if eb > ea:
        grown = "appeared" if ea < NEGLIGIBLE_WAIT_FRACTION else "grew"
        return f"the exposed data wait {grown} ({pct(ea)} → {pct(eb)} of step time)", 1
    return f"the exposed data wait is unchanged ({pct(ea)} of step time)", 0


def _settings_phrase(loader_changes: dict[str, tuple[Any, Any]]) -> str:
    def show(v: Any) -> str:
        return "unknown" if v is None else str(v)

    if not loader_changes:
        return "No DataLoader setting differs between the two runs."
    return "Changed: " + ", ".join(f"{k} {show(x)} → {show(y)}" for k, (x, y) in loader_changes.items()) + "."


def _verdict(a: dict[str, Any], b: dict[str, Any], changed: bool,
             loader_changes: dict[str, tuple[Any, Any]] | None = None) -> str:
    """One sentence that leads with what decides better or worse (the step time when it moved
    beyond the noise, else the exposed data wait), then the settings that differ."""
    ma, mb = a["metrics"], b["metrics"]
    ea, eb = ma.get("exposed_data_wait_fraction"), mb.get("exposed_data_wait_fraction")
    ta, tb = ma.get("step_time_ms_median"), mb.get("step_time_ms_median")
    wait, wait_dir = _wait_phrase(ea, eb) if ea is not None and eb is not None else ("", 0)
    step, step_dir = "", 0
    if ta is not None and tb is not None and ta > 0 and tb > 0:
        if not changed:
            step = f"the median step time is unchanged within noise ({ta:,.1f} → {tb:,.1f} ms)"
        elif tb < ta:
            step, step_dir = f"B's steps are {ta / tb:.2f}× faster ({ta:,.1f} → {tb:,.1f} ms median)", -1
        else:
            step, step_dir = f"B's steps are {tb / ta:.2f}× slower ({ta:,.1f} → {tb:,.1f} ms median)", 1
    if step_dir:  # the step time decides: it leads, and a wait moving the other way is a caveat
        lead = step + (f", although {wait}" if wait and wait_dir == -step_dir else f"; {wait}" if wait else "")
    else:
        lead = "; ".join(x for x in (wait, step) if x)
    if not lead:
        return "The two analyses have no comparable metrics."
    settings = f" {_settings_phrase(loader_changes)}" if loader_changes is not None else ""
    return lead[0].upper() + lead[1:] + "." + settings


def compare_documents(doc_a: dict[str, Any], doc_b: dict[str, Any]) -> Comparison:
    """Compare two SPEC §3 documents (multi-rank ones through their slowest rank)."""
    a, b = rank_document(doc_a), rank_document(doc_b)
    notes: list[str] = []
    for name, d in (("A", doc_a), ("B", doc_b)):
        if "ranks" in d:
            notes.append(f"{name} has {len(d['ranks'])} ranks: compared through its slowest rank {d.get('slowest_rank')}")
    ma, mb = a["metrics"], b["metrics"]
    gpu_a, gpu_b = ma.get("gpu_busy_fraction") is not None, mb.get("gpu_busy_fraction") is not None
    if gpu_a != gpu_b:
        cpu_side, gpu_side = ("A", "B") if gpu_b else ("B", "A")
        notes.append(f"{cpu_side} has no GPU activity and {gpu_side} has: on {cpu_side} all data wait counts as "
                     f"exposed, on {gpu_side} only the wait the GPU does not cover, so the exposed wait and the "
                     "step times are not like for like (compare two runs on the same kind of device)")
    delta: dict[str, Any] = {k: _sub(mb.get(k), ma.get(k)) for k in METRIC_KEYS}
    ta, tb = ma.get("step_time_ms_median"), mb.get("step_time_ms_median")
    delta["step_time_change_fraction"] = round(tb / ta - 1, 6) if ta and tb is not None else None
    delta["speedup"] = round(ta / tb, 6) if ta and tb else None
    wa, wb = exposed_wait_ms_per_step(a), exposed_wait_ms_per_step(b)
    delta["exposed_data_wait_ms_per_step"] = _sub(wb, wa)
    ea, eb = ma.get("exposed_data_wait_fraction"), mb.get("exposed_data_wait_fraction")
    delta["exposed_data_wait_removed_fraction"] = round((ea - eb) / ea, 6) if ea and eb is not None else None
    delta["steps"] = int(b.get("steps", 0)) - int(a.get("steps", 0))
    changed = ta is not None and tb is not None and abs(tb - ta) > step_time_noise_ms(a, b)
    delta["step_time_changed"] = changed
    loader_changes = {
        k: (a["loader"].get(k), b["loader"].get(k))
        for k in LOADER_KEYS
        if a.get("loader", {}).get(k) != b.get("loader", {}).get(k)
    }
    delta["loader"] = {k: {"a": x, "b": y} for k, (x, y) in loader_changes.items()}
    if a.get("diagnosis") != b.get("diagnosis"):
        delta["diagnosis"] = {"a": a.get("diagnosis"), "b": b.get("diagnosis")}
    findings = diff_findings(a.get("findings", []), b.get("findings", []))
    delta["findings"] = [asdict(f) for f in findings]
    return Comparison(doc_a, doc_b, delta, findings, loader_changes, changed,
                      _verdict(a, b, changed, loader_changes), tuple(notes))


def comparison_document(c: Comparison) -> dict[str, Any]:
    """The ``compare --json`` document of SPEC §4."""
    return {
        "schema_version": SCHEMA_VERSION,
        "a": c.a,
        "b": c.b,
        "delta": c.delta,
        "verdict": c.verdict,
        "notes": list(c.notes),
    }
