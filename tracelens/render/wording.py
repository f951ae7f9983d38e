"""The words every output shares: the verdict sentence and the ``DataLoader(...)`` change."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import msgspec

from tracelens.diagnosis.knobs import Knob, knob_for
from tracelens.document.result import Result
from tracelens.document.schema import Document
from tracelens.render.source_edit import SourceEdit, diff_lines, source_edit
from tracelens.vocab import SETTING_KEYS, is_dataloader_default, pct

CAUSES = {
    "cpu_starvation": "Input-bound, CPU-starved: preparing batches is CPU work and too few processes do it",
    "io_bound": "Input-bound, I/O-bound: preparing batches mostly waits for storage or the network",
    "oversubscription": "Oversubscribed: the job's own processes × threads exceed its CPU cores and slow the step",
    "input_bound": "Input-bound",
    "healthy": "The DataLoader keeps up",
    "undetermined": "Undetermined",
}
TONES = {"healthy": "good", "undetermined": "neutral"}


def busy_machine_line(doc: Document) -> str | None:
    """One line naming the outside load when a busy_machine finding is present (else None)."""
    f = next((f for f in doc.findings if f.kind == "busy_machine"), None)
    if f is None:
        return None
    return f"{f.title}. Step times are inflated by that load: absolute figures hold for it only ({f.id})."


def verdict_sentence(doc: Document) -> str:
    """The verdict in one sentence, with the speed-up ceiling (one rank's SPEC §3 document)."""
    m = doc.metrics
    diagnosis = doc.diagnosis
    exposed = m.exposed_data_wait_fraction
    ceiling = m.speedup_ceiling
    has_gpu = m.gpu_busy_fraction is not None
    if diagnosis == "undetermined" or exposed is None:
        trace = doc.trace
        reason = doc.fallback or (
            "it holds no DataLoader __next__ events" if not m.next_calls else
            "step or __next__ events were dropped for unusable times" if trace.dropped_steps or trace.dropped_waits
            else "every step has zero length" if trace.zero_length_steps and not m.step_time_ms_total
            else "the evidence is inconclusive")
        return f"The trace cannot say whether data loading slows this run: {reason}."
    c = f"{ceiling:.2f}×" if ceiling else "unbounded"
    if has_gpu:
        share = f"steps wait for data with the GPU idle {'only ' if diagnosis == 'healthy' else ''}{pct(exposed)} of the time"
    else:
        share = f"steps spend {'only ' if diagnosis == 'healthy' else ''}{pct(exposed)} of their time waiting for data"
    if diagnosis == "healthy":
        return f"{CAUSES['healthy']}: {share}, so faster loading would make steps at most {c} faster."
    cause = CAUSES.get(diagnosis, diagnosis)
    return f"{cause}: {share}; removing that wait would make steps up to {c} faster."


def settings_call(settings: dict[str, Any]) -> str:
    """``DataLoader(dataset, num_workers=..., ...)`` for the settings given (unknowns left out)."""
    parts = [f"{k}={settings[k]!r}" for k in SETTING_KEYS if settings.get(k) is not None]
    return "DataLoader(dataset, " + ", ".join(parts) + ")"


def settings_diff(current: dict[str, Any], recommended: dict[str, Any],
                  context: Sequence[str] = (), *, keep: Sequence[str] = (),
                  threads_per_worker: int | None = None, threads_main: int | None = None,
                  unknown_note: str = "current value not recorded in the trace",
                  call: str = "DataLoader") -> list[dict[str, str]]:
    """The recommended ``DataLoader(...)`` call as diff lines ``{op: " "|"-"|"+", text}``.

    ``current`` values of ``None`` are unknown (not in the trace): their line is added with a
    comment, or left out when the recommendation is PyTorch's default. ``keep`` settings (whose
    recommended value is only a lower bound) become a "keep your current value" comment.
    ``context`` lines (e.g. ``batch_size=64``) are shown unchanged. Thread advice adds a
    ``torch.set_num_threads`` line for the main process and a ``worker_init_fn``.
    """
    lines = []
    if threads_main is not None:
        lines.append({"op": "+", "text": f"torch.set_num_threads({threads_main})  # main process"})
    if threads_per_worker is not None:
        # A module-level function, not a lambda: spawn/forkserver workers must pickle it.
        lines += [
            {"op": "+", "text": "def set_worker_threads(worker_id):  # call it from your worker_init_fn if you have one"},
            {"op": "+", "text": f"    torch.set_num_threads({threads_per_worker})"},
        ]
    lines += [{"op": " ", "text": f"loader = {call}("}, {"op": " ", "text": "    dataset,"}]
    lines += [{"op": " ", "text": f"    {c},"} for c in context]
    for k in SETTING_KEYS:
        cur, rec = current.get(k), recommended.get(k)
        if k in keep:
            lines.append({"op": " ", "text": f"    # {k}: keep your current value"})
            continue
        if cur is None and (rec is None or is_dataloader_default(k, rec)):
            continue
        if cur == rec:
            lines.append({"op": " ", "text": f"    {k}={rec!r},"})
            continue
        if cur is not None:
            lines.append({"op": "-", "text": f"    {k}={cur!r},"})
        if rec is not None:
            note = f"  # {unknown_note}" if cur is None and unknown_note else ""
            lines.append({"op": "+", "text": f"    {k}={rec!r},{note}"})
    if threads_per_worker is not None:
        lines.append({"op": "+", "text": "    worker_init_fn=set_worker_threads,"})
    lines.append({"op": " ", "text": ")"})
    return lines


def diff_after(lines: Sequence[dict[str, str]]) -> str:
    """The code after applying the diff, comments dropped: what the copy button copies."""
    kept = [ln["text"].split("  #")[0] for ln in lines
            if ln["op"] != "-" and not ln["text"].lstrip().startswith("#")]
    return "\n".join(kept)


def current_settings(doc: Document) -> dict[str, Any]:
    """The loader settings the trace shows; ``pin_memory`` inferred when the host-to-device
    copies are all pinned (True) or all pageable (False)."""
    cur = {k: getattr(doc.loader, k) for k in SETTING_KEYS}
    pinned, pageable = doc.copies.h2d_pinned, doc.copies.h2d_pageable
    if cur["pin_memory"] is None and bool(pinned) != bool(pageable):
        cur["pin_memory"] = bool(pinned)
    return cur


#: Where each framework takes the DataLoader settings: TrainingArguments keys for Hugging Face.
TRAINING_ARGUMENTS = {"num_workers": "dataloader_num_workers", "pin_memory": "dataloader_pin_memory",
                      "persistent_workers": "dataloader_persistent_workers",
                      "prefetch_factor": "dataloader_prefetch_factor"}


def framework_view(doc: Document, diff: Sequence[dict[str, str]]) -> dict[str, Any] | None:
    """The same change in the user's own terms when a framework builds the loader: the
    ``TrainingArguments(...)`` keys for Hugging Face ``Trainer``, where the ``DataLoader(...)`` call
    lives for Lightning and accelerate."""
    framework, where = doc.loader.framework, doc.loader.created_at
    if framework == "transformers":
        changed = {k: getattr(doc.recommendation, k) for k in SETTING_KEYS
                   if any(ln["op"] == "+" and ln["text"].strip().startswith(f"{k}=") for ln in diff)}
        lines = [{"op": " ", "text": "args = TrainingArguments("}, {"op": " ", "text": "    ...,"}]
        lines += [{"op": "+", "text": f"    {TRAINING_ARGUMENTS[k]}={v!r},"} for k, v in changed.items() if v is not None]
        lines.append({"op": " ", "text": ")"})
        return {"framework": "Hugging Face Trainer", "lines": lines if changed else [],
                "text": "Trainer builds the DataLoader from TrainingArguments: set these instead."}
    if framework == "lightning":
        return {"framework": "Lightning", "lines": [],
                "text": "Lightning iterates the DataLoader your LightningDataModule.train_dataloader returns: "
                        f"change that call{f' ({where})' if where else ''}."}
    if framework == "accelerate":
        return {"framework": "accelerate", "lines": [],
                "text": "accelerate re-creates your DataLoader in prepare() with your arguments: change your own "
                        f"DataLoader(...) call{f' ({where})' if where else ''}."}
    return None


def pipeline_diff(doc: Document, knob: Knob) -> list[dict[str, str]]:
    """The change in the pipeline's own call, for a pipeline that is no DataLoader."""
    now, n = doc.loader.num_workers, doc.recommendation.num_workers
    if knob.call == "ParallelMapper":
        method = doc.loader.pipeline.get("ParallelMapper.method", "thread")
        lines = [{"op": " ", "text": "node = ParallelMapper("}, {"op": " ", "text": "    source, map_fn,"}]
        if now != n:
            lines.append({"op": "-", "text": f"    num_workers={now!r},"})
        lines += [{"op": "+" if now != n else " ", "text": f"    num_workers={n!r},"},
                  {"op": " ", "text": f"    method={method!r},"}, {"op": " ", "text": ")"}]
        return lines
    if n is None or n <= (now or 0):
        return []
    return [{"op": "+", "text": f"pool = ThreadPoolExecutor(max_workers={n})  # or processes for CPU work"},
            {"op": "+", "text": "items = pool.map(load, keys)  # the per-item work, run ahead of the loop"}]


def run_cwd(result: Result) -> str | None:
    """The working directory of the run the document speaks for (None without its run.json)."""
    full = result.slowest
    return full.run.command.cwd if full is not None and full.run is not None else None


def user_code_edit(doc: Document, cwd: str | None) -> SourceEdit | None:
    """The recommendation as an edit of the user's file at ``loader.created_at`` (one rank's
    document; ``cwd`` is the run's working directory); None when the run does not say where."""
    if doc.diagnosis == "undetermined":
        return None
    return source_edit(doc.loader.created_at, cwd, msgspec.structs.asdict(doc.recommendation),
                       current_settings(doc), doc.loader.framework)


def _source_view(edit: SourceEdit | None) -> dict[str, Any] | None:
    if edit is None:
        return None
    patch = f"# {edit.where}: the {edit.target}(...) call\n{edit.diff}" if edit.diff else ""
    return {"where": edit.where, "target": edit.target, "lines": diff_lines(edit.diff) if edit.diff else [],
            "patch": patch, "call": edit.call, "unresolved": list(edit.unresolved), "problem": edit.problem}


def recommendation_view(doc: Document, context: Sequence[str] = (), edit: SourceEdit | None = None) -> dict[str, Any]:
    """The change to make (one rank's document): diff, code to copy, environment, expected gain.

    With ``edit`` (:func:`user_code_edit`) that has a diff, the diff and the code to copy are the
    user's own lines, edited; otherwise the settings as a ``DataLoader(...)`` call."""
    rec = doc.recommendation
    keep = list(rec.keep_current)
    knob = knob_for(doc.loader.cls, doc.loader.framework, doc.loader.pipeline, rec.num_workers, doc.diagnosis)
    diff = settings_diff(current_settings(doc), {k: getattr(rec, k) for k in SETTING_KEYS}, context,
                         keep=keep, threads_per_worker=rec.torch_threads_per_worker,
                         threads_main=rec.torch_threads_main, call=knob.call)
    if not knob.dataloader_args:
        diff = pipeline_diff(doc, knob)
    env = {k: v for k, v in rec.env.items()
           if re.fullmatch(r"[A-Z][A-Z0-9_]*", k) and re.fullmatch(r"[\w.,:-]*", v)}
    speed, bound = rec.expected_speedup, rec.expected_speedup_bound
    expected = (f"{speed:.2f}×" if speed is not None and speed >= 1.005
                and doc.diagnosis not in ("healthy", "undetermined") else None)
    source = _source_view(edit)
    changed = any(ln["op"] != " " for ln in diff) or bool(env)
    code = diff_after(diff)
    framework = framework_view(doc, diff)
    if source is not None and source["lines"] and knob.dataloader_args:
        diff, code, changed = source["lines"], source["call"], True
        if framework is not None and source["target"] == "TrainingArguments":
            framework["lines"] = []  # the edit of the script's own TrainingArguments(...) says it
    return {"diff": diff, "code": code, "changed": changed, "source": source,
            "keep": keep, "env": [f"{k}={v}" for k, v in sorted(env.items())], "expected": expected,
            "expected_value": float(speed) if expected and speed is not None else None,
            "bound": f"{bound:.2f}×" if bound is not None else None,
            "basis": rec.expected_basis or "", "measure": rec.measure_with,
            "framework": framework, "created_at": doc.loader.created_at,
            "call": f"the {knob.call} call" if knob.dataloader_args or knob.call == "ParallelMapper" else "the pipeline",
            "knob_advice": knob.text or None, "notes": list(rec.notes)}
