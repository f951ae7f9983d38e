"""How many workers: Little's law with its inputs, its cap (cores, a process limit or an
assumption) and the expected gain; the workers' measured capacity against the demand."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from tracelens.diagnosis import sizing
from tracelens.diagnosis.context import Context
from tracelens.diagnosis.thresholds import threshold
from tracelens.vocab import pct


def worker_capacity(ctx: Context) -> float | None:
    """num_workers × C / T_b: how many times the loop's consumption the current workers produce.

    Only from batch times measured in the worker processes (run.json): a T_b estimated from the
    waits assumes a drained queue and cannot show a surplus. None without them.
    """
    f, st, n = ctx.facts, ctx.steady, ctx.workers_now
    if f is None or not f.batch_ms or f.batch_source != "workers" or not n or st is None:
        return None
    t_b = float(np.median(f.batch_ms))
    if t_b <= 0 or st.compute_ms <= 0:
        return None
    return n * st.compute_ms / t_b


@dataclass(frozen=True)
class WorkersPlan:
    """num_workers from Little's law with its inputs, cap and expected gain."""

    num_workers: int
    batch_ms: float | None
    batch_source: str
    compute_ms: float
    workers_needed: float | None
    uncapped: int | None
    cap: int | None
    cap_reason: str
    expected_speedup: float | None
    notes: tuple[str, ...]
    cannot_help: bool  # more workers cannot help: the cap is reached
    torch_threads_main: int | None = None  # torch.set_num_threads for the main process, when it must shrink
    torch_threads_per_worker: int | None = None
    speedup_bound: float | None = None  # the bound the expected gain states (the exposed wait's ceiling)

    @property
    def settings(self) -> dict[str, Any]:
        """The settings this plan proposes (for a Finding)."""
        out: dict[str, Any] = {"num_workers": self.num_workers, "expected_speedup": self.expected_speedup}
        if self.torch_threads_main is not None:
            out["torch_threads_main"] = self.torch_threads_main
        if self.torch_threads_per_worker is not None:
            out["torch_threads_per_worker"] = self.torch_threads_per_worker
        return out

    @property
    def evidence(self) -> dict[str, Any]:
        return {"batch_ms": self.batch_ms, "batch_ms_source": self.batch_source,
                "compute_ms_per_step": self.compute_ms, "workers_needed": self.workers_needed,
                "num_workers_uncapped": self.uncapped, "num_workers_cap": self.cap,
                "recommended_num_workers": self.num_workers, "expected_speedup": self.expected_speedup,
                "speedup_bound": self.speedup_bound,
                "torch_threads_main": self.torch_threads_main}

    def advice(self, reduce_cost: str) -> str:
        capped = (f" (capped: Little's law asks for {self.uncapped})"
                  if self.uncapped is not None and self.uncapped > self.num_workers else "")
        threads = (f" with torch.set_num_threads({self.torch_threads_main}) in the main process"
                   if self.torch_threads_main is not None else "")
        s = f"Set num_workers={self.num_workers}{threads}{capped}. " + " ".join(self.notes)
        if self.cannot_help:
            s += f" More workers cannot help beyond that; reduce the per-batch cost instead: {reduce_cost}."
        else:
            s += f" If that is still not enough: {reduce_cost}."
        return s


def estimate_batch_ms(ctx: Context) -> tuple[float | None, str, int | None]:
    """T_b (one process's time per batch), where it came from, and the worker count it assumes."""
    f, st = ctx.facts, ctx.steady
    n = ctx.workers_now
    if f is not None and f.batch_ms:
        return float(np.median(f.batch_ms)), f"measured per batch in the {f.batch_source or 'workers'}", n
    if st is None:
        return None, "no steps", n
    if n == 0 and len(ctx.analysis.next_wait_ms):
        return (float(np.median(ctx.analysis.next_wait_ms)),
                "with num_workers=0 each __next__ produces the batch in the main process", n)
    if n is None and ctx.multi_process:
        shape = ctx.shape
        guess = max(1, round(shape.period)) if shape.is_bimodal and shape.period else 1
        return (sizing.batch_ms_from_drained_queue(guess, st.compute_ms, st.wait_ms),
                f"N·(C + W) with the queue drained, assuming num_workers={guess} "
                f"({'the period of the long waits' if guess > 1 else 'the trace does not record it'})",
                guess)
    if n:
        return (sizing.batch_ms_from_drained_queue(n, st.compute_ms, st.wait_ms),
                f"N·(C + W) = {n}·({st.compute_ms:.1f} + {st.wait_ms:.1f}) ms with the queue drained", n)
    return None, "unknown", n


