"""The recommendation: every finding's proposals composed into one set of settings.

Each setting comes from one finding, and says which (``Recommendation.parts``): the worker count
from the first finding that sizes it (the main cause first: TL102/TL103/TL104's Little's law, or
TL101 cutting CPU-bound workers that oversubscribe the cores; TL105 never sizes workers), the
thread counts from the finding that asks for the fewest (TL101, TL105 and the CPU-bound plan each
propose the main process's), the environment merged. Findings whose proposal lost say which value
the recommendation uses instead, and lose the sentences that set theirs. The expected gain is the
main finding's estimate, never above the bound it states; what it leaves out (a thread change
under outside load) is named with the ``tracelens sweep`` command that measures it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from tracelens.diagnosis import sizing
from tracelens.diagnosis.context import Context
from tracelens.diagnosis.findings import Finding, Part, Recommendation
from tracelens.diagnosis.rule import sweep_command
from tracelens.diagnosis.thresholds import threshold
from tracelens.vocab import pct

#: Settings of which the smallest proposal wins (each is a count of threads contending for cores).
THREAD_SETTINGS = ("torch_threads_main", "torch_threads_per_worker")
#: Settings a finding may propose, as the recommendation names them.
SETTINGS = ("num_workers", "pin_memory", "persistent_workers", "prefetch_factor", *THREAD_SETTINGS)


def proposals(findings: Sequence[Finding]) -> dict[str, tuple[Any, Finding]]:
    """Each setting's winning proposal and its finding (``findings`` in precedence order)."""
    out: dict[str, tuple[Any, Finding]] = {}
    for f in findings:
        for k, v in f.settings.items():
            if k not in SETTINGS or v is None:
                continue
            if k in THREAD_SETTINGS and k in out and v < out[k][0]:
                out[k] = (v, f)
            else:
                out.setdefault(k, (v, f))
    return out


def _env(findings: Sequence[Finding]) -> tuple[dict[str, str], dict[str, Finding]]:
    env: dict[str, str] = {}
    source: dict[str, Finding] = {}
    for f in findings:
        for k, v in (f.settings.get("env") or {}).items():
            if k not in env:
                env[k], source[k] = str(v), f
    return env, source


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
    if diagnosis == "input_bound" and st is not None and not proposed:
        exposed = ctx.analysis.exposed_data_wait_fraction or 0.0
        return (f"Input-bound at the epoch changes: steps wait for data {pct(exposed)} of the time, "
                f"{pct(st.startup_fraction)} of it in the steps after each epoch starts (the old workers' shutdown, "
                f"the new ones' start-up, the queue refilling) while between epochs the loader keeps up "
                f"({pct(st.exposed_fraction)}); never a healthy loader at {pct(threshold('healthy_exposed_max'))} or "
                "more. No rule sizes a change for it: measure persistent_workers and more workers (see below).")
    return None


def _num_workers(ctx: Context, proposed: dict[str, Any]) -> tuple[int | None, str | None]:
    """num_workers to use (None: keep the current, unknown value) and the note saying so."""
    if "num_workers" in proposed:
        return int(proposed["num_workers"]), None
    if ctx.workers_now is not None:
        return ctx.workers_now, None
    return None, ("Keep your current num_workers: the trace shows worker processes (the "
                  "multi-process iterator) but not how many.")


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


