"""Timing-only trial: run a script with DataLoader and thread overrides, time its batches in
rounds that its parent grants, stop it.

``tracelens sweep`` keeps one of these per setting alive for the whole sweep
(``python -m tracelens.capture.script.measure SPEC.json RESULT.json``, with two pipe descriptors in
the spec): no ``torch.profiler`` runs; the capture session's DataLoader hooks apply the
overrides and the main process times each ``__next__`` (the data wait) and the gap to the next
one (the step). The loader timed is the one ``tracelens profile`` records (see ``session``): the
first whose batches feed backward passes, else, provisionally, the one that first draws
``warmup`` batches and has drawn the most. A step runs from one of its ``__next__`` calls to the
next, whatever happens in between (validation passes, epoch changes), as the script's own
steps/s sees it.

The trial skips ``warmup`` batches of that loader (worker start-up, the pre-filled prefetch
queue), says ``ready`` and then blocks inside ``__next__`` until the parent grants a round
(:mod:`tracelens.sweep.pool`). A round discards its first steps (the workers kept filling their
queue while the script was blocked), records at least ``min_steps`` steps over at least
``min_ns``, waits until its own workers are idle again (so that they do not disturb the next
trial's round), reports, and blocks again. ``stop`` (or the parent's end) stops the script.
Without a pipe (:func:`run_timing_trial`) one round of ``steps`` steps over at least
:data:`~tracelens.capture.script.trial_control.MIN_MEASURE_NS` is measured, then the script is stopped.

The ceiling trial replays cached batches instead of drawing new ones (:mod:`.replay`).
``main_threads`` sets ``torch.set_num_threads`` in this process (the script's own calls are
then recorded, not obeyed), ``worker_threads`` in each worker after its ``worker_init_fn``.

Result (JSON): every round (``step_ns``, ``wait_ns``, contention), the timed loader's settings
as constructed (after overrides) and how it was chosen (``loader_choice``: ``training`` or
``most_batches``), the worker CPU share per batch, the exit status, the script's error and why
it stopped, and ``unusable``: why the trial cannot be compared (no batch, fewer than
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from tracelens.capture.dataloader import hooks
from tracelens.capture.dataloader.registry import LoaderRegistry
from tracelens.capture.dataloader.worker import read_record_file, unpatch_fetch
from tracelens.capture.script.replay import BatchCache, ReplayIterator, epoch_length
from tracelens.capture.script.target import StopRun, run_target
from tracelens.capture.script.trial_control import (
    Control,
    LocalControl,
    MainThreads,
    PipeControl,
    RoundGrant,
)

#: Cap on the warm-up chosen for a loader: skip start-up and the pre-filled queue, not more.
MAX_AUTO_WARMUP = 64
MIN_AUTO_WARMUP = 5
#: A trial with fewer steady steps is not compared: a handful of steps is all start-up and noise.
MIN_TRIAL_STEPS = 10
#: After a round the trial waits until its workers use less than this many cores together
#: (they refill their queues while the script is blocked) ...
SETTLED_CORES = 0.15
#: ... polling this often (s), for at most ``RoundGrant.settle_max_s``.
SETTLE_POLL_S = 0.025


def auto_warmup(num_workers: int, prefetch_factor: int | None) -> int:
    """Batches to skip: the ones workers pre-fill (num_workers × prefetch_factor), 5 to 64."""
    prefilled = num_workers * (prefetch_factor or 0)
    return max(MIN_AUTO_WARMUP, min(MAX_AUTO_WARMUP, prefilled + 2))


@dataclass
class Round:
    """The round being measured."""

    grant: RoundGrant
    discard_left: int
    starts: list[int]
    waits: list[int]
    sched: list[tuple[int, dict[int, tuple[int, int]]]]
    started_wall_ns: int = 0


class TimingSession:
    """Times batches instead of profiling them (the hooks' other session).

    Composes the loader registry (overrides, settings, iterators); times the training loader
    (module docstring): other loaders' batches are not steps.
    """

    def __init__(self, scratch: Path, overrides: dict[str, Any], warmup: int | None, steps: int, *,
                 control: Control | None = None, worker_threads: int | None = None,
                 main_threads: int | None = None, replay: BatchCache | None = None) -> None:
        self.run_dir = scratch
        self.record_dir = scratch / ".workers"
        self.registry = LoaderRegistry(overrides, self.record_dir, worker_threads=worker_threads)
        self.loader_overrides = self.registry.overrides
        self.warmup = warmup  # as asked (None: auto_warmup of the loader timed)
        self.steps = steps
        self.control: Control = control or LocalControl(steps)
        self.threads = MainThreads(main_threads)
        self.cache = replay
        self.replaying = False
        self.timed_loader: int | None = None
        self.timed_warmup = 0
        self.provisional = False
        self.last_loader: int | None = None
        self.round: Round | None = None
        self.started = False  # ready was sent
        self.stopped = False
        self.rounds: list[dict[str, Any]] = []
        self.epoch_seen: int | None = None  # batches an iterator of the timed loader yielded before its end
        self.first_batch_ns: dict[int, int] = {}  # loader -> when its first batch arrived
        self.first_iter_ns: dict[int, int] = {}
        self.ready_ns: int | None = None

    def start(self) -> None:
        """Create the scratch directory, set the threads and install the DataLoader hooks (no profiler)."""
        self.record_dir.mkdir(parents=True, exist_ok=True)
        self.threads.install()
        hooks.install(self)

    def apply_overrides(self, arguments: dict[str, Any]) -> dict[str, Any]:
        return self.registry.apply_overrides(arguments)

    def register_loader(self, loader: Any, applied: dict[str, Any] | None = None) -> int:
        return self.registry.register(loader, applied)

    def on_iter(self, loader: Any, orig: Any) -> Any:
        record = self.registry.on_iter(loader)
        lid = record.info.id
        self.first_iter_ns.setdefault(lid, time.perf_counter_ns())
        if self.replaying and lid == self.timed_loader:  # a new epoch of a free loader: no workers
            length = epoch_length(loader, self.epoch_seen)
            return ReplayIterator(self._replay_next, length, lid)
        it = orig(loader)
        self.registry.on_iterator(loader, it)
        return it

    def on_user_profiler(self, name: str) -> None:
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
        if self.round is not None:  # the round goes on with the new loader, after its warm-up
            self.round = Round(self.round.grant, 0, [], [], [], 0)
        if self.cache is not None:
            self.cache = BatchCache(self.cache.max_batches, self.cache.max_bytes)
            self.replaying = False

    # --- the batches -------------------------------------------------------------------------

    def on_next(self, it: Any, orig: Any) -> Any:
        """One ``__next__`` of a DataLoader iterator."""
        loader_id = getattr(it, "_tracelens_loader_id", None)
        if loader_id is None:
            loader_id = self.registry.adopt_iterator(it)
        if self.replaying and loader_id == self.timed_loader:
            return self._replay_next(it)
        return self._batch(loader_id, lambda: orig(it), it)

    def _replay_next(self, it: Any) -> Any:
        """A batch of the free loader: StopIteration at the epoch's length, else a cached batch."""
        length = epoch_length(it, self.epoch_seen) if not isinstance(it, ReplayIterator) else it._length
        assert self.timed_loader is not None and self.cache is not None

        def serve() -> Any:
            if length is not None and it._num_yielded >= length:
                raise StopIteration
            it._num_yielded += 1
            return self.cache.serve()  # type: ignore[union-attr]

        return self._batch(self.timed_loader, serve, it)

    def _batch(self, loader_id: int, fetch: Callable[[], Any], it: Any) -> Any:
        self.last_loader = loader_id
        record = self.registry.records[loader_id]
        drawn = record.batches_drawn
        if self.timed_loader is None:
            info = record.info
            wait = self.warmup if self.warmup is not None else auto_warmup(info.num_workers, info.prefetch_factor)
            if drawn >= wait and self.registry.most_drawn(loader_id):
                self._choose(loader_id, provisional=True)
        if loader_id == self.timed_loader and drawn >= self.timed_warmup:
            return self._timed(loader_id, fetch, drawn, it)
        return self._fetch(loader_id, fetch, drawn, it)

    def _fetch(self, loader_id: int, fetch: Callable[[], Any], drawn: int, it: Any) -> Any:
        try:
            data = fetch()
        except StopIteration:
            if loader_id == self.timed_loader:
                self.epoch_seen = int(getattr(it, "_num_yielded", 0) or 0) or self.epoch_seen
            raise
        if drawn == 0:
            self.first_batch_ns[loader_id] = time.perf_counter_ns()
        self.registry.count_batch(loader_id)
        return data

    def _timed(self, loader_id: int, fetch: Callable[[], Any], drawn: int, it: Any) -> Any:
        """A batch of the timed loader after its warm-up: cache it (ceiling trial), or time it
        in the round granted, or end the round and wait for the next grant here."""
        if self.cache is not None and not self.replaying:
            data = self._fetch(loader_id, fetch, drawn, it)
            self.cache.add(data)
            if self.cache.full:
                self.replaying = True
            return data
        now = time.perf_counter_ns()
        rnd = self.round
        if rnd is None or (rnd.starts and self._complete(rnd, now)):
            if rnd is not None:
                rnd.starts.append(now)  # closes the round's last step
                self._mark_sched(rnd)
            rnd = self._next_round()
            if rnd is None:
                raise StopRun()
            now = time.perf_counter_ns()
        if rnd.discard_left > 0:
            rnd.discard_left -= 1
            return self._fetch(loader_id, fetch, drawn, it)
        if not rnd.starts:
            self._mark_sched(rnd)
            rnd.started_wall_ns = time.time_ns()
        data = self._fetch(loader_id, fetch, drawn, it)  # StopIteration at an epoch's end propagates untimed
        rnd.starts.append(now)
        rnd.waits.append(time.perf_counter_ns() - now)
        return data

    def _complete(self, rnd: Round, now: int) -> bool:
        """Whether the round has its steps: ``min_steps`` over at least ``min_ns`` (or ``max_steps``)."""
        steps = len(rnd.starts)  # a step closes at the next start: ``now``
        if steps < rnd.grant.min_steps:
            return False
        return steps >= rnd.grant.max_steps or now - rnd.starts[0] >= rnd.grant.min_ns

    def _next_round(self) -> Round | None:
        """Report the round just measured (or ``ready``), settle, and wait for the next grant."""
        if self.stopped:
            return None
        if self.round is None and not self.started:
            self.started = True
            self.ready_ns = time.perf_counter_ns()
            info = self._ready_info()
            if self.control.settle_ready_s > 0:
                info["settle_s"] = settle(self.control.settle_ready_s)
            grant = self.control.ready(info)
        else:
            result = self._round_result(self.round) if self.round is not None else {}
            self.rounds.append(result)
            if self.round is not None and self.round.grant.settle_max_s > 0:
                result["settle_s"] = settle(self.round.grant.settle_max_s)
            grant = self.control.round_done(result)
        if grant is None:
            self.stopped = True
            self.round = None
            return None
        self.round = Round(grant, grant.discard, [], [], [])
        return self.round

    def _ready_info(self) -> dict[str, Any]:
        lid = self.timed_loader
        loader = msgspec.to_builtins(self.registry.records[lid].to_struct(lambda _: None)) if lid is not None else None
        return {"loader": loader, "loader_choice": self.choice(), "warmup": self.timed_warmup,
                "startup_ns": _startup_ns(self), "pid": os.getpid(),
                "replay": self.cache.describe() if self.cache is not None else None,
                "torch_threads": _torch_threads()}

    def _round_result(self, rnd: Round) -> dict[str, Any]:
        starts = rnd.starts
        return {
            "round": rnd.grant.index, "loader_id": self.timed_loader, "loader_choice": self.choice(),
            "step_ns": [b - a for a, b in itertools.pairwise(starts)],
            "wait_ns": rnd.waits[: max(0, len(starts) - 1)], "discarded": rnd.grant.discard - rnd.discard_left,
            "contention": contention(rnd.sched), "started_wall_ns": rnd.started_wall_ns,
            "replay": self.cache.describe() if self.cache is not None else None,
        }

    def partial_round(self) -> dict[str, Any] | None:
        """The steps of a round the script's end cut short (None when there are none)."""
        rnd = self.round
        if rnd is None or len(rnd.starts) < 2:
            return None
        return self._round_result(rnd) | {"partial": True}

    def choice(self) -> str | None:
        """How the timed loader was chosen: ``training``, ``most_batches``, or None (no batch)."""
        if self.timed_loader is None:
            return None
        return "most_batches" if self.provisional else "training"

    def measured_steps(self) -> int:
        rounds = [*self.rounds, *([p] if (p := self.partial_round()) else [])]
        return sum(len(r.get("step_ns", [])) for r in rounds if r.get("loader_id") == self.timed_loader)

    def unusable(self) -> str | None:
        """Why this trial's numbers cannot be compared with others', or None."""
        steps = self.measured_steps()
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

    def _mark_sched(self, rnd: Round) -> None:
        now = time.perf_counter_ns()
        got = tree_schedstat()
        if got is not None:
            rnd.sched.append((now, got))

    def close(self) -> None:
        """Remove the hooks, restore worker_init_fn and the threads, stop the workers."""
        hooks.uninstall()
        unpatch_fetch()
        self.threads.uninstall()
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


def contention(sched: list[tuple[int, dict[int, tuple[int, int]]]]) -> dict[str, float | None] | None:
    """Between the first and last schedstat reading, per second of wall time: CPU seconds this
    trial's processes used (main + workers), seconds their threads sat runnable waiting for a
    CPU (``/proc/<pid>/task/*/schedstat``: a busy machine, or more threads than cores), and
    ``worker_demand``: the share of its time an average worker wanted a CPU (on one, or waiting
    for one). Unlike CPU time / batch time, the demand does not fall when other processes take
    the cores: a CPU-bound loader reads about 1.0 on a busy machine too."""
    if len(sched) < 2:
        return None
    (t0, s0), (t1, s1) = sched[0], sched[-1]
    wall = max(t1 - t0, 1)
    both = [p for p in s1 if p in s0]
    cpu = sum(s1[p][0] - s0[p][0] for p in both)
    delay = sum(s1[p][1] - s0[p][1] for p in both)
    workers = [p for p in both if p != os.getpid()]
    demand = (sum(s1[p][0] - s0[p][0] + s1[p][1] - s0[p][1] for p in workers) / wall / len(workers)
              if workers else None)
    return {"cpu_per_s": round(cpu / wall, 4), "run_queue_delay_per_s": round(delay / wall, 4),
            "worker_demand": None if demand is None else round(demand, 4)}


def _children() -> list[int]:
    with contextlib.suppress(Exception):
        import psutil

        return [c.pid for c in psutil.Process().children(recursive=True)]
    return []


def tree_schedstat() -> dict[int, tuple[int, int]] | None:
    """pid → (on-CPU ns, run-queue delay ns) of this process and its child processes (the
    workers), or None where ``/proc/<pid>/task/*/schedstat`` is not available."""
    from tracelens.capture.machine.telemetry import read_schedstat

    out = {}
    for pid in [os.getpid(), *_children()]:
        got = read_schedstat(pid)
        if got is not None:
            out[pid] = got
    return out or None


def settle(max_s: float) -> float:
    """Wait (at most ``max_s``) until this process's workers use under :data:`SETTLED_CORES`
    together: blocked in ``__next__``, the script still has workers filling their queues, which
    would take the cores from the next trial's round. Returns the seconds waited."""
    from tracelens.capture.machine.telemetry import read_schedstat

    t0 = time.perf_counter()
    pids = _children()

    def cpu_ns() -> int:
        return sum((read_schedstat(p) or (0, 0))[0] for p in pids)

    last, last_t = cpu_ns(), time.perf_counter()
    while pids and time.perf_counter() - t0 < max_s:
        time.sleep(SETTLE_POLL_S)
        now, now_t = cpu_ns(), time.perf_counter()
        if (now - last) / 1e9 / max(now_t - last_t, 1e-6) < SETTLED_CORES:
            break
        last, last_t = now, now_t
    return round(time.perf_counter() - t0, 4)


def _torch_threads() -> int | None:
    with contextlib.suppress(Exception):
        import torch

        return int(torch.get_num_threads())
    return None


def run_trial(target: str, args: list[str], overrides: dict[str, Any], *, steps: int, warmup: int | None = None,
              module: bool = False, control: Control | None = None, main_threads: int | None = None,
              worker_threads: int | None = None, replay: BatchCache | None = None) -> dict[str, Any]:
    """Run ``target`` with ``overrides``, measuring the rounds ``control`` grants (default: one
    round of ``steps`` steps after ``warmup``); the whole trial's result."""
    scratch = Path(tempfile.mkdtemp(prefix="tracelens-trial-"))
    session = TimingSession(scratch, overrides, warmup, steps, control=control, worker_threads=worker_threads,
                            main_threads=main_threads, replay=replay)
    wall0 = time.perf_counter_ns()
    load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    session.start()
    try:
        status, reason, error = run_target(target, args, module, stop_reason="steps_measured")
    finally:
        session.close()
    records = session.registry.records
    timed = records[session.timed_loader] if session.timed_loader is not None else None
    loader = msgspec.to_builtins(timed.to_struct(lambda _: None)) if timed is not None else None
    rounds = [r for r in session.rounds if r]
    partial = session.partial_round()
    kept = [r for r in [*rounds, *([partial] if partial else [])] if r.get("loader_id") == session.timed_loader]
    result: dict[str, Any] = {
        "exit_status": status, "stop_reason": reason, "script_error": error,
        "warmup": session.timed_warmup if session.timed_loader is not None else session.warmup,
        "steps_requested": steps,
        "step_ns": [s for r in kept for s in r["step_ns"]],
        "wait_ns": [w for r in kept for w in r["wait_ns"]],
        "rounds": rounds, "partial_round": partial,
        "startup_ns": _startup_ns(session),
        "ready_after_ns": None if session.ready_ns is None else session.ready_ns - wall0,
        "loader": loader, "loader_choice": session.choice(), "unusable": session.unusable(),
        "loaders": len(records), "worker_cpu_fraction": session.worker_cpu_fraction(),
        "contention": kept[0]["contention"] if len(kept) == 1 else None,
        "torch_threads": _torch_threads(), "script_thread_calls": session.threads.script_calls,
        "replay": session.cache.describe() if session.cache is not None else None,
        "load_average_1m": [load0, os.getloadavg()[0] if hasattr(os, "getloadavg") else None],
        "wall_ns": time.perf_counter_ns() - wall0,
    }
    shutil.rmtree(scratch, ignore_errors=True)
    return result


def run_timing_trial(target: str, args: list[str], overrides: dict[str, Any], *, steps: int,
                     warmup: int | None = None, module: bool = False) -> dict[str, Any]:
    """Run ``target`` once with ``overrides``, timing ``steps`` batches after ``warmup``."""
    return run_trial(target, args, overrides, steps=steps, warmup=warmup, module=module)


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
    pipe = spec.get("control")
    replay = spec.get("replay")
    result = run_trial(
        spec["target"], list(spec.get("args", [])), dict(spec.get("overrides", {})),
        steps=int(spec["steps"]), warmup=spec.get("warmup"), module=bool(spec.get("module", False)),
        control=PipeControl(int(pipe[0]), int(pipe[1])) if pipe else None,
        main_threads=spec.get("main_threads"), worker_threads=spec.get("worker_threads"),
        replay=BatchCache(int(replay["batches"]), int(replay["bytes"])) if replay else None,
    )
    Path(out_path).write_text(json.dumps(result, default=repr))
    return 0


if __name__ == "__main__":
    sys.exit(main())