@dataclass(frozen=True)
class CpuDemand:
    """CPU the training needs per step (ms), and the fastest step period the cores allow."""

    main_ms: float  # the main process's own work per step (its CPU minus any loading it does)
    batch_ms: float  # CPU to produce one batch
    cores: float  # cores per rank
    main_source: str

    @property
    def period_ms(self) -> float:
        """One step needs main_ms + batch_ms of CPU: on ``cores`` that is the fastest period."""
        return (self.main_ms + self.batch_ms) / self.cores


def cpu_demand(ctx: Context, *, quiet: bool = False) -> CpuDemand | None:
    """The step's CPU demand from run.json: the main process's measured CPU per step (minus the
    loading it does itself with num_workers=0) and the measured CPU per batch, on the cores left to
    the rank (other processes' use taken off), or with ``quiet`` on all its cores. None without them."""
    f, st, b = ctx.facts, ctx.steady, ctx.budget
    if f is None or b is None or st is None or not f.batch_cpu_ms:
        return None
    batch_cpu = float(np.median(f.batch_cpu_ms))
    if f.main is not None and f.main.cpu_fraction is not None:
        main = f.main.cpu_fraction * (st.compute_ms + st.wait_ms)
        if f.batch_source == "main process":
            main -= batch_cpu
        source = "the main process's measured CPU per step" + (
            " minus the loading it does" if f.batch_source == "main process" else "")
    else:
        main, source = st.compute_ms, "assumed: one busy core during the compute"
    return CpuDemand(max(0.0, main), batch_cpu, b.cores_per_rank if quiet else b.cores_left_per_rank, source)


def worker_cap(ctx: Context, cause: str) -> tuple[int, str]:
    """The most workers worth running for this cause, and why: one per core left to the job for
    CPU-bound work (usable cores minus what other processes use), the process limit for
    latency-bound work whatever the cores and their load, an assumption without machine facts."""
    b = ctx.budget
    cap: int
    if cause == "latency":
        cap = sizing.latency_worker_cap()
        threads = ctx.facts is not None and ctx.facts.loads_in_main and bool(ctx.workers_now)
        each = ("a thread of the main process holding its batch in flight" if threads else
                "a process holding a dataset copy and prefetch_factor batches in shared memory")
        cap_reason = (f"the limit of {cap} workers (latency-bound work mostly waits, so it is not capped by cores "
                      f"or their load, but each worker is {each})")
    elif b is not None:
        cap = b.worker_cores
        if b.outside_cores:
            cap_reason = (f"the cores left to the job: {b.usable_cores:g} usable − {b.outside_cores:.2f} used by other "
                          f"processes{f' over {b.local_ranks} local ranks' if b.local_ranks > 1 else ''} = "
                          f"{b.cores_left_per_rank:.2f} per rank")
        else:
            cap_reason = f"{b.cores_per_rank:g} cores per rank"
        cap_reason += (": CPU-bound workers beyond one per core only take turns" if cause == "cpu"
                       else " (assuming CPU-bound work: one worker per core)")
    else:
        cap = int(threshold("assumed_worker_cap"))
        cap_reason = (f"the trace does not record the machine's cores: capped at {cap}, an assumption "
                      f"that fits a machine with at least {cap + 1} free cores")
    return cap, cap_reason