def expected_gain(ctx: Context, diagnosis: str, findings: Sequence[Finding], threads_from: Finding | None,
                  workers: int | None) -> tuple[float | None, float | None, str | None, str | None]:
    """(gain, its bound, the sentence saying where both come from, the sweep command that measures
    what the estimate leaves out)."""
    st = ctx.steady
    ceiling = sizing.speedup_ceiling(st.exposed_fraction) if st is not None else None
    source = next((f for f in findings if f.kind == diagnosis), None)
    if source is None or (source.kind != "oversubscription" and "expected_speedup" not in source.settings):
        source = next((f for f in findings if isinstance(f.settings.get("expected_speedup"), int | float)), source)
    gain: float | None = None
    bound: float | None = None
    basis: str | None = None
    if source is not None and source.kind == "oversubscription":
        stated = source.evidence.get("speedup_bound")
        bound = float(stated) if isinstance(stated, int | float) else None
        basis = (f"{source.id} oversubscription: at most {bound:.2f}x, no estimate (how much CPU the contention wastes "
                 "one run cannot tell)") if bound is not None else None
    elif source is not None and isinstance(source.settings.get("expected_speedup"), int | float):
        gain = float(source.settings["expected_speedup"])
        if source.kind == "worker_respawn" and st is not None:
            bound = sizing.speedup_ceiling(st.startup_fraction)
            basis = (f"{source.id} worker_respawn: the epoch turnover's wait ({pct(st.startup_fraction)} of the "
                     f"step time) removed bounds it at {bound:.2f}x")
        elif ceiling is not None and st is not None:
            bound = ceiling
            basis = (f"{source.id} {source.kind}: the exposed data wait ({pct(st.exposed_fraction)} of the step "
                     f"time) removed bounds it at {ceiling:.2f}x")
        gain = min(gain, bound) if bound is not None else gain
    elif diagnosis == "healthy" and ceiling is not None:
        gain, bound = 1.0, ceiling
        basis = f"the loader keeps up: removing its whole wait would gain at most {ceiling:.3f}x"
    measure = None
    outside = ctx.budget.outside_cores if ctx.budget is not None else 0.0
    by_load = threads_from is not None and threads_from.kind == "busy_machine"
    if by_load or (outside and diagnosis not in ("healthy", "undetermined")):
        measure = sweep_command(ctx, workers=(ctx.workers_now, workers), threads=by_load)
        gain = None if diagnosis == "healthy" else gain
        left_out = []
        if outside and gain is not None:
            left_out.append(f"It is estimated for the rank's cores; under this run's outside load ({outside:.2f} "
                            "cores used by other processes) the gain depends on that load")
        if by_load:
            assert threads_from is not None
            left_out.append(f"{'it' if left_out else 'It'} leaves out the gain of fewer math threads in the main process ({threads_from.id}), "
                            "which under outside load depends on that load and is not estimated")
        said = "; ".join(left_out) + f": measure it with `{measure}`."
        basis = f"{basis}. {said}" if basis else said
    elif gain is None and source is not None and source.kind == "oversubscription":
        measure = sweep_command(ctx, workers=(ctx.workers_now, workers), threads=True)
        basis = f"{basis}: measure it with `{measure}`" if basis else f"Measure it with `{measure}`"
    elif gain is None and diagnosis not in ("healthy", "undetermined"):
        if ctx.workers_now and not any("num_workers" in f.settings for f in findings):
            workers = 2 * ctx.workers_now  # nothing sizes them: measure twice as many beside the current
        measure = sweep_command(ctx, workers=(ctx.workers_now, workers))
        basis = f"The gain could not be estimated from this run: measure it with `{measure}`."
    return (None if gain is None else round(gain, 3), None if bound is None else round(bound, 3),
            basis if basis is None or basis.endswith(".") else basis + ".", measure)


