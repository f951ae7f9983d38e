"""Timing-only trial: run a script with DataLoader overrides, time its batches, stop it.

``tracelens sweep`` runs one of these per setting, each in its own Python process
(``python -m tracelens.capture.script.measure SPEC.json RESULT.json``), so every trial starts clean.
No ``torch.profiler`` runs: the capture session's DataLoader hooks apply the overrides and the
main process times each ``__next__`` (the data wait) and the gap to the next one (the step).
The loader timed is the one ``tracelens profile`` records (see ``session``): the first whose
batches feed backward passes, else, provisionally, the one that first draws ``warmup`` batches
and has drawn the most. A step runs from one of its ``__next__`` calls to the next, whatever
happens in between (validation passes, epoch changes), as the script's own steps/s sees it.
The trial skips ``warmup`` batches of that loader (worker start-up, the pre-filled prefetch
queue), records ``steps`` steady-state steps, then stops the script.

Result (JSON): per-step ``step_ns`` and ``wait_ns`` lists, the timed loader's settings as
constructed (after overrides) and how it was chosen (``loader_choice``: ``training`` or
``most_batches``), the worker CPU share per batch, the exit status and why the script stopped,
and ``unusable``: why the trial cannot be compared (no batch, fewer than
:data:`MIN_TRIAL_STEPS` steps), or null.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec

from tracelens.capture.dataloader import hooks
from tracelens.capture.dataloader.registry import LoaderRegistry
from tracelens.capture.dataloader.worker import read_record_file, unpatch_fetch
from tracelens.capture.script.target import StopRun, run_target
from tracelens.runjson import Loader

#: Cap on the warm-up chosen for a loader: skip start-up and the pre-filled queue, not more.
MAX_AUTO_WARMUP = 64
MIN_AUTO_WARMUP = 5
#: A trial with fewer steady steps is not compared: a handful of steps is all start-up and noise.
MIN_TRIAL_STEPS = 10
#: A trial measures its steps and at least this long (ns), unless the script ends first. A fast
#: loop's 50 steps last a fraction of a second, shorter than the phases a shared 2-core machine
#: goes through (the training step's math threads and the workers taking the cores from each
#: other: blocks of tens of steps 3-10x slower than the rest, seen on examples/iterable_stream.py),
#: so one trial could read one phase as the rate; the script's own steps/s averages seconds.
MIN_MEASURE_NS = 2_000_000_000
#: ... but never more than this many times the steps asked for.
MAX_STEPS_FACTOR = 20


def auto_warmup(num_workers: int, prefetch_factor: int | None) -> int:
    """Batches to skip: the ones workers pre-fill (num_workers × prefetch_factor), 5 to 64."""
    prefilled = num_workers * (prefetch_factor or 0)
    return max(MIN_AUTO_WARMUP, min(MAX_AUTO_WARMUP, prefilled + 2))


#: Overrides a loader without workers neutralises (``LoaderRegistry.apply_overrides``), and
#: those run.json records under another form: not compared.
_UNCOMPARED = {"prefetch_factor", "persistent_workers", "multiprocessing_context", "timeout"}


def overrides_missed(info: Loader, overrides: dict[str, Any]) -> list[str]:
    """``name=actual (asked value)`` for each override the constructed loader does not show."""
    missed = []
    for key, asked in overrides.items():
        if key in _UNCOMPARED or not hasattr(info, key):
            continue
        actual = getattr(info, key)
        if actual != asked:
            missed.append(f"{key}={actual!r} (asked {asked!r})")
    return missed


class TimingSession:
    """Times batches instead of profiling them (the hooks' other session).

    Composes the loader registry (overrides, settings, iterators); times the training loader
    (module docstring): other loaders' batches are not steps.
    """

    def __init__(self, scratch: Path, overrides: dict[str, Any], warmup: int | None, steps: int) -> None:
        self.run_dir = scratch
        self.record_dir = scratch / ".workers"
        self.registry = LoaderRegistry(overrides, self.record_dir)
        self.loader_overrides = self.registry.overrides
        self.warmup = warmup  # as asked (None: auto_warmup of the loader timed)
        self.steps = steps
        self.timed_loader: int | None = None
        self.timed_warmup = 0
        self.provisional = False
        self.last_loader: int | None = None
        self.next_starts: list[int] = []
        self.waits: list[int] = []
        self.first_batch_ns: dict[int, int] = {}  # loader -> when its first batch arrived
        self.first_iter_ns: dict[int, int] = {}
        #: (perf ns, {pid: (on-CPU ns, run-queue delay ns)}) at the first and last measured step
        self.sched: list[tuple[int, dict[int, tuple[int, int]]]] = []

    def start(self) -> None:
        """Create the scratch directory and install the DataLoader hooks (no profiler)."""
        self.record_dir.mkdir(parents=True, exist_ok=True)
        hooks.install(self)

    def apply_overrides(self, arguments: dict[str, Any]) -> dict[str, Any]:
        return self.registry.apply_overrides(arguments)

    def register_loader(self, loader: Any, applied: dict[str, Any] | None = None) -> int:
        return self.registry.register(loader, applied)

    def on_iter(self, loader: Any, orig: Any) -> Any:
        record = self.registry.on_iter(loader)
        self.first_iter_ns.setdefault(record.info.id, time.perf_counter_ns())
        it = orig(loader)
        self.registry.on_iterator(loader, it)
        return it

    def on_user_profiler(self, name: str, prof: Any = None) -> None:
        """The script's own profiler runs as it likes: a timing trial records no trace."""

    def on_backward(self) -> None:
        """The loader drawn last trains: time it (again from its warm-up when a provisional
        choice was being timed)."""
        credited = self.registry.on_backward(self.last_loader)
        if credited is None or (credited == self.timed_loader and not self.provisional):
            return
        if self.timed_loader is None or credited != self.timed_loader:
            self._choose(credited, provisional=False)
        self.provisional = False

    def _choose(self, loader_id: int, *, provisional: bool) -> None:
        info = self.registry.records[loader_id].info
        self.timed_loader, self.provisional = loader_id, provisional
        self.timed_warmup = self.warmup if self.warmup is not None else auto_warmup(info.num_workers, info.prefetch_factor)
        self.next_starts, self.waits, self.sched = [], [], []

    def on_next(self, it: Any, orig: Any) -> Any:
        """Time one ``__next__``; stop the script once the steady-state steps are recorded."""
        loader_id = getattr(it, "_tracelens_loader_id", None)
        if loader_id is None:
            loader_id = self.registry.adopt_iterator(it)
        self.last_loader = loader_id
        record = self.registry.records[loader_id]
        drawn = record.batches_drawn
        if self.timed_loader is None:
            info = record.info
            wait = self.warmup if self.warmup is not None else auto_warmup(info.num_workers, info.prefetch_factor)
            if drawn >= wait and self.registry.most_drawn(loader_id):
                self._choose(loader_id, provisional=True)
        timed = loader_id == self.timed_loader
        if timed and self._measured(drawn - self.timed_warmup):
            self.next_starts.append(time.perf_counter_ns())  # closes the last step
            self._mark_sched()
            raise StopRun()
        if timed and drawn >= self.timed_warmup and not self.sched:
            self._mark_sched()
        t0 = time.perf_counter_ns()
        data = orig(it)  # StopIteration at an epoch's end propagates untimed
        t1 = time.perf_counter_ns()
        if drawn == 0:
            self.first_batch_ns[loader_id] = t1
        if timed and drawn >= self.timed_warmup:
            self.next_starts.append(t0)
            self.waits.append(t1 - t0)
        self.registry.count_batch(loader_id)
        return data

    def _measured(self, steps: int) -> bool:
        """Whether ``steps`` steady steps are enough: the steps asked for, over at least
        :data:`MIN_MEASURE_NS` (at most ``MAX_STEPS_FACTOR`` times the steps)."""
        if steps < self.steps:
            return False
        if steps >= MAX_STEPS_FACTOR * self.steps or not self.next_starts:
            return True
        return time.perf_counter_ns() - self.next_starts[0] >= MIN_MEASURE_NS

    def choice(self) -> str | None:
        """How the timed loader was chosen: ``training``, ``most_batches``, or None (no batch)."""
        if self.timed_loader is None:
            return None
        return "most_batches" if self.provisional else "training"

    def unusable(self) -> str | None:
        """Why this trial's numbers cannot be compared with others', or None (an override that
        did not reach the timed loader refuses the trial: its numbers are not the setting asked)."""
        steps = max(0, len(self.next_starts) - 1)
        if self.timed_loader is not None:
            missed = overrides_missed(self.registry.records[self.timed_loader].info, self.registry.overrides)
            if missed:
                info = self.registry.records[self.timed_loader].info
                return (f"the override did not take effect: loader #{self.timed_loader} ({info.cls}) runs with "
                        f"{', '.join(missed)}; its constructor does not pass these arguments on to DataLoader, "
                        "so this trial does not measure the setting asked for")
        if self.timed_loader is None:
            drawn = max((r.batches_drawn for r in self.registry.records), default=0)
            return (f"no loader fed a backward pass or drew {self.warmup or 'its warm-up of'} batches "
                    f"(the most: {drawn})")
        if steps < MIN_TRIAL_STEPS:
            rec = self.registry.records[self.timed_loader]
            return (f"only {steps} steady step(s) measured (fewer than {MIN_TRIAL_STEPS}): the script ended "
                    f"after {rec.batches_drawn} batches of loader #{self.timed_loader}, {self.timed_warmup} "
                    "of them warm-up")
        return None

    def _mark_sched(self) -> None:
        now = time.perf_counter_ns()
        got = tree_schedstat()
        if got is not None:
            self.sched.append((now, got))

    def contention(self) -> dict[str, float | None] | None:
        """Over the measured steps, per second of wall time: CPU seconds this trial's processes
        used (main + workers), seconds their threads sat runnable waiting for a CPU
        (``/proc/<pid>/task/*/schedstat``: a busy machine, or more threads than cores), and
        ``worker_demand``: the share of its time an average worker wanted a CPU (on one, or
        waiting for one). Unlike CPU time / batch time, the demand does not fall when other
        processes take the cores: a CPU-bound loader reads about 1.0 on a busy machine too."""
        if len(self.sched) < 2:
            return None
        (t0, s0), (t1, s1) = self.sched[0], self.sched[-1]
        wall = max(t1 - t0, 1)
        both = [p for p in s1 if p in s0]
        cpu = sum(s1[p][0] - s0[p][0] for p in both)
        delay = sum(s1[p][1] - s0[p][1] for p in both)
        workers = [p for p in both if p != os.getpid()]
        demand = (
            sum(s1[p][0] - s0[p][0] + s1[p][1] - s0[p][1] for p in workers) / wall / len(workers)
            if workers
            else None
        )
        return {
            "cpu_per_s": round(cpu / wall, 4),
            "run_queue_delay_per_s": round(delay / wall, 4),
            "worker_demand": None if demand is None else round(demand, 4),
        }

    def close(self) -> None:
        """Remove the hooks, restore worker_init_fn, stop the workers."""
        hooks.uninstall()
        unpatch_fetch()
        self.registry.restore()
        self.registry.shutdown_iterators()

    def worker_cpu_fraction(self) -> float | None:
        """Σ worker CPU time / Σ worker batch time over the timed loader's batches (0-1)."""
        cpu = wall = 0
        try:
            names = os.listdir(self.record_dir)
        except OSError:
            return None
        for name in names:
            if not name.startswith(f"{self.timed_loader}-") or not name.endswith(".rec"):
                continue
            _, rows = read_record_file(str(self.record_dir / name))
            for start, end, c in rows:
                wall += end - start
                cpu += c
        return cpu / wall if wall > 0 else None


def tree_schedstat() -> dict[int, tuple[int, int]] | None:
    """pid → (on-CPU ns, run-queue delay ns) of this process and its child processes (the
    workers), or None where ``/proc/<pid>/task/*/schedstat`` is not available."""
    from tracelens.capture.machine.telemetry import read_schedstat

    pids = [os.getpid()]
    with contextlib.suppress(Exception):
        import psutil

        pids += [c.pid for c in psutil.Process().children(recursive=True)]
    out = {}
    for pid in pids:
        got = read_schedstat(pid)
        if got is not None:
            out[pid] = got
    return out or None


def run_timing_trial(
    target: str,
    args: list[str],
    overrides: dict[str, Any],
    *,
    steps: int,
    warmup: int | None = None,
    module: bool = False,
) -> dict[str, Any]:
    """Run ``target`` once with ``overrides``, timing ``steps`` batches after ``warmup``."""
    scratch = Path(tempfile.mkdtemp(prefix="tracelens-trial-"))
    session = TimingSession(scratch, overrides, warmup, steps)
    wall0 = time.perf_counter_ns()
    load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    session.start()
    try:
        status, reason, error = run_target(target, args, module, stop_reason="steps_measured")
    finally:
        session.close()
    starts = session.next_starts
    records = session.registry.records
    timed = records[session.timed_loader] if session.timed_loader is not None else None
    loader = msgspec.to_builtins(timed.to_struct(lambda _: None)) if timed is not None else None
    result: dict[str, Any] = {
        "exit_status": status,
        "stop_reason": reason,
        "script_error": error,
        "warmup": session.timed_warmup if session.timed_loader is not None else session.warmup,
        "steps_requested": steps,
        "step_ns": [b - a for a, b in itertools.pairwise(starts)],
        "wait_ns": session.waits[: max(0, len(starts) - 1)],
        "startup_ns": _startup_ns(session),
        "loader": loader,
        "loader_choice": session.choice(),
        "unusable": session.unusable(),
        "loaders": len(records),
        "worker_cpu_fraction": session.worker_cpu_fraction(),
        "contention": session.contention(),
        "load_average_1m": [load0, os.getloadavg()[0] if hasattr(os, "getloadavg") else None],
        "wall_ns": time.perf_counter_ns() - wall0,
    }
    shutil.rmtree(scratch, ignore_errors=True)
    return result


def _startup_ns(session: TimingSession) -> int | None:
    """From the timed loader's first ``__iter__`` to its first batch."""
    lid = session.timed_loader
    if lid is None or lid not in session.first_batch_ns or lid not in session.first_iter_ns:
        return None
    return session.first_batch_ns[lid] - session.first_iter_ns[lid]


def main(argv: list[str] | None = None) -> int:
    """``python -m tracelens.capture.script.measure SPEC.json RESULT.json``: one trial, result as JSON."""
    spec_path, out_path = (argv if argv is not None else sys.argv[1:])[:2]
    spec = json.loads(Path(spec_path).read_text())
    result = run_timing_trial(
        spec["target"],
        list(spec.get("args", [])),
        dict(spec.get("overrides", {})),
        steps=int(spec["steps"]),
        warmup=spec.get("warmup"),
        module=bool(spec.get("module", False)),
    )
    Path(out_path).write_text(json.dumps(result, default=repr))
    return 0


if __name__ == "__main__":
    sys.exit(main())