def expected_gain(ctx: Context, pace: float, t_b: float, n: int, c_new: float) -> tuple[float | None, str]:
    """The predicted step-rate gain of ``n`` workers (bounded by the ceiling) and its note."""
    st = ctx.steady
    assert st is not None
    c = st.compute_ms
    # Predicted step period: the loop waits only when the workers deliver slower than it consumes.
    period_now = c + st.wait_ms
    period_new = max(pace, t_b / n) if n > 0 else c + t_b
    gain = period_now / period_new if period_new > 0 else None
    ceiling = sizing.speedup_ceiling(st.exposed_fraction)
    if gain is not None:
        gain = max(1.0, min(gain, ceiling))
        slower = ""
        if c_new > c and n > 0:
            worst = max(1.0, min(period_now / max(c_new, t_b / n), ceiling))
            slower = (f"; at least {worst:.2f}x if the main process's math scaled perfectly with its "
                      f"threads and C grew to {c_new:.1f} ms with fewer of them")
        return gain, (f"Expected gain: up to {gain:.2f}x in steps per second, at most {ceiling:.2f}x: the "
                      f"exposed wait of {pct(st.exposed_fraction)} bounds it{slower}.")
    return gain, ""


def plan_workers(ctx: Context, cause: str) -> WorkersPlan:
    """Little's law, capped by the core budget (CPU-bound), a process limit (latency-bound) or
    an assumption (cause unknown without machine facts)."""
    st = ctx.steady
    assert st is not None
    c = st.compute_ms
    t_b, source, assumed_n = estimate_batch_ms(ctx)
    notes: list[str] = []
    current = ctx.workers_now if ctx.workers_now is not None else assumed_n
    if t_b is None:
        n = current or 1
        return WorkersPlan(n, None, source, c, None, None, None, "", None,
                           ("The batch production time could not be measured.",), False)
    cpu = cpu_demand(ctx) if cause != "latency" else None  # latency-bound counts are not paced by cores
    pace = max(c, cpu.period_ms) if cpu is not None else c
    notes.append(f"Each batch takes T_b = {t_b:.1f} ms to produce ({source}); the training loop "
                 f"consumes one every C = {c:.1f} ms (step time minus data wait).")
    if cause == "cpu" and cpu is not None and cpu.batch_ms < t_b:
        notes.append(f"Of T_b, {cpu.batch_ms:.1f} ms is CPU time: CPU-bound work with a core of its own "
                     f"takes about that (the rest was waiting for a CPU), so the plan uses {cpu.batch_ms:.1f} ms.")
        t_b = cpu.batch_ms
    need = sizing.workers_needed(t_b, pace)
    if cpu is not None and pace > c:  # the cores, not the workers, set the pace: no headroom
        uncapped = max(1, math.ceil(need - 1e-9))
        notes.append(f"The cores set the pace: per step the main process needs {cpu.main_ms:.1f} ms of CPU "
                     f"({cpu.main_source}) and the loading {cpu.batch_ms:.1f} ms, so {_cores(cpu.cores)} cores run "
                     f"one step every ({cpu.main_ms:.1f} + {cpu.batch_ms:.1f}) / {_cores(cpu.cores)} = {pace:.1f} ms "
                     f"at best; T_b / {pace:.1f} ms = {need:.2f} workers keep up, more would only take turns.")
    else:
        uncapped = sizing.littles_law_workers(t_b, c)
        notes.append(f"Little's law needs T_b / C = {need:.2f} workers; with headroom {uncapped}.")
    cores_text = _cores_text(ctx)
    cap, cap_reason = worker_cap(ctx, cause)
    n = min(uncapped, cap) if cap is not None else uncapped
    if current:
        n = max(n, current)  # fewer workers cannot shorten a wait; oversubscription (TL101) may cut them
    cannot_help = cap is not None and uncapped > cap
    if cannot_help:
        notes.append(f"Capped at num_workers={n}, fewer than the {uncapped} Little's law asks for: "
                     f"the cap is {cap_reason}.")
    else:
        notes.append(f"Under the cap: {cap_reason}.")
    shards = ctx.facts.max_workers if ctx.facts is not None else None
    if shards is not None and n > shards:
        n = max(shards, 1)
        cannot_help = True
        notes.append(f"Capped at num_workers={n}: the dataset has {shards} shard(s) and a worker beyond "
                     "one per shard gets no data; to use more workers, re-shard it "
                     "(`to_iterable_dataset(num_shards=…)`, or more source files).")
    main_threads, c_new = _main_threads_for(ctx, cause, n, t_b)
    # workers run 1 torch thread unless the user's worker_init_fn raised it (run.json measures it)
    worker_threads = ctx.facts.torch_threads_worker if ctx.facts is not None else None
    raised = worker_threads is not None and worker_threads > 1
    if main_threads is not None:
        now = ctx.facts.torch_threads_main if ctx.facts is not None else None
        workers_say = (f"set 1 torch thread per worker too (now {worker_threads}, from your worker_init_fn)"
                       if raised else "workers keep the DataLoader's 1 thread each")
        notes.append(f"torch.set_num_threads({main_threads}) in the main process (now {now}): CPU-bound "
                     f"workers need cores of their own, and {now} main-process math threads + {n} "
                     f"worker(s) × 1 thread exceed the {cores_text}, so they would take turns "
                     f"and the workers would cost more than they save; {workers_say}.")
    # The gain on the rank's cores (under outside load it depends on that load: compose says so).
    # Not for latency-bound loading: its main process's CPU holds math threads spinning while it
    # waits for data, no demand of the step.
    quiet = cpu_demand(ctx, quiet=True) if cause != "latency" else None
    gain_pace = max(c, quiet.period_ms) if quiet is not None else c
    gain, gain_note = expected_gain(ctx, gain_pace, t_b, n, c_new)
    if gain_note:
        notes.append(gain_note)
    if main_threads is not None and cannot_help and ctx.workers_now == 0:
        overlap = (t_b + c) / max(t_b, c)
        notes.append(f"On {cores_text} the worker(s) can overlap at most the compute with the "
                     f"loading, (T_b + C) / max(T_b, C) = {overlap:.2f}x, and each batch then pays the "
                     f"hand-over to the main process (pickled into shared memory); if the re-run is not "
                     f"faster, keep num_workers=0 with torch.set_num_threads({main_threads}) (the main "
                     f"process's math threads and its loading no longer contend) and cut the per-sample cost.")
    return WorkersPlan(n, t_b, source, c, need, uncapped, cap, cap_reason, gain, tuple(notes), cannot_help,
                       main_threads, 1 if main_threads is not None and raised else None,
                       sizing.speedup_ceiling(st.exposed_fraction))


