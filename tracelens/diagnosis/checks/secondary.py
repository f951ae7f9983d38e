"""The secondary rules (TL2xx): pageable copies, worker respawn, prefetch depth, host-bound steps."""

from __future__ import annotations

import numpy as np

from tracelens.diagnosis import sizing
from tracelens.diagnosis.context import Context
from tracelens.diagnosis.findings import Finding
from tracelens.diagnosis.rule import Rule, declare_rule, make_finding, needs_gpu, needs_workers
from tracelens.diagnosis.thresholds import threshold
from tracelens.vocab import Severity, pct


@declare_rule("TL201", "pageable_memcpy", Severity.LOW, "Pageable host-to-device copies",
              precondition="GPU activity in the trace",
              thresholds=("pageable_copy_fraction", "pageable_copy_high_fraction"), requires=needs_gpu)
def pageable_memcpy(rule: Rule, ctx: Context) -> Finding | None:
    cp = ctx.analysis.copies
    st = ctx.steady
    assert st is not None
    if cp.h2d_pageable == 0 or st.step_ms <= 0:
        return None
    frac = cp.h2d_pageable_ms_per_step / st.step_ms
    if frac < threshold("pageable_copy_fraction"):
        return None
    sev = Severity.MEDIUM if frac >= threshold("pageable_copy_high_fraction") else Severity.LOW
    return make_finding(rule, ctx, sev, 0.9,
              title=(f"Pageable host-to-device copies: {cp.h2d_pageable} copies, "
                     f"{cp.h2d_pageable_ms_per_step:.2f} ms per step on the GPU "
                     f"({cp.h2d_pageable_host_blocked_ms_per_step:.2f} ms of it blocking the host)"),
              evidence={"h2d_pageable": cp.h2d_pageable, "h2d_pinned": cp.h2d_pinned,
                        "pageable_ms_per_step": cp.h2d_pageable_ms_per_step,
                        "host_blocked_ms_per_step": cp.h2d_pageable_host_blocked_ms_per_step,
                        "fraction_of_step": frac},
              advice=("Set pin_memory=True and copy with .to(device, non_blocking=True): pinned copies "
                      "run at full bus speed and overlap with compute, pageable ones are staged "
                      f"through a bounce buffer and block the host (about "
                      f"{cp.h2d_pageable_host_blocked_ms_per_step:.2f} ms per step here)."),
              settings={"pin_memory": True})


def _respawn_from_trace(ctx: Context) -> tuple[int, float]:
    """Epoch starts seen in the trace whose first __next__ was long: count, median wait (ms)."""
    assert ctx.steady is not None
    long = [w for w in ctx.steady.startup_waits_ms if w > ctx.shape.long_ms]
    return len(long), float(np.median(long)) if long else 0.0


@declare_rule("TL202", "worker_respawn", Severity.MEDIUM,
              "Workers restart every epoch; when the epoch turnover (shutdown, start-up, the first "
              "num_workers × prefetch_factor batches) is the data wait, it leads and the diagnosis is input_bound",
              precondition="num_workers > 0 and persistent_workers=False",
              thresholds=("respawn_min_ms", "long_wait_factor", "exposed_wait_fraction", "exposed_wait_high_fraction"),
              requires=needs_workers)
def worker_respawn(rule: Rule, ctx: Context) -> Finding | None:
    if ctx.settings.persistent_workers:
        return None
    f = ctx.facts
    if f is not None and f.iterator_creations is not None and f.first_next_ms:
        epochs = f.iterator_creations
        startup = float(np.median(f.first_next_ms))
        source, conf = "run.json: iterators created in the window and their first __next__", 0.9
    else:
        epochs, startup = _respawn_from_trace(ctx)
        epochs += 1 if epochs else 0
        source, conf = "trace: steps where one iterator ended and a new one's first __next__ waited", 0.6
    if epochs < 2 or startup < threshold("respawn_min_ms"):
        return None
    share = ctx.steady.startup_fraction if ctx.steady else 0.0
    sev = (Severity.HIGH if share >= threshold("exposed_wait_high_fraction") else
           Severity.MEDIUM if share >= threshold("exposed_wait_fraction") else Severity.LOW)
    gain = sizing.speedup_ceiling(share)
    return make_finding(rule, ctx, sev, conf,
              title=(f"Workers restart every epoch: {epochs} iterators, the first __next__ of each "
                     f"waits {startup:.0f} ms for worker start-up; the epoch turnover (shutdown, "
                     f"start-up, refilling the queue) is {pct(share)} of the step time"),
              evidence={"iterators": epochs, "startup_ms_median": startup, "source": source,
                        "startup_wait_fraction": share, "expected_speedup": gain},
              advice=("Set persistent_workers=True: the workers (and their dataset copies) survive the "
                      f"end of an epoch, saving about {startup:.0f} ms of start-up per epoch. Expected "
                      f"gain: up to {gain:.2f}x in steps per second (if the whole turnover wait of "
                      f"{pct(share)} went away; the first batches of each epoch still wait for the "
                      "workers to refill the queue)."),
              settings={"persistent_workers": True, "expected_speedup": gain})


