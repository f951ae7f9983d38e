"""One capture session: the profiler window driven by the training loader's batches.

The session times each ``__next__`` of every loader and picks the loader whose batches are the
window's steps: the first whose batches feed backward passes (``registry.on_backward``); while
no backward pass has been seen (inference, or an evaluation before training), the loader that
first draws ``wait`` batches and has drawn the most, provisionally: its window is dropped and
recorded again for the training loader when one shows up before the window is complete.

Steps: each batch of the window's loader starts a step at its ``__next__``. A step ends where
the next one begins, or earlier, where the loop leaves the training loader (``_pause_step``
closes the open ``ProfilerStep#`` event; the next batch starts the next one):

- at a batch of a loader that has fed no backward pass (validation, a sanity check): its
  ``__next__`` and everything until the training loader's next batch lie between steps, so they
  are neither step time nor data wait; another training loader's batch (``zip(a, b)``) stays
  inside the step as data wait;
- after the ``StopIteration`` call that ends an epoch (worker shutdown included; it is a
  ``__next__`` of the step holding the epoch's last batch). The code between epochs and the next
  ``__iter__`` (its worker start-up: a ``tracelens#DataLoader.__iter__`` event) lie between steps;
  the new epoch's first ``__next__``, which waits for the fresh workers, starts the next step.

So a window spans as many epochs as its steps need. The session samples telemetry during the
window and, at the end, writes ``trace.json.gz`` and ``run.json`` (built by ``rundoc``). Loader
bookkeeping lives in the composed :class:`~tracelens.capture.dataloader.registry.LoaderRegistry`. Analysis
and the report are the caller's job (``options.analyzed``).
"""

from __future__ import annotations

import contextlib
import enum
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tracelens.capture.dataloader import hooks
from tracelens.capture.dataloader.registry import LoaderRegistry
from tracelens.capture.machine.telemetry import TelemetrySampler
from tracelens.capture.options import ProfileOptions, ProfileResult
from tracelens.capture.recorded.progress import step_progress
from tracelens.capture.recorded.rundoc import SYNC_MARKER, SessionState, WindowTimes, build_run_info
from tracelens.capture.script.target import StopRun
from tracelens.capture.script.window import (
    choice_note,
    choose_schedule,
    default_wait,
    is_exhausted,
    no_window_note,
)
from tracelens.runjson import Schedule, encode_run_info
from tracelens.system.atomic import write_atomic
from tracelens.system.signals import held_signals

#: Cap on per-batch records kept in memory (main-process timings, main-process fetches).
MAX_BATCH_RECORDS = 20_000
#: Main-process fetches are timed from this many batches before the window starts.
MAIN_FETCH_LEAD_BATCHES = 64
#: The trace event around the window loader's ``__iter__`` (a new epoch's iterator) in the window.
ITER_EVENT = "tracelens#DataLoader.__iter__"


class Phase(enum.Enum):
    """Where a session is."""

    IDLE = "idle"  # not started
    PRELOADER = "preloader"  # recording everything until the first DataLoader iteration
    WAITING = "waiting"  # counting batches until the window
    WINDOW = "window"  # the profiler is in warm-up or active steps
    DONE = "done"  # the window is recorded (or the run ended)
    USER_PROFILER = "user_profiler"  # the script runs its own profiler: hands off