def _cores(x: float) -> str:
    return f"{x:g}" if abs(x - round(x)) < 1e-9 else f"{x:.2f}"


def _cores_text(ctx: Context) -> str:
    """The cores the plan fits into, in words: the rank's, or those left by other processes."""
    b = ctx.budget
    if b is None:
        return "cores"
    if b.outside_cores:
        return f"{_cores(b.cores_left_per_rank)} cores left to the job (other processes use {b.outside_cores:.2f})"
    return f"{_cores(b.cores_per_rank)} cores"


def _main_threads_for(ctx: Context, cause: str, workers: int, batch_ms: float) -> tuple[int | None, float]:
    """torch threads for the main process so that it and ``workers`` CPU-bound workers fit the
    cores, and the worst-case compute per step with them (C scaled by the thread ratio).

    The workers busy T_b / max(C, T_b / N) cores between them (the rate the main loop consumes
    at); the main process keeps the rest, rounded to whole threads (at least one). Only for
    CPU-bound loading with run.json's thread count: latency-bound workers mostly wait.
    """
    st, f, b = ctx.steady, ctx.facts, ctx.budget
    assert st is not None
    if cause != "cpu" or workers <= 0 or f is None or b is None or not f.torch_threads_main:
        return None, st.compute_ms
    period = max(st.compute_ms, batch_ms / workers)
    worker_cores = min(float(workers), batch_ms / period) if period > 0 else float(workers)
    fit = max(1, math.floor(b.cores_left_per_rank - worker_cores + 0.5))
    if f.torch_threads_main <= fit:
        return None, st.compute_ms
    used_now = min(f.torch_threads_main, max(1, math.floor(b.cores_left_per_rank + 1e-9)))
    return fit, st.compute_ms * used_now / fit