def recommend(ctx: Context, diagnosis: str, findings: Sequence[Finding]) -> Recommendation:
    """Compose the findings' proposals (``findings`` in precedence order, the main cause first)
    into complete settings; the current value elsewhere."""
    props = proposals(findings)
    proposed = {k: v for k, (v, _) in props.items()}
    workers, keep_note = _num_workers(ctx, proposed)
    if workers == 0:
        props.pop("torch_threads_per_worker", None)  # no worker_init_fn without workers
    env, env_source = _env(findings)
    notes = [n for n in (_diagnosis_note(ctx, diagnosis, proposed), keep_note) if n is not None]
    sources = [f for _, f in props.values()] + list(env_source.values())
    main = [f for f in findings if f.kind == diagnosis]
    helpers = [f for f in findings if f not in main and f.kind in ("oversubscription", "busy_machine")
               and (f in sources or f.kind == "busy_machine")]
    notes += [f.advice for f in (*main, *helpers)]
    pin, pin_note = _pin_memory(ctx, proposed)
    if pin_note is not None:
        notes.append(pin_note)
    persistent, prefetch, lifetime_notes = _worker_lifetime(ctx, workers, proposed, findings)
    notes += lifetime_notes
    host = next((f for f in findings if f.kind == "host_bound"), None)
    if host is not None and diagnosis in ("healthy", "input_bound", "cpu_starvation", "io_bound"):
        notes.append("Beyond the loader: " + host.title + ". " + host.advice)
    chosen = {"num_workers": workers, "pin_memory": pin, "persistent_workers": persistent}
    keep = tuple(k for k, v in chosen.items() if v is None)
    if workers != 0 and prefetch is None and ctx.workers_now is None:  # the trace hides it
        keep += ("prefetch_factor",)
    threads_from = props["torch_threads_main"][1] if "torch_threads_main" in props else None
    busy = next((f for f in findings if f.kind == "busy_machine" and "torch_threads_main" in f.settings), None)
    if busy is not None and threads_from is not None and busy.settings["torch_threads_main"] <= props["torch_threads_main"][0]:
        threads_from = busy  # under outside load the thread cut's gain is the load's, not estimated
    gain, bound, basis, measure = expected_gain(ctx, diagnosis, findings, threads_from, workers)
    parts = [Part(k, v, f.id, f.kind, f.title) for k, (v, f) in props.items()]
    parts += [Part(f"env.{k}", v, env_source[k].id, env_source[k].kind, env_source[k].title) for k, v in env.items()]
    return Recommendation(
        num_workers=workers, pin_memory=pin, persistent_workers=persistent, prefetch_factor=prefetch,
        notes=tuple(notes), expected_speedup=gain,
        torch_threads_per_worker=props["torch_threads_per_worker"][0] if "torch_threads_per_worker" in props else None,
        torch_threads_main=props["torch_threads_main"][0] if "torch_threads_main" in props else None,
        env=env, keep_current=keep, expected_speedup_bound=bound, expected_basis=basis, measure_with=measure,
        parts=tuple(parts))


_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z(`])")


def _sets(sentence: str, setting: str, value: Any) -> bool:
    """Whether ``sentence`` tells the reader to use ``setting``'s losing ``value``."""
    if setting == "torch_threads_main":
        return f"set_num_threads({value})" in sentence and "main process" in sentence
    if setting == "torch_threads_per_worker":
        return "per worker" in sentence and f"set_num_threads({value})" in sentence
    return f"{setting}={value!r}" in sentence


def reconcile(findings: Sequence[Finding], rec: Recommendation) -> list[Finding]:
    """Findings whose proposal lost to the recommendation drop it: their advice names the value
    the recommendation uses and where it comes from, without the sentences that set their own
    (one number per setting across the headline, the findings and the JSON)."""
    chosen = {"num_workers": rec.num_workers, "pin_memory": rec.pin_memory,
              "persistent_workers": rec.persistent_workers, "prefetch_factor": rec.prefetch_factor,
              "torch_threads_main": rec.torch_threads_main, "torch_threads_per_worker": rec.torch_threads_per_worker}
    source = {p.setting: p for p in rec.parts}
    out = []
    for f in findings:
        lost = {k: v for k, v in f.settings.items()
                if k in chosen and v is not None and chosen[k] is not None and v != chosen[k]}
        if lost:
            said = "; ".join(f"{k}={chosen[k]!r}" + (f" ({source[k].rule} {source[k].kind})" if k in source else "")
                             for k in lost)
            kept = " ".join(s for s in _SENTENCE.split(f.advice)
                            if not any(_sets(s, k, v) for k, v in lost.items()))
            f = replace(f, settings={k: v for k, v in f.settings.items() if k not in lost},
                        advice=f"The recommendation uses {said} instead. {kept}".strip())
        out.append(f)
    return out
