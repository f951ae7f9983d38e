"""The loading rules (TL102-TL104): CPU starvation, I/O-bound and input-bound loading."""

from __future__ import annotations

import numpy as np

from tracelens.diagnosis import sizing
from tracelens.diagnosis.context import Context, loading_cause
from tracelens.diagnosis.findings import Finding
from tracelens.diagnosis.plan import plan_workers, worker_capacity
from tracelens.diagnosis.rule import (
    PER_SAMPLE_COST_ADVICE,
    STORAGE_ADVICE,
    Rule,
    declare_rule,
    input_bound_severity,
    make_finding,
    needs_steps,
    needs_telemetry,
)
from tracelens.diagnosis.thresholds import threshold
from tracelens.vocab import Severity, pct


def hidden_note(ctx: Context) -> str:
    """The clause saying the wait under the threshold hides a shortage (``Context.hidden_shortage``)."""
    cap = ctx.hidden_shortage
    st = ctx.steady
    if cap is None or st is None or st.exposed_fraction >= threshold("exposed_wait_fraction"):
        return ""
    return (f" (a shortage the outside load hides: the busy machine slows the training loop, and the "
            f"current workers still produce only {cap:.1f}x what it consumes, so the wait grows once its "
            "math threads stop stalling)")


def needs_shortage(ctx: Context) -> str | None:
    """TL102/TL103 name a shortage of loading capacity; with the current workers' measured
    capacity well above the demand, a wait is bursts or a busy machine, which TL104 reports."""
    if (r := needs_telemetry(ctx)) is not None:
        return r
    cap = worker_capacity(ctx)
    if cap is not None and cap >= threshold("worker_capacity_ratio"):
        return (f"the {ctx.workers_now} worker(s) can produce {cap:.1f}x the batches the loop consumes "
                f"(num_workers × C / T_b ≥ {threshold('worker_capacity_ratio'):g}): a data wait is not "
                "a loading-capacity shortage and more workers cannot help (TL104 reports it)")
    return None


@declare_rule("TL102", "cpu_starvation", Severity.HIGH, "The loading work is CPU-bound and too slow",
              precondition="input-bound steps (or, on a busy machine whose load stalls the main math threads, workers "
                           "producing under worker_capacity_ratio x the slowed loop's demand) and loader telemetry "
                           "(per-batch records or worker CPU time); skipped when the current workers' measured "
                           "capacity is worker_capacity_ratio x the demand or more",
              thresholds=("exposed_wait_fraction", "exposed_wait_high_fraction", "cpu_bound_fraction",
                          "io_bound_fraction", "headroom_fraction", "worker_capacity_ratio",
                          "main_thread_stall_fraction"),
              requires=needs_shortage, main=True)
def cpu_starvation(rule: Rule, ctx: Context) -> Finding | None:
    ld = ctx.loading
    assert ld is not None and ctx.steady is not None
    if not ctx.input_bound or loading_cause(ld) != "cpu":
        return None
    plan = plan_workers(ctx, "cpu")
    sev = input_bound_severity(ctx.steady.exposed_fraction)
    conf = 0.9 if ld.source.startswith("batch") else 0.75
    return make_finding(rule, ctx, sev, conf,
              title=(f"CPU-starved loader: {pct(ctx.steady.exposed_fraction)} of each step waits for "
                     f"data while the loading work is on a CPU {pct(ld.cpu_fraction)} of the time "
                     f"and waits for one {pct(ld.run_delay_fraction or 0.0)}{hidden_note(ctx)}"),
              evidence={"exposed_wait_fraction": ctx.steady.exposed_fraction,
                        "loading_cpu_fraction": ld.cpu_fraction,
                        "loading_run_delay_fraction": ld.run_delay_fraction, "loading_source": ld.source,
                        **plan.evidence},
              advice=plan.advice(PER_SAMPLE_COST_ADVICE),
              settings=plan.settings)


@declare_rule("TL103", "io_bound", Severity.HIGH, "The loading work mostly waits (storage, network, sleep)",
              precondition="input-bound steps (or, on a busy machine whose load stalls the main math threads, workers "
                           "producing under worker_capacity_ratio x the slowed loop's demand) and loader telemetry; "
                           "skipped when the current workers' measured capacity is worker_capacity_ratio x the demand "
                           "or more",
              thresholds=("exposed_wait_fraction", "exposed_wait_high_fraction", "io_bound_fraction",
                          "cpu_bound_fraction", "run_delay_fraction", "headroom_fraction",
                          "latency_workers_max", "worker_capacity_ratio", "main_thread_stall_fraction"),
              requires=needs_shortage, main=True)
