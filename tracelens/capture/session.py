"""One capture session: the profiler window driven by DataLoader batches.

The session counts batches, starts ``torch.profiler`` for one window (wait, warm-up, active),
times each ``__next__``, samples telemetry during the window and, at the end, writes
``trace.json.gz`` and ``run.json`` (built by ``rundoc``). Loader bookkeeping lives in the
composed :class:`~tracelens.capture.registry.LoaderRegistry`. Analysis and the report are the
caller's job (``runner.analyze_run``).
"""

from __future__ import annotations

import contextlib
import enum
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracelens.capture import hooks
from tracelens.capture.options import DEFAULT_ACTIVE_STEPS, ProfileResult
from tracelens.capture.registry import LoaderRegistry
from tracelens.capture.rundoc import SYNC_MARKER, SessionState, WindowTimes, build_run_info
from tracelens.capture.target import StopRun
from tracelens.capture.telemetry import TelemetrySampler
from tracelens.runjson import Loader, Schedule, encode_run_info

#: Cap on per-batch records kept in memory (main-process timings, main-process fetches).
MAX_BATCH_RECORDS = 20_000
#: Main-process fetches are timed from this many batches before the window starts.
MAIN_FETCH_LEAD_BATCHES = 64


class Phase(enum.Enum):
    """Where a session is."""

    IDLE = "idle"  # not started
    PRELOADER = "preloader"  # recording everything until the first DataLoader iteration
    WAITING = "waiting"  # counting batches until the window
    WINDOW = "window"  # the profiler is in warm-up or active steps
    DONE = "done"  # the window is recorded (or the run ended)
    USER_PROFILER = "user_profiler"  # the script runs its own profiler: hands off


@dataclass
class SessionConfig:
    """Settings of a capture session (see ``ProfileOptions`` for meanings)."""

    run_dir: Path
    command: dict[str, Any]
    wait: int | None = None
    warmup: int = 2
    active: int | None = None
    stop_after_window: bool = True
    tensorboard_dir: Path | None = None
    no_report: bool = False
    telemetry_interval_ms: float = 100.0
    loader_overrides: dict[str, Any] = field(default_factory=dict)
    record_shapes: bool = False
    with_stack: bool = False
    profile_memory: bool = False
    record_unstepped: bool = True


