"""``tracelens annotate``: the user's own trace with tracelens's tracks added, for the Perfetto
UI and chrome://tracing.

The original events are kept as they are, in order; a process named "tracelens" (sorted first)
is appended with one thread per track: each step with its data wait, the exposed and the hidden
data wait as slices, the verdict over the measured window, and each finding on its own track,
every slice carrying its text in ``args``. Times are the trace's own µs.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec

from tracelens import intervals as iv
from tracelens.document.schema import Document
from tracelens.errors import BadInputError
from tracelens.model import Trace, is_string_id
from tracelens.render.wording import settings_call, verdict_sentence
from tracelens.steps import NS_PER_MS, Activity, Steps
from tracelens.system.atomic import atomic_file, write_atomic
from tracelens.vocab import SETTING_KEYS

PROCESS_NAME = "tracelens"
#: Thread ids of the added tracks, in the order the viewers show them.
TRACKS = {"steps": 1, "exposed": 2, "hidden": 3, "verdict": 4}
FIRST_FINDING_TID = 10
NS_PER_US = 1000.0


def _us(ns: int, origin_us: float) -> float:
    return round(origin_us + ns / NS_PER_US, 3)


def _free_pid(trace: Trace) -> int:
    used = [int(p) for p in trace.pid.tolist() if not is_string_id(int(p))]
    return max([0, *used]) + 1


def _slices(s: iv.IntervalSet, name: str, pid: int, tid: int, origin_us: float,
            args: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return [{"name": name, "cat": "tracelens", "ph": "X", "pid": pid, "tid": tid,
             "ts": _us(a, origin_us), "dur": round((b - a) / NS_PER_US, 3), **({"args": args} if args else {})}
            for a, b in zip(s.starts.tolist(), s.ends.tolist())]


def annotation_events(trace: Trace, steps: Steps, act: Activity, doc: Document) -> list[dict[str, Any]]:
    """The added events: track names, then the slices (one rank's document ``doc``)."""
    pid, origin = _free_pid(trace), trace.origin_us
    findings = list(doc.findings)
    names = {TRACKS["steps"]: "steps (data wait per step)", TRACKS["exposed"]: "data wait, exposed (GPU idle)",
             TRACKS["hidden"]: "data wait, hidden (GPU busy)", TRACKS["verdict"]: "verdict"}
    names |= {FIRST_FINDING_TID + i: f"finding {f.id} ({f.severity})" for i, f in enumerate(findings)}
    events: list[dict[str, Any]] = [
        {"name": "process_name", "ph": "M", "pid": pid, "tid": 0, "args": {"name": PROCESS_NAME}},
        {"name": "process_sort_index", "ph": "M", "pid": pid, "tid": 0, "args": {"sort_index": -1}},
    ]
    for tid, label in names.items():
        events += [{"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": label}},
                   {"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": tid, "args": {"sort_index": tid}}]
    hidden = iv.subtract(act.data_wait, act.exposed)
    for k in range(steps.count):
        lo, hi = int(steps.start[k]), int(steps.end[k])
        exp = iv.clip(act.exposed, lo, hi).total / NS_PER_MS
        hid = iv.clip(hidden, lo, hi).total / NS_PER_MS
        events.append({"name": f"step {steps.numbers[k]}: wait {exp:.1f} ms exposed, {hid:.1f} ms hidden",
                       "cat": "tracelens", "ph": "X", "pid": pid, "tid": TRACKS["steps"],
                       "ts": _us(lo, origin), "dur": round((hi - lo) / NS_PER_US, 3),
                       "args": {"step": steps.numbers[k], "step_ms": (hi - lo) / NS_PER_MS,
                                "data_wait_exposed_ms": exp, "data_wait_hidden_ms": hid}})
    events += _slices(act.exposed, "exposed data wait", pid, TRACKS["exposed"], origin,
                      {"meaning": "waiting for the DataLoader with no GPU activity: lost time"})
    events += _slices(hidden, "hidden data wait", pid, TRACKS["hidden"], origin,
                      {"meaning": "waiting for the DataLoader while the GPU works: overlapped, not lost"})
    if steps.count:
        lo, hi = int(steps.start.min()), int(steps.end.max())
        window = {"cat": "tracelens", "ph": "X", "pid": pid, "ts": _us(lo, origin), "dur": round((hi - lo) / NS_PER_US, 3)}
        rec = doc.recommendation
        events.append(window | {"name": doc.diagnosis.replace("_", " ").upper(), "tid": TRACKS["verdict"],
                                "args": {"verdict": verdict_sentence(doc),
                                         "recommendation": settings_call({k: getattr(rec, k) for k in SETTING_KEYS}),
                                         "notes": list(rec.notes)}})
        for i, f in enumerate(findings):
            events.append(window | {"name": f"{f.id} {f.title}", "tid": FIRST_FINDING_TID + i,
                                    "args": {"severity": f.severity, "kind": f.kind, "advice": f.advice,
                                             "evidence": msgspec.to_builtins(f.evidence, enc_hook=_plain)}})
    return events


def _plain(value: Any) -> Any:
    """numpy scalars in a rule's evidence as Python numbers."""
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    raise NotImplementedError(f"cannot encode {type(value).__name__}")


def read_trace_json(path: Path) -> Any:
    """The whole trace as JSON (an object with ``traceEvents``, or a bare event array)."""
    try:
        with (gzip.open(path, "rt", encoding="utf-8") if path.name.endswith(".gz") else
              path.open(encoding="utf-8")) as f:
            return json.load(f)
    except (OSError, EOFError, ValueError) as e:
        raise BadInputError(path, f"cannot be read as a whole JSON trace ({type(e).__name__})") from e


def annotated(original: Any, added: Iterable[dict[str, Any]]) -> Any:
    """``original`` with ``added`` appended after its own events (nothing of it changed)."""
    extra = list(added)
    if isinstance(original, list):
        return [*original, *extra]
    return original | {"traceEvents": [*original.get("traceEvents", []), *extra]}


def write_annotated(source: Path, out: Path, added: Iterable[dict[str, Any]]) -> None:
    """Write ``source`` with ``added`` events to ``out`` (gzip when ``out`` ends in ``.gz``)."""
    text = json.dumps(annotated(read_trace_json(source), added), separators=(",", ":"),
                      default=_plain) + "\n"
    if out.name.endswith(".gz"):
        with atomic_file(out, "wb") as fh, gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=0) as gz:
            gz.write(text.encode("utf-8"))
    else:
        write_atomic(out, text)