class CaptureSession:
    """Receives DataLoader events from ``hooks`` and drives one profiler window (see :class:`Phase`)."""

    def __init__(self, options: ProfileOptions, run_dir: Path, command: dict[str, Any]) -> None:
        """Record ``options``' window into the claimed ``run_dir``; ``command`` is run.json's."""
        self.options = options
        self.run_dir = run_dir
        self.command = command
        self.record_dir = self.run_dir / ".workers"
        self.registry = LoaderRegistry(options.loader_overrides, self.record_dir)
        self.loader_overrides = self.registry.overrides
        self.phase = Phase.IDLE
        self.lock = self.registry.lock
        self.notes: list[str] = []
        self.batches_drawn = 0
        self.batch_loader_ids: list[int | None] = []
        self.batch_start_ns: list[int] = []
        self.batch_wait_ns: list[int] = []
        self.main_fetch: list[tuple[int, int, int]] = []
        from tracelens.capture.dataloader.worker import FetchGate

        #: Main-process fetches are timed while recording everything (before the first loader)
        #: and from MAIN_FETCH_LEAD_BATCHES before the window on; not in between (its cost).
        self.fetch_gate = FetchGate()
        self.prof: Any = None
        self.sampler: TelemetrySampler | None = None
        self.schedule: Schedule | None = None
        self.window = WindowTimes()
        self.window_first_batch: int | None = None
        self.window_steps = 0
        self.window_loader: int | None = None  # the loader whose batches are the steps
        self.provisional = False  # chosen without training evidence (no backward pass seen yet)
        self.last_loader: int | None = None  # the loader of the last batch drawn
        self.input_searched = False  # the training loop's input was looked for
        self.on_step: Callable[[], None] | None = None  # a pipeline timer's, at each backward/step
        self.on_stop: Callable[[], None] | None = None  # stops a pipeline's threads (with the workers)
        self.fresh_step = False  # the window's first step, opened by prof.start()
        self.paused_ns: int | None = None  # when the last step was ended early
        self.discard_trace = False
        self.trace_path: Path | None = None
        self.trace_ready = False
        self.sync: tuple[int, int] | None = None
        self.user_profiler: str | None = None
        self.torch_threads_at_window: int | None = None
        self.started_ns = 0
        self.activities: list[Any] = []
        #: Told "window" when the window starts and "saved" once the trace is on disk.
        self.observer: Callable[[str], None] | None = None
        self.progress: Callable[[str, bool], None] | None = None  # (text, force): recorded.progress.progress_writer

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
        if self.options.record_unstepped:
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
            record_shapes=self.options.record_shapes,
            with_stack=self.options.with_stack,
            profile_memory=self.options.profile_memory,
        )
        prof._tracelens_own = True  # type: ignore[attr-defined]
        return prof

    def _new_sampler(self) -> TelemetrySampler:
        from tracelens.capture.machine.facts import cgroup_cpu_quota
        from tracelens.capture.machine.supply import SupplyRecorder, job_root

        supply = SupplyRecorder(job_root(), cgroup_cpu_quota())
        return TelemetrySampler(self.options.telemetry_interval_ms / 1000.0, self.registry.known_workers,
                                supply=supply)

    def _install_main_fetch_probe(self) -> None:
        from tracelens.capture.dataloader.worker import patch_fetch

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

    def on_iter(self, loader: Any, orig: Any) -> Any:
        """A loader's ``__iter__`` (one epoch): leave the pre-loader phase at the first; in the
        window, the window loader's new iterator lies between steps, as a trace event."""
        record = self.registry.on_iter(loader)
        with self.lock:
            if self.phase is Phase.PRELOADER:
                self.phase = Phase.WAITING
                self._stop_recording(drop_sampler=True)
            in_window = self.phase is Phase.WINDOW and record.info.id == self.window_loader
            if in_window:
                self._pause_step()
        if in_window:
            import torch.profiler

            with torch.profiler.record_function(ITER_EVENT):
                it = orig(loader)
        else:
            it = orig(loader)
        self.registry.on_iterator(loader, it)
        return it

    def on_backward(self) -> None:
        """A backward pass or optimizer step: the loader drawn last trains; the first such loader
        is the window's (it replaces a provisional window still recording). The first one also
        looks for the training loop's input (``capture.training_input``)."""
        if self.on_step is not None:
            self.on_step()
        if not self.input_searched:
            self.input_searched = True
            from tracelens.capture.script.training_input import adopt_training_input

            adopt_training_input(self)
        credited = self.registry.on_backward(self.last_loader)
        if credited is None or (credited == self.window_loader and not self.provisional):
            return
        with self.lock:
            if self.phase is Phase.WAITING and self.window_loader is None:
                self._choose(credited, provisional=False)
            elif self.phase is Phase.WINDOW and self.provisional:
                if credited == self.window_loader:
                    self.provisional = False
                else:
                    self._abandon_window(credited)

    def _choose(self, loader_id: int, *, provisional: bool) -> None:
        self.window_loader, self.provisional = loader_id, provisional
        opts = self.options
        self.schedule = choose_schedule(self.registry.records[loader_id].info, opts.wait, opts.warmup, opts.active,
                                        not opts.run_to_completion)

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
        """One batch drawn: choose the window's loader, advance the window, time the wait."""
        loader_id = getattr(it, "_tracelens_loader_id", None)
        if loader_id is None:
            loader_id = self.registry.adopt_iterator(it)
        t0 = self.begin_next(loader_id, it)
        try:
            data = orig(it)  # StopIteration at an epoch's end propagates uncounted
        except StopIteration:
            self.end_next(loader_id, t0, True)
            raise
        self.end_next(loader_id, t0, False)
        return data

    def begin_next(self, loader_id: int, it: Any) -> int:
        """Before a batch of ``loader_id`` is drawn (``it``: its iterator, None for a generator):
        advance the window; in it, the window loader's batch starts a step and a batch of a
        loader that has fed no backward pass pauses the open one (it lies between steps). The
        wall-clock ns the wait starts at."""
        self.last_loader = loader_id
        if self.phase is Phase.WAITING:
            with self.lock:
                self._advance(loader_id)
        if self.phase is Phase.WINDOW:
            if loader_id == self.window_loader:
                ending = it is not None and is_exhausted(it)  # the epoch's StopIteration call is no step
                with self.lock:
                    if self.phase is Phase.WINDOW and not ending:
                        self._window_step()
            elif not self.registry.is_training(loader_id):
                with self.lock:
                    self._pause_step()
        return time.time_ns()

    def end_next(self, loader_id: int, t0: int, stopped: bool) -> None:
        """After the draw begun at ``t0``: record the batch, or (``stopped``: StopIteration) end
        the window loader's epoch."""
        if not stopped:
            self._record_batch(loader_id, t0, time.time_ns())
        elif loader_id == self.window_loader:
            with self.lock:
                if self.phase is Phase.WINDOW:
                    self._epoch_end()

    def recording(self) -> bool:
        """Whether our profiler is running (a pipeline's ``next()`` is then a trace event)."""
        return self.prof is not None

    def take_pipeline(self, loader_id: int, on_step: Callable[[], None] | None) -> None:
        """The training loop draws from pipeline ``loader_id`` (``capture.training_input``): it is
        the window's loader; what was recorded or chosen before is dropped. ``on_step`` is
        called at each backward pass or optimizer step (a generator's timer arms itself)."""
        self.on_step = on_step
        with self.lock:
            self.last_loader = None  # batches drawn so far came through the pipeline
            for record in self.registry.records:
                record.nested = record.info.id != loader_id and record.batches_drawn > 0
            if self.phase is Phase.PRELOADER:
                self.phase = Phase.WAITING
                self._stop_recording(drop_sampler=True)
            if self.phase is Phase.WINDOW:
                old = self.window_loader
                self._abandon_window(loader_id)
                self.notes[-1] = (f"loader #{old}, drawn inside the training loop's pipeline, was being recorded "
                                  f"before the pipeline (#{loader_id}) was found; that window was dropped")
            elif self.phase is Phase.WAITING:
                self._choose(loader_id, provisional=False)

    def _record_batch(self, loader_id: int, t0: int, t1: int) -> None:
        self.batches_drawn += 1
        if len(self.batch_start_ns) < MAX_BATCH_RECORDS:
            self.batch_loader_ids.append(loader_id)
            self.batch_start_ns.append(t0)
            self.batch_wait_ns.append(t1 - t0)
        self.registry.count_batch(loader_id)

    def _advance(self, loader_id: int) -> None:
        """Before a batch is drawn while waiting: without a training loader yet, take this one
        provisionally once it has drawn its ``wait`` batches and the most; start the window at
        the window loader's batch number ``wait``."""
        record = self.registry.records[loader_id]
        drawn = record.batches_drawn
        if self.window_loader is None:
            wait = self.options.wait if self.options.wait is not None else default_wait(record.info)
            self.fetch_gate.on = drawn + MAIN_FETCH_LEAD_BATCHES >= wait
            if drawn < wait or not self.registry.most_drawn(loader_id):
                return
            self._choose(loader_id, provisional=True)
        if loader_id != self.window_loader:
            return
        assert self.schedule is not None
        self.fetch_gate.on = drawn + MAIN_FETCH_LEAD_BATCHES >= self.schedule.wait
        if drawn >= self.schedule.wait:
            self._start_window()
        elif self.progress is not None:
            self.progress(f"skipping the first batches ({drawn}/{self.schedule.wait})", False)

    # ------------------------------------------------------------------ the window
    def _start_window(self) -> None:
        import torch
        import torch.profiler

        sched = self.schedule
        assert sched is not None
        self.phase = Phase.WINDOW
        self.fresh_step = True
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
        if self.progress is not None:
            self.progress(step_progress(0, sched.warmup, sched.active), True)

    def _abandon_window(self, loader_id: int) -> None:
        """Drop the provisional window (no trace written) and wait for ``loader_id``'s instead."""
        old = self.window_loader
        self.discard_trace = True
        self._stop_recording(drop_sampler=True)
        self.discard_trace = False
        self.window, self.sync, self.window_first_batch, self.window_steps = WindowTimes(), None, None, 0
        self.phase = Phase.WAITING
        self._choose(loader_id, provisional=False)
        self.notes.append(
            f"loader #{old} was being recorded while no backward pass had been seen; its window was "
            f"dropped when the batches of loader #{loader_id} fed a backward pass")

    def _window_step(self) -> None:
        """The window loader's batch: a new step (the first one is opened by ``prof.start()``)."""
        if self.fresh_step:
            self.fresh_step = False
        else:
            self._step()

    def _epoch_end(self) -> None:
        """The window loader's epoch ended (its ``StopIteration`` call, worker shutdown included):
        close the window when this was its last step, else end the step here."""
        if self._closes_window():
            self._step()
        else:
            self._pause_step()

    def _pause_step(self) -> None:
        """End the open ``ProfilerStep#`` event now; the next window-loader batch starts the next
        step (torch's ``step()`` skips an already ended one)."""
        prof = self.prof
        rec = getattr(prof, "step_rec_fn", None) if prof is not None else None
        if rec is None:
            return
        rec.__exit__(None, None, None)
        prof.step_rec_fn = None
        self.paused_ns = time.time_ns()

    def _mark_record_start(self) -> None:
        import torch.profiler

        t0 = time.time_ns()
        with torch.profiler.record_function(SYNC_MARKER):
            t1 = time.time_ns()
        self.sync = (t0, t1)
        self.window.start_ns = t0
        self.window_first_batch = self.batches_drawn  # the batch being drawn

    def _closes_window(self) -> bool:
        sched = self.schedule
        return (self.prof is not None and sched is not None
                and self.prof.step_num + 1 >= sched.warmup + sched.active)

    def _step(self) -> None:
        prof, sched = self.prof, self.schedule
        assert sched is not None
        t_ns = time.time_ns()
        if self._closes_window():
            # this step() closes the last active step (or it already ended at a pause)
            self.window.end_ns = t_ns if getattr(prof, "step_rec_fn", None) is not None else self.paused_ns
            if self.sampler is not None:
                self.sampler.stop()
        prof.step()
        if prof.step_num == sched.warmup:
            self._mark_record_start()
        if self.progress is not None:
            self.progress(step_progress(int(prof.step_num), sched.warmup, sched.active),
                          prof.step_num in (sched.warmup, sched.warmup + sched.active))
        if self.trace_ready:
            self._end_window()
            if sched.stop_after_window:
                raise StopRun()

    def _end_window(self) -> None:
        self.phase = Phase.DONE
        if self.window.end_ns is None:
            self.window.end_ns = time.time_ns()
        self._stop_recording(drop_sampler=False)

    def _export(self, prof: Any) -> bool:
        """Write the trace (whole or not at all, signals held meanwhile); a failure (a full
        disk) is a note, never an exception in the script."""
        from tracelens.capture.script.export import export_trace
        from tracelens.system.atomic import OutputError

        try:
            self.trace_path, problem = export_trace(prof, self.run_dir)
        except OutputError as exc:
            self.notes.append(f"trace not saved: {exc}")
            return False
        if problem is not None:
            self.notes.append(problem)
        if self.observer is not None:
            self.observer("saved")
        return True

    def _on_trace_ready(self, prof: Any) -> None:
        if self.discard_trace:
            return
        # A signal meanwhile is handled once the trace and what run.json says of it are settled.
        with held_signals():
            self.trace_ready = True  # saved or not, the window is over
            if not self._export(prof):
                return
            self.window.captured = True
            assert self.schedule is not None
            warmup, active = self.schedule.warmup, self.schedule.active
            in_window = int(prof.step_num) - warmup
            # Ended by the schedule: step_num = warmup + active; by stop(): the open step counts too.
            self.window_steps = min(active, in_window if in_window >= active else in_window + 1)

    def on_user_profiler(self, name: str, prof: Any = None) -> None:
        """The script starts its own profiler: stop ours (Kineto allows one) and hand off; keep
        the script's first recorded cycle as the trace (``user_profiler``) unless ours is saved."""
        with self.lock:
            if self.user_profiler is not None:
                return
            self.user_profiler = name
            self._stop_recording(drop_sampler=False)
            self.phase = Phase.USER_PROFILER
            if self.trace_path is None and prof is not None and hasattr(prof, "on_trace_ready"):
                from tracelens.capture.script.user_profiler import keep_user_trace

                keep_user_trace(self, prof)
                self.notes.append(
                    f"the script drives its own profiler ({name}): tracelens stopped its own and analyzed the "
                    "first cycle the script's profiler recorded (its ProfilerStep# steps), with tracelens's telemetry")
                return
            self.notes.append(
                f"the script drives its own profiler ({name}); tracelens left it alone and "
                "recorded no trace of its own: analyze the script's trace with `tracelens analyze`")

    # ------------------------------------------------------------------ finish
    def finish(self, exit_status: int, stop_reason: str, error: str | None,
               shutdown_workers: bool) -> ProfileResult[Any]:
        """Stop recording and write trace.json.gz, run.json and the TensorBoard files (the caller
        analyzes the run: see ``options.analyzed``)."""
        end_ns = time.time_ns()
        with self.lock:
            self._close_phase()
            note = choice_note(self.registry, self.window_loader, self.provisional)
            if note is not None:
                self.notes.insert(0, note)
            if self.sampler is not None:
                self.sampler.stop()
            hooks.uninstall()
            from tracelens.capture.dataloader.worker import unpatch_fetch

            unpatch_fetch()
            self.registry.restore()
        if shutdown_workers:
            self.registry.shutdown_iterators()
            if self.on_stop is not None:
                self.on_stop()
        run = build_run_info(self._state(exit_status, stop_reason, error, end_ns))
        run_json = write_atomic(self.run_dir / "run.json", encode_run_info(run), parents=False)
        shutil.rmtree(self.record_dir, ignore_errors=True)
        tb_dir = None
        if self.options.tensorboard_dir is not None:
            from tracelens.capture.recorded.tensorboard import write_tensorboard

            tb_dir, tb_notes = write_tensorboard(run, self.trace_path, self.options.tensorboard_dir, self.run_dir.name)
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
            self.notes.append(no_window_note(self.registry, self.window_loader, self.schedule, self.options.wait))

    def _state(self, exit_status: int, stop_reason: str, error: str | None, end_ns: int) -> SessionState:
        return SessionState(
            command=self.command, started_ns=self.started_ns, end_ns=end_ns,
            exit_status=exit_status, stop_reason=stop_reason, error=error,
            user_profiler=self.user_profiler, notes=tuple(self.notes), schedule=self.schedule,
            window=self.window, window_loader=self.window_loader,
            window_first_batch=self.window_first_batch, window_steps=self.window_steps,
            trace_path=self.trace_path, sync=self.sync, loaders=tuple(self.registry.records),
            batches_drawn=self.batches_drawn, batch_loader_ids=tuple(self.batch_loader_ids),
            batch_start_ns=tuple(self.batch_start_ns), batch_wait_ns=tuple(self.batch_wait_ns),
            main_fetch=tuple(self.main_fetch), record_dir=self.record_dir,
            torch_threads_at_window=self.torch_threads_at_window, sampler=self.sampler,
            telemetry_interval_ms=self.options.telemetry_interval_ms,
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
        self.window.end_ns = time.time_ns()
        with held_signals():
            if not self._export(prof):
                return
            self.window.unstepped = True
        self.notes.append(
            "no torch.utils.data.DataLoader batch was drawn, so the trace has no ProfilerStep "
            "events: tracelens recorded the whole run instead (steps: 0)")