def choose_schedule(cfg: SessionConfig, loader: Loader) -> tuple[Schedule, str | None]:
    """The window for the first loader iterated, and a note when it was shrunk.

    Explicit values win. Default ``wait`` skips worker start-up and the batches prefetched
    before the first ``__next__`` (num_workers × prefetch_factor, between 3 and 16); ``active``
    is 20 batches. When the loader's epoch is shorter than wait + warmup + active, the defaults
    shrink to fit one epoch (the script may train for one epoch only).
    """
    prefetched = (loader.num_workers or 0) * (loader.prefetch_factor or 0)
    wait = cfg.wait if cfg.wait is not None else max(3, min(prefetched, 16))
    warmup = cfg.warmup
    active = cfg.active if cfg.active is not None else DEFAULT_ACTIVE_STEPS
    epoch = loader.batches_per_epoch
    adapted = False
    if epoch and wait + warmup + active > epoch:
        if cfg.active is None:
            active = max(1, epoch - wait - warmup)
            adapted = True
        if cfg.wait is None and wait + warmup + active > epoch:
            wait = max(1, min(wait, epoch // 4))
            warmup = min(warmup, 1) if epoch < 8 else warmup
            if cfg.active is None:
                active = max(1, epoch - wait - warmup)
            adapted = True
    note = (f"the first loader has {epoch} batches per epoch: window shrunk to wait {wait}, "
            f"warmup {warmup}, active {active} batches") if adapted else None
    return Schedule(wait=wait, warmup=warmup, active=active, adapted=adapted,
                    stop_after_window=cfg.stop_after_window), note


class CaptureSession:
    """Receives DataLoader events from ``hooks`` and drives one profiler window (see :class:`Phase`)."""

    def __init__(self, config: SessionConfig) -> None:
        self.config = config
        self.run_dir = config.run_dir
        self.record_dir = self.run_dir / ".workers"
        self.registry = LoaderRegistry(config.loader_overrides, self.record_dir)
        self.loader_overrides = self.registry.overrides
        self.phase = Phase.IDLE
        self.lock = self.registry.lock
        self.notes: list[str] = []
        self.batches_drawn = 0
        self.batch_loader_ids: list[int | None] = []
        self.batch_start_ns: list[int] = []
        self.batch_wait_ns: list[int] = []
        self.main_fetch: list[tuple[int, int, int]] = []
        from tracelens.capture.worker import FetchGate

        #: Main-process fetches are timed while recording everything (before the first loader)
        #: and from MAIN_FETCH_LEAD_BATCHES before the window on; not in between (its cost).
        self.fetch_gate = FetchGate()
        self.prof: Any = None
        self.sampler: TelemetrySampler | None = None
        self.schedule: Schedule | None = None
        self.window = WindowTimes()
        self.window_first_batch: int | None = None
        self.window_steps = 0
        self.trace_path: Path | None = None
        self.trace_ready = False
        self.sync: tuple[int, int] | None = None
        self.user_profiler: str | None = None
        self.torch_threads_at_window: int | None = None
        self.started_ns = 0
        self.activities: list[Any] = []
        #: Told "window" when the window starts and "saved" once the trace is on disk.
        self.observer: Callable[[str], None] | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Create the run directory, install the hooks, start recording until the first loader."""
        import torch.profiler

        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.record_dir.mkdir(exist_ok=True)
        self.started_ns = time.time_ns()
        self.activities = [torch.profiler.ProfilerActivity.CPU]
        with contextlib.suppress(Exception):
            if torch.cuda.is_available():
                self.activities.append(torch.profiler.ProfilerActivity.CUDA)
        hooks.install(self)
        self._install_main_fetch_probe()
        self.phase = Phase.PRELOADER
        if self.config.record_unstepped:
            self.prof = self._new_profiler(schedule=None)
            self.prof.start()
            self.sampler = self._new_sampler()
            self.sampler.start()

    def _new_profiler(self, schedule: Any) -> Any:
        import torch.profiler

        prof = torch.profiler.profile(
            activities=self.activities,
            schedule=schedule,
            on_trace_ready=self._on_trace_ready if schedule is not None else None,
            record_shapes=self.config.record_shapes,
            with_stack=self.config.with_stack,
            profile_memory=self.config.profile_memory,
        )
        prof._tracelens_own = True  # type: ignore[attr-defined]
        return prof

    def _new_sampler(self) -> TelemetrySampler:
        return TelemetrySampler(self.config.telemetry_interval_ms / 1000.0, self.registry.known_workers)

    def _install_main_fetch_probe(self) -> None:
        from tracelens.capture.worker import patch_fetch

        main_pid = os.getpid()

        def record(start_ns: int, end_ns: int, cpu_ns: int) -> None:
            if os.getpid() == main_pid and len(self.main_fetch) < MAX_BATCH_RECORDS:
                self.main_fetch.append((start_ns, end_ns, cpu_ns))

        patch_fetch(record, time.thread_time_ns, self.fetch_gate)

    # ------------------------------------------------------------------ loader events
    def apply_overrides(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Apply the loader overrides to bound DataLoader arguments (see ``LoaderRegistry``)."""
        return self.registry.apply_overrides(arguments)

    def register_loader(self, loader: Any, applied: dict[str, Any] | None = None) -> int:
        """Record a loader's constructor settings and wrap its ``worker_init_fn``."""
        return self.registry.register(loader, applied)

    def before_iter(self, loader: Any) -> None:
        """A loader's ``__iter__`` (one epoch) starts: leave the pre-loader phase at the first."""
        record = self.registry.on_iter(loader)
        with self.lock:
            if self.phase is Phase.PRELOADER:
                self.phase = Phase.WAITING
                self._stop_recording(drop_sampler=True)
            if self.phase is Phase.WAITING and self.schedule is None:
                self._set_schedule(record.info)

    def after_iter(self, loader: Any, it: Any) -> None:
        """Tag the iterator with its loader and count re-creations (epochs without persistence)."""
        self.registry.on_iterator(loader, it)

    def _set_schedule(self, loader: Loader) -> None:
        self.schedule, note = choose_schedule(self.config, loader)
        if note is not None:
            self.notes.append(note)

    def _stop_recording(self, *, drop_sampler: bool) -> None:
        """Stop our profiler and the telemetry sampler (keeping its samples unless ``drop_sampler``)."""
        if self.prof is not None:
            prof, self.prof = self.prof, None
            with contextlib.suppress(Exception):
                prof.stop()
        if self.sampler is not None:
            self.sampler.stop()
            if drop_sampler:
                self.sampler = None

    def on_next(self, it: Any, orig: Any) -> Any:
        """One batch drawn: advance the window, time the wait, stop the script after the window."""
        loader_id = getattr(it, "_tracelens_loader_id", None)
        if self.phase is Phase.WINDOW and _is_exhausted(it):
            # The call that ends an epoch (StopIteration) is no step, but it closes a window
            # whose last active step is the epoch's last batch. (Outside the window such a call
            # raises StopIteration from ``orig`` before anything is counted: no check needed,
            # which keeps the per-batch cost outside the window small.)
            with self.lock:
                if self.phase is Phase.WINDOW and self._closes_window():
                    self._step()
            return orig(it)
        with self.lock:
            index = self.batches_drawn
            if self.phase is Phase.WAITING:
                if self.schedule is None:
                    self._set_schedule(self.registry.record_of(loader_id))
                assert self.schedule is not None
                self.fetch_gate.on = index + MAIN_FETCH_LEAD_BATCHES >= self.schedule.wait
                if index >= self.schedule.wait:
                    self._start_window(index)
            elif self.phase is Phase.WINDOW:
                self._step()
        t0 = time.time_ns()
        data = orig(it)
        t1 = time.time_ns()
        self.batches_drawn += 1
        if len(self.batch_start_ns) < MAX_BATCH_RECORDS:
            self.batch_loader_ids.append(loader_id)
            self.batch_start_ns.append(t0)
            self.batch_wait_ns.append(t1 - t0)
        self.registry.count_batch(loader_id)
        return data

    # ------------------------------------------------------------------ the window
    def _start_window(self, index: int) -> None:
        import torch
        import torch.profiler

        sched = self.schedule
        assert sched is not None
        self.phase = Phase.WINDOW
        self.window_first_batch = index + sched.warmup
        self.torch_threads_at_window = int(torch.get_num_threads())
        self.prof = self._new_profiler(
            torch.profiler.schedule(wait=0, warmup=sched.warmup, active=sched.active, repeat=1))
        self.window.started = True
        self.window.warmup_start_ns = time.time_ns()
        self.sampler = self._new_sampler()
        self.sampler.start()
        self.prof.start()
        if sched.warmup == 0:
            self._mark_record_start()
        if self.observer is not None:
            self.observer("window")

    def _mark_record_start(self) -> None:
        import torch.profiler

        t0 = time.time_ns()
        with torch.profiler.record_function(SYNC_MARKER):
            t1 = time.time_ns()
        self.sync = (t0, t1)
        self.window.start_ns = t0

    def _closes_window(self) -> bool:
        sched = self.schedule
        return (self.prof is not None and sched is not None
                and self.prof.step_num + 1 >= sched.warmup + sched.active)

    def _step(self) -> None:
        prof, sched = self.prof, self.schedule
        assert sched is not None
        t_ns = time.time_ns()
        if self._closes_window():
            self.window.end_ns = t_ns  # this step() closes the last active step
            if self.sampler is not None:
                self.sampler.stop()
        prof.step()
        if prof.step_num == sched.warmup:
            self._mark_record_start()
        if self.trace_ready:
            self._end_window()
            if sched.stop_after_window:
                raise StopRun()

    def _end_window(self) -> None:
        self.phase = Phase.DONE
        if self.window.end_ns is None:
            self.window.end_ns = time.time_ns()
        self._stop_recording(drop_sampler=False)

    def _on_trace_ready(self, prof: Any) -> None:
        path = self.run_dir / "trace.json.gz"
        prof.export_chrome_trace(str(path))
        self.trace_path = path
        self.trace_ready = True
        self.window.captured = True
        if self.observer is not None:
            self.observer("saved")
        assert self.schedule is not None
        warmup, active = self.schedule.warmup, self.schedule.active
        in_window = int(prof.step_num) - warmup
        # Ended by the schedule: step_num = warmup + active; by stop(): the open step counts too.
        self.window_steps = min(active, in_window if in_window >= active else in_window + 1)

    def on_user_profiler(self, name: str) -> None:
        """The script starts its own profiler: stop ours (Kineto allows one) and hand off."""
        with self.lock:
            if self.user_profiler is not None:
                return
            self.user_profiler = name
            self._stop_recording(drop_sampler=False)
            self.phase = Phase.USER_PROFILER
            self.notes.append(
                f"the script drives its own profiler ({name}); tracelens left it alone and "
                "recorded no trace of its own: analyze the script's trace with `tracelens analyze`")

    # ------------------------------------------------------------------ finish
    def finish(self, exit_status: int, stop_reason: str, error: str | None,
               shutdown_workers: bool) -> ProfileResult:
        """Stop recording and write trace.json.gz, run.json and the TensorBoard files (the caller
        analyzes the run: see ``runner.analyze_run``)."""
        end_ns = time.time_ns()
        with self.lock:
            self._close_phase()
            if self.sampler is not None:
                self.sampler.stop()
            hooks.uninstall()
            from tracelens.capture.worker import unpatch_fetch

            unpatch_fetch()
            self.registry.restore()
        if shutdown_workers:
            self.registry.shutdown_iterators()
        run = build_run_info(self._state(exit_status, stop_reason, error, end_ns))
        run_json = self.run_dir / "run.json"
        run_json.write_bytes(encode_run_info(run))
        shutil.rmtree(self.record_dir, ignore_errors=True)
        tb_dir = None
        if self.config.tensorboard_dir is not None:
            from tracelens.capture.tensorboard import write_tensorboard

            tb_dir, tb_notes = write_tensorboard(run, self.trace_path, self.config.tensorboard_dir, self.run_dir.name)
            self.notes += tb_notes
        return ProfileResult(
            run_dir=self.run_dir, exit_status=exit_status, stop_reason=stop_reason,
            steps_captured=self.window_steps if self.window.captured else 0,
            batches_drawn=self.batches_drawn, window_captured=self.window.captured,
            trace_path=self.trace_path, run_json_path=run_json, tensorboard_dir=tb_dir,
            user_profiler=self.user_profiler is not None, wall_s=(end_ns - self.started_ns) / 1e9,
            notes=tuple(self.notes),
        )

    def _close_phase(self) -> None:
        """End whatever the script interrupted: the window, the pre-loader recording, the wait."""
        if self.phase is Phase.WINDOW and self.prof is not None:
            was_warmup = self.sync is None
            self._end_window()
            assert self.schedule is not None
            self.notes.append("the script ended during the profiler warm-up: no steps recorded" if was_warmup
                              else f"the script ended inside the window: the trace holds {self.window_steps} "
                                   f"of {self.schedule.active} planned steps")
        elif self.phase is Phase.PRELOADER:
            self._save_unstepped()
        elif self.phase is Phase.WAITING:
            wait = self.schedule.wait if self.schedule is not None else "?"
            self.notes.append(
                f"the script drew {self.batches_drawn} DataLoader batches, fewer than the {wait} "
                "skipped before the window: no trace; re-run with --wait 0 or --run-to-completion "
                "on a longer run")

    def _state(self, exit_status: int, stop_reason: str, error: str | None, end_ns: int) -> SessionState:
        return SessionState(
            command=self.config.command, started_ns=self.started_ns, end_ns=end_ns,
            exit_status=exit_status, stop_reason=stop_reason, error=error,
            user_profiler=self.user_profiler, notes=tuple(self.notes), schedule=self.schedule,
            window=self.window,
            window_first_batch=self.window_first_batch, window_steps=self.window_steps,
            trace_path=self.trace_path, sync=self.sync, loaders=tuple(self.registry.records),
            batches_drawn=self.batches_drawn, batch_loader_ids=tuple(self.batch_loader_ids),
            batch_start_ns=tuple(self.batch_start_ns), batch_wait_ns=tuple(self.batch_wait_ns),
            main_fetch=tuple(self.main_fetch), record_dir=self.record_dir,
            torch_threads_at_window=self.torch_threads_at_window, sampler=self.sampler,
            telemetry_interval_ms=self.config.telemetry_interval_ms,
        )

    def _save_unstepped(self) -> None:
        """No DataLoader was iterated: keep the whole-run recording as the trace."""
        self.phase = Phase.DONE
        if self.prof is None:
            self.notes.append("no DataLoader batch was drawn: no steps and no trace")
            return
        prof, self.prof = self.prof, None
        self.window.start_ns = self.started_ns
        import torch.profiler

        t0 = time.time_ns()
        with torch.profiler.record_function(SYNC_MARKER):
            t1 = time.time_ns()
        self.sync = (t0, t1)
        prof.stop()
        if self.sampler is not None:
            self.sampler.stop()
        path = self.run_dir / "trace.json.gz"
        prof.export_chrome_trace(str(path))
        self.trace_path = path
        self.window.end_ns = time.time_ns()
        self.window.unstepped = True
        if self.observer is not None:
            self.observer("saved")
        self.notes.append(
            "no torch.utils.data.DataLoader batch was drawn, so the trace has no ProfilerStep "
            "events: tracelens recorded the whole run instead (steps: 0)")


def _is_exhausted(it: Any) -> bool:
    """Whether this ``__next__`` on a map-style iterator can only raise ``StopIteration``."""
    try:
        from torch.utils.data.dataloader import _DatasetKind

        if it._dataset_kind != _DatasetKind.Map or it._sampler_iter is None:
            return False
        return bool(it._num_yielded >= len(it))
    except Exception:
        return False