def io_bound(rule: Rule, ctx: Context) -> Finding | None:
    ld = ctx.loading
    assert ld is not None and ctx.steady is not None
    if not ctx.input_bound or loading_cause(ld) != "io":
        return None
    plan = plan_workers(ctx, "latency")
    sev = input_bound_severity(ctx.steady.exposed_fraction)
    return make_finding(rule, ctx, sev, 0.85 if ld.source.startswith("batch") else 0.7,
              title=(f"I/O- or latency-bound loader: {pct(ctx.steady.exposed_fraction)} of each step "
                     f"waits for data while the loading work wants a CPU only {pct(ld.demand_fraction)} "
                     f"of the time{hidden_note(ctx)}"),
              evidence={"exposed_wait_fraction": ctx.steady.exposed_fraction,
                        "loading_cpu_fraction": ld.cpu_fraction, "loading_source": ld.source,
                        "read_bytes": ld.read_bytes, **plan.evidence},
              advice=plan.advice(STORAGE_ADVICE),
              settings=plan.settings)


@declare_rule("TL104", "input_bound", Severity.HIGH,
              "Input-bound, cause not determinable from the evidence, or not a loader capacity shortage "
              "(the current workers' measured capacity is worker_capacity_ratio x the demand or more: the "
              "wait is bursts or a busy machine, and num_workers stays)",
              precondition="steps with DataLoader events",
              thresholds=("exposed_wait_fraction", "exposed_wait_high_fraction", "outlier_compute_factor",
                          "headroom_fraction", "assumed_worker_cap", "long_wait_factor",
                          "worker_capacity_ratio", "run_delay_fraction", "cpu_bound_fraction",
                          "io_bound_fraction"),
              requires=needs_steps, main=True)
def input_bound(rule: Rule, ctx: Context) -> Finding | None:
    assert ctx.steady is not None
    if not ctx.input_bound:
        return None
    cap = worker_capacity(ctx)
    if cap is not None and cap >= threshold("worker_capacity_ratio"):
        return _surplus_capacity(rule, ctx, cap)
    if loading_cause(ctx.loading) is not None:
        return None  # TL102 / TL103 name the cause
    plan = plan_workers(ctx, "unknown")
    sev = input_bound_severity(ctx.steady.exposed_fraction)
    shape = ctx.shape
    pattern = ("most __next__ calls find a batch ready and every "
               f"{shape.period:.0f}th waits {shape.long_median_ms:.1f} ms (a drained queue)"
               if shape.is_bimodal and shape.period else
               f"every __next__ waits (median {shape.median_ms:.1f} ms)")
    why = ("the loading work is neither clearly CPU-bound nor clearly waiting (it wants a CPU "
           + pct(ctx.loading.demand_fraction) + " of the time)"
           if ctx.loading is not None else "the trace holds no CPU or I/O telemetry of the loading work")
    return make_finding(rule, ctx, sev, 0.9,
              title=(f"Input-bound: {pct(ctx.steady.exposed_fraction)} of each step waits for data "
                     f"({ctx.analysis.iterator.replace('_', '-')} iterator; {pattern}); cause not "
                     f"determinable: {why}"),
              evidence={"exposed_wait_fraction": ctx.steady.exposed_fraction,
                        "data_wait_fraction": ctx.steady.data_wait_fraction,
                        "iterator": ctx.analysis.iterator, "wait_median_ms": shape.median_ms,
                        "wait_p90_ms": shape.p90_ms, "long_wait_period_calls": shape.period,
                        **plan.evidence},
              advice=plan.advice(f"if the loading is CPU-bound: {PER_SAMPLE_COST_ADVICE}; if it waits "
                                 f"on storage: {STORAGE_ADVICE}") +
              " To settle CPU-bound vs I/O-bound vs oversubscribed, re-run under `tracelens profile "
              "train.py ARGS`: it records per-worker CPU time, I/O bytes and run-queue delay.",
              settings=plan.settings)