@declare_rule("TL203", "prefetch_depth", Severity.LOW, "Bursty waits a deeper prefetch would absorb",
              precondition="num_workers > 0 and known (run.json or a single-process trace)",
              thresholds=("exposed_wait_fraction", "long_wait_factor", "long_wait_min_fraction",
                          "burst_period_factor", "prefetch_factor_max"),
              requires=lambda c: needs_workers(c) or (None if c.workers_now else "num_workers unknown"))
def prefetch_depth(rule: Rule, ctx: Context) -> Finding | None:
    st, shape, n = ctx.steady, ctx.shape, ctx.workers_now
    assert st is not None
    if not n or shape.long_calls == 0 or not ctx.input_bound:
        return None  # under the exposed-wait threshold a deeper queue has nothing to gain
    f = ctx.facts
    rate_ok: bool
    if f is not None and f.batch_ms:
        rate_ok = sizing.workers_needed(float(np.median(f.batch_ms)), st.compute_ms) <= n
        basis = "measured batch times show the workers keep up on average"
    else:
        rate_ok = shape.period is None or shape.period >= threshold("burst_period_factor") * n
        basis = (f"long waits are rare (every {shape.period:.0f} calls, not every {n})"
                 if shape.period else "a single long wait")
    if not rate_ok or shape.long_median_ms < threshold("long_wait_min_fraction") * st.compute_ms:
        return None
    current = ctx.settings.prefetch_factor or 2
    spike = (float(np.percentile(f.batch_ms, 95)) - float(np.median(f.batch_ms))
             if f is not None and f.batch_ms else shape.long_median_ms)
    pf = sizing.prefetch_for_spikes(current, n, spike, st.compute_ms)
    if pf <= current:
        return None
    return make_finding(rule, ctx, Severity.LOW, 0.6 if f is None or not f.batch_ms else 0.8,
              title=(f"Bursty waits: {shape.long_calls} of {shape.calls} __next__ calls wait "
                     f"{shape.long_median_ms:.1f} ms while the rest find a batch ready"),
              evidence={"long_calls": shape.long_calls, "calls": shape.calls,
                        "long_wait_median_ms": shape.long_median_ms, "period_calls": shape.period,
                        "spike_ms": spike, "prefetch_factor_now": current, "basis": basis},
              advice=(f"Set prefetch_factor={pf}: {basis}, so slow batches, not too few workers, "
                      f"empty the queue; {n} workers x {pf} batches in flight cover a "
                      f"{spike:.0f} ms gap at {st.compute_ms:.1f} ms per step."),
              settings={"prefetch_factor": pf})


@declare_rule("TL204", "host_bound", Severity.MEDIUM, "The GPU idles for reasons other than data",
              precondition="GPU activity in the trace",
              thresholds=("host_bound_idle_fraction", "outlier_compute_factor"), requires=needs_gpu)
def host_bound(rule: Rule, ctx: Context) -> Finding | None:
    st = ctx.steady
    assert st is not None
    idle = st.gpu_idle_other_fraction
    if idle is None or idle < threshold("host_bound_idle_fraction"):
        return None
    sync = ctx.analysis.sync_ms_per_step or 0.0
    return make_finding(rule, ctx, Severity.MEDIUM, 0.7,
              title=f"GPU idle {pct(idle)} of each step for reasons other than data",
              evidence={"gpu_idle_other_fraction": idle, "gpu_busy_fraction": ctx.analysis.gpu_busy_fraction,
                        "sync_ms_per_step": sync, "step_ms_median": st.step_ms},
              advice=("Not the loader: the main thread's own work keeps the GPU idle. Look for "
                      f"synchronizations ({sync:.1f} ms per step in device/stream syncs: .item(), "
                      "printing the loss every step, .cpu()), CPU work between steps, and launch "
                      "overhead (many small kernels: a larger batch, torch.compile, CUDA graphs)."))


#: The rules of this module, in the order they run.
RULES: tuple[Rule, ...] = (pageable_memcpy, worker_respawn, prefetch_depth, host_bound,)