def _surplus_capacity(rule: Rule, ctx: Context, cap: float) -> Finding:
    """Input-bound although the current workers produce ``cap`` times the demand: the wait is
    bursts (a shallow prefetch queue, TL203) or a busy machine, not too few workers."""
    st, f, shape, n = ctx.steady, ctx.facts, ctx.shape, ctx.workers_now
    assert st is not None and f is not None and n
    t_b = float(np.median(f.batch_ms))
    main_delay = f.main.run_delay_fraction if f.main is not None else None
    delays = [w.run_delay_fraction for w in f.workers if w.run_delay_fraction is not None]
    worker_delay = float(np.median(delays)) if delays else None
    busy = any(d is not None and d >= threshold("run_delay_fraction") for d in (main_delay, worker_delay))
    sev = input_bound_severity(st.exposed_fraction)
    if shape.is_bimodal:
        bursts = (f"The waits are bursty ({shape.long_calls} of {shape.calls} __next__ calls wait "
                  f"{shape.long_median_ms:.1f} ms while the rest find a batch ready): a deeper prefetch "
                  "queue absorbs them (TL203 sizes prefetch_factor when the spikes outgrow the queue).")
    else:
        bursts = (f"The waits are not bursty (median __next__ {shape.median_ms:.1f} ms, p90 "
                  f"{shape.p90_ms:.1f} ms), so a deeper prefetch queue is unlikely to help.")
    parts = [f"{role} {pct(d)}" for role, d in (("the main process", main_delay),
                                                 ("the workers (median)", worker_delay)) if d is not None]
    outside = f.supply.other_cpu_cores if f.supply is not None else None
    if parts:
        queue = f"Run-queue delay (runnable but waiting for a CPU): {' and '.join(parts)} of the time"
        if busy and outside is not None and ctx.budget is not None and ctx.budget.outside_cores:
            queue += f", with other processes using {outside:.2f} cores (TL105 busy_machine). "
        elif busy and outside is not None:
            queue += (f": other processes used only {outside:.2f} cores, so the job's own threads (the main "
                      "process's math threads and the workers) take turns on the cores. ")
        elif busy:
            queue += f", at or above the {pct(threshold('run_delay_fraction'))} that marks a busy machine. "
        else:
            queue += ". "
    else:
        queue = "The run-queue delay of the processes was not recorded. "
    check = ("Check the machine for other processes (uptime, top) and re-measure when it is quiet before "
             "changing the loader." if outside is None or (ctx.budget is not None and ctx.budget.outside_cores)
             else "")
    return make_finding(rule, ctx, sev, 0.8,
              title=(f"Input-bound, not a loader capacity shortage: {pct(st.exposed_fraction)} of each "
                     f"step waits for data although the {n} worker(s) produce {cap:.1f}x the batches the "
                     f"loop consumes (T_b {t_b:.1f} ms per batch, C {st.compute_ms:.1f} ms per step); "
                     f"the wait comes from bursts or a busy machine"),
              evidence={"exposed_wait_fraction": st.exposed_fraction,
                        "data_wait_fraction": st.data_wait_fraction, "num_workers": n,
                        "batch_ms": t_b, "batch_ms_source": f"measured per batch in the {f.batch_source}",
                        "compute_ms_per_step": st.compute_ms,
                        "workers_needed": sizing.workers_needed(t_b, st.compute_ms),
                        "worker_capacity_ratio": cap, "main_run_delay_fraction": main_delay,
                        "worker_run_delay_fraction": worker_delay, "busy_machine": busy,
                        "bursty_waits": shape.is_bimodal, "wait_median_ms": shape.median_ms,
                        "wait_p90_ms": shape.p90_ms, "long_calls": shape.long_calls,
                        "calls": shape.calls, "recommended_num_workers": n},
              advice=(f"Keep num_workers={n}: at T_b = {t_b:.1f} ms per batch the workers' capacity is "
                      f"num_workers × C / T_b = {n} × {st.compute_ms:.1f} / {t_b:.1f} = {cap:.1f}x the "
                      f"demand, so the wait is not a shortage of loading capacity and more workers "
                      f"cannot shorten it. {bursts} {queue}{check}").strip(),
              settings={"num_workers": n})


#: The rules of this module, in the order they run.
RULES: tuple[Rule, ...] = (cpu_starvation, io_bound, input_bound)
