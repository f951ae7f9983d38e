"""One capture session: the profiler window driven by DataLoader batches, loader settings,
worker records and telemetry, and the run directory written at the end."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
import shutil
import socket
import threading
import time
import weakref
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tracelens.capture import hooks
from tracelens.capture.options import (
    DEFAULT_ACTIVE_STEPS,
    OVERRIDABLE_LOADER_ARGS,
    ProfileResult,
)
from tracelens.capture.target import StopRun
from tracelens.capture.telemetry import SAMPLE_FIELDS, TelemetrySampler
from tracelens.capture.worker import read_record_file

RUN_JSON_SCHEMA_VERSION = 1
SYNC_MARKER = "tracelens#sync"
#: Cap on per-batch records kept in memory (main-process timings, main-process fetches).
MAX_BATCH_RECORDS = 20_000
#: Main-process fetches are timed from this many batches before the window starts.
MAIN_FETCH_LEAD_BATCHES = 64
#: Worker batch records are kept from this long before the window starts (ns).
WORKER_RECORD_LEAD_NS = 5_000_000_000


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


def _iso(t_ns: int) -> str:
    return datetime.fromtimestamp(t_ns / 1e9, tz=timezone.utc).isoformat()


def _mp_context_name(ctx: Any) -> str:
    if ctx is None:
        import multiprocessing

        return f"default:{multiprocessing.get_start_method(allow_none=False)}"
    if isinstance(ctx, str):
        return ctx
    getter = getattr(ctx, "get_start_method", None)
    return str(getter()) if callable(getter) else type(ctx).__name__


class CaptureSession:
    """Receives DataLoader events from ``hooks`` and drives one profiler window.

    Phases: ``preloader`` (recording everything until the first DataLoader iteration, kept only
    when no loader is ever iterated), ``waiting`` (counting batches), ``window`` (profiler in
    warm-up/active), ``done``, ``user_profiler`` (the script runs its own profiler: hands off).
    """

    def __init__(self, config: SessionConfig) -> None:
        self.config = config
        self.loader_overrides = dict(config.loader_overrides)
        unknown = set(self.loader_overrides) - OVERRIDABLE_LOADER_ARGS
        if unknown:
            raise ValueError(f"cannot override DataLoader argument(s): {sorted(unknown)}")
        self.run_dir = config.run_dir
        self.record_dir = self.run_dir / ".workers"
        self.phase = "idle"
        self.lock = threading.RLock()
        self.notes: list[str] = []
        self.loaders: list[dict[str, Any]] = []
        self._loader_refs: list[weakref.ref[Any]] = []
        self._user_worker_init: dict[int, Any] = {}
        self._iterators: weakref.WeakSet[Any] = weakref.WeakSet()
        self.batches_drawn = 0
        self.batch_cols: dict[str, list[Any]] = {"loader_id": [], "start_ns": [], "wait_ns": []}
        self.main_fetch: list[tuple[int, int, int]] = []
        from tracelens.capture.worker import FetchGate

        #: Main-process fetches are timed while recording everything (before the first loader)
        #: and from MAIN_FETCH_LEAD_BATCHES before the window on; not in between (its cost).
        self.fetch_gate = FetchGate()
        self.prof: Any = None
        self.sampler: TelemetrySampler | None = None
        self.schedule: dict[str, Any] = {}
        self.window: dict[str, Any] = {"started": False, "captured": False}
        self.window_first_batch: int | None = None
        self.window_steps = 0
        self.trace_path: Path | None = None
        self.trace_ready = False
        self.sync: dict[str, int] | None = None
        self.user_profiler: str | None = None
        self.torch_threads_at_window: int | None = None
        self.started_ns = 0
        self.activities: list[Any] = []

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
        self.phase = "preloader"
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
        return TelemetrySampler(self.config.telemetry_interval_ms / 1000.0, self._known_workers)

    def _known_workers(self) -> dict[int, tuple[int | None, int | None]]:
        found: dict[int, tuple[int | None, int | None]] = {}
        try:
            names = os.listdir(self.record_dir)
        except OSError:
            return found
        for name in names:
            parts = name[:-4].split("-") if name.endswith(".rec") else []
            if len(parts) == 3 and all(p.isdigit() for p in parts):
                found[int(parts[2])] = (int(parts[0]), int(parts[1]))
        return found

    def _install_main_fetch_probe(self) -> None:
        from tracelens.capture.worker import patch_fetch

        main_pid = os.getpid()

        def record(start_ns: int, end_ns: int, cpu_ns: int) -> None:
            if os.getpid() == main_pid and len(self.main_fetch) < MAX_BATCH_RECORDS:
                self.main_fetch.append((start_ns, end_ns, cpu_ns))

        patch_fetch(record, time.thread_time_ns, self.fetch_gate)

    # ------------------------------------------------------------------ loader events
    def apply_overrides(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Apply ``loader_overrides`` to bound DataLoader arguments (in place); return what changed."""
        applied: dict[str, Any] = {}
        for key, value in self.loader_overrides.items():
            if arguments.get(key, _MISSING) != value:
                applied[key] = {"from": _jsonable(arguments.get(key)), "to": _jsonable(value)}
            arguments[key] = value
        if arguments.get("num_workers", 0) == 0:
            # Settings DataLoader rejects without workers.
            for key, neutral in (
                ("prefetch_factor", None),
                ("persistent_workers", False),
                ("multiprocessing_context", None),
            ):
                if arguments.get(key, neutral) != neutral:
                    applied.setdefault(key, {"from": _jsonable(arguments[key]), "to": neutral})
                    arguments[key] = neutral
        return applied

    def register_loader(self, loader: Any, applied: dict[str, Any] | None = None) -> int:
        """Record a loader's constructor settings and wrap its ``worker_init_fn``."""
        existing = getattr(loader, "_tracelens_id", None)
        if existing is not None:
            return int(existing)
        from torch.utils.data import IterableDataset
        from torch.utils.data._utils.collate import default_collate, default_convert

        from tracelens.capture.worker import WorkerInit

        with self.lock:
            loader_id = len(self.loaders)
            dataset = loader.dataset
            try:
                dataset_len: int | None = len(dataset)
            except Exception:
                dataset_len = None
            try:
                n_batches: int | None = len(loader)
            except Exception:
                n_batches = None
            user_init = loader.worker_init_fn
            collate = loader.collate_fn
            info = {
                "id": loader_id,
                "class": f"{type(loader).__module__}.{type(loader).__qualname__}",
                "num_workers": int(loader.num_workers),
                "batch_size": loader.batch_size,
                "pin_memory": bool(loader.pin_memory),
                "pin_memory_device": getattr(loader, "pin_memory_device", "") or None,
                "persistent_workers": bool(loader.persistent_workers),
                "prefetch_factor": loader.prefetch_factor if loader.num_workers > 0 else None,
                "multiprocessing_context": (
                    _mp_context_name(loader.multiprocessing_context)
                    if loader.num_workers > 0
                    else None
                ),
                "drop_last": bool(loader.drop_last),
                "timeout_s": float(loader.timeout),
                "has_worker_init_fn": user_init is not None,
                "has_collate_fn": collate not in (default_collate, default_convert),
                "dataset_class": f"{type(dataset).__module__}.{type(dataset).__qualname__}",
                "dataset_kind": "iterable" if isinstance(dataset, IterableDataset) else "map",
                "dataset_len": dataset_len,
                "sampler_class": type(loader.sampler).__qualname__
                if loader.sampler is not None
                else None,
                "batches_per_epoch": n_batches,
                "overrides_applied": applied or {},
                "created_ns": time.time_ns(),
                "iter_calls": 0,
                "iterators_created": 0,
                "batches_drawn": 0,
            }
            self.loaders.append(info)
            object.__setattr__(loader, "_tracelens_id", loader_id)
            self._loader_refs.append(weakref.ref(loader))
            if loader.num_workers > 0:
                self._user_worker_init[loader_id] = user_init
                loader.worker_init_fn = WorkerInit(user_init, str(self.record_dir), loader_id)
        return loader_id

    def before_iter(self, loader: Any) -> None:
        """A loader's ``__iter__`` (one epoch) starts: leave the pre-loader phase at the first."""
        loader_id = self.register_loader(loader)
        with self.lock:
            self.loaders[loader_id]["iter_calls"] += 1
            if self.phase == "preloader":
                self._discard_preloader()
            if self.phase == "waiting" and not self.schedule:
                self.schedule = self._choose_schedule(self.loaders[loader_id])

    def after_iter(self, loader: Any, it: Any) -> None:
        """Tag the iterator with its loader and count re-creations (epochs without persistence)."""
        loader_id = int(loader._tracelens_id)
        if getattr(it, "_tracelens_loader_id", None) is None:
            with contextlib.suppress(Exception):
                it._tracelens_loader_id = loader_id
            self.loaders[loader_id]["iterators_created"] += 1
            with contextlib.suppress(TypeError):
                self._iterators.add(it)

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

    def _discard_preloader(self) -> None:
        self.phase = "waiting"
        self._stop_recording(drop_sampler=True)

    def _choose_schedule(self, loader: dict[str, Any]) -> dict[str, Any]:
        """Window for the first loader iterated: explicit values win; defaults fit short loaders.

        Default ``wait`` skips worker start-up and the batches prefetched before the first
        ``__next__`` (num_workers × prefetch_factor, between 3 and 16); ``active`` is 20 batches.
        When the loader's epoch is shorter than wait + warmup + active, the defaults shrink to
        fit one epoch (the script may train for one epoch only).
        """
        cfg = self.config
        prefetched = (loader["num_workers"] or 0) * (loader["prefetch_factor"] or 0)
        wait = cfg.wait if cfg.wait is not None else max(3, min(prefetched, 16))
        warmup = cfg.warmup
        active = cfg.active if cfg.active is not None else DEFAULT_ACTIVE_STEPS
        epoch = loader["batches_per_epoch"]
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
        if adapted:
            self.notes.append(
                f"the first loader has {epoch} batches per epoch: window shrunk to wait {wait}, "
                f"warmup {warmup}, active {active} batches"
            )
        return {
            "wait": wait,
            "warmup": warmup,
            "active": active,
            "adapted": adapted,
            "stop_after_window": cfg.stop_after_window,
        }

    def on_next(self, it: Any, orig: Any) -> Any:
        """One batch drawn: advance the window, time the wait, stop the script after the window."""
        loader_id = getattr(it, "_tracelens_loader_id", None)
        if self.phase == "window" and _is_exhausted(it):
            # The call that ends an epoch (StopIteration) is no step, but it closes a window
            # whose last active step is the epoch's last batch. (Outside the window such a call
            # raises StopIteration from ``orig`` before anything is counted: no check needed,
            # which keeps the per-batch cost outside the window small.)
            with self.lock:
                if self.phase == "window" and self._closes_window():
                    self._step()
            return orig(it)
        with self.lock:
            index = self.batches_drawn
            if self.phase == "waiting":
                if not self.schedule:
                    self.schedule = self._choose_schedule(
                        self.loaders[loader_id] if loader_id is not None else _UNKNOWN_LOADER
                    )
                wait = self.schedule["wait"]
                self.fetch_gate.on = index + MAIN_FETCH_LEAD_BATCHES >= wait
                if index >= wait:
                    self._start_window(index)
            elif self.phase == "window":
                self._step()
        t0 = time.time_ns()
        data = orig(it)
        t1 = time.time_ns()
        self.batches_drawn += 1
        if len(self.batch_cols["start_ns"]) < MAX_BATCH_RECORDS:
            self.batch_cols["loader_id"].append(loader_id)
            self.batch_cols["start_ns"].append(t0)
            self.batch_cols["wait_ns"].append(t1 - t0)
        if loader_id is not None:
            self.loaders[loader_id]["batches_drawn"] += 1
        return data

    def _start_window(self, index: int) -> None:
        import torch
        import torch.profiler

        sched = self.schedule
        self.phase = "window"
        self.window_first_batch = index + sched["warmup"]
        self.torch_threads_at_window = int(torch.get_num_threads())
        self.prof = self._new_profiler(
            torch.profiler.schedule(
                wait=0, warmup=sched["warmup"], active=sched["active"], repeat=1
            )
        )
        self.window["started"] = True
        self.window["warmup_start_ns"] = time.time_ns()
        self.sampler = self._new_sampler()
        self.sampler.start()
        self.prof.start()
        if sched["warmup"] == 0:
            self._mark_record_start()

    def _mark_record_start(self) -> None:
        import torch.profiler

        t0 = time.time_ns()
        with torch.profiler.record_function(SYNC_MARKER):
            t1 = time.time_ns()
        self.sync = {"before_ns": t0, "after_ns": t1}
        self.window["start_ns"] = t0

    def _closes_window(self) -> bool:
        return (
            self.prof is not None
            and self.prof.step_num + 1 >= self.schedule["warmup"] + self.schedule["active"]
        )

    def _step(self) -> None:
        prof = self.prof
        t_ns = time.time_ns()
        if self._closes_window():
            self.window["end_ns"] = t_ns  # this step() closes the last active step
            if self.sampler is not None:
                self.sampler.stop()
        prof.step()
        if prof.step_num == self.schedule["warmup"]:
            self._mark_record_start()
        if self.trace_ready:
            self._end_window()
            if self.schedule["stop_after_window"]:
                raise StopRun()

    def _end_window(self) -> None:
        self.phase = "done"
        self.window.setdefault("end_ns", time.time_ns())
        self._stop_recording(drop_sampler=False)

    def _on_trace_ready(self, prof: Any) -> None:
        path = self.run_dir / "trace.json.gz"
        prof.export_chrome_trace(str(path))
        self.trace_path = path
        self.trace_ready = True
        self.window["captured"] = True
        warmup, active = self.schedule["warmup"], self.schedule["active"]
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
            self.phase = "user_profiler"
            self.notes.append(
                f"the script drives its own profiler ({name}); tracelens left it alone and "
                "recorded no trace of its own: analyze the script's trace with `tracelens analyze`"
            )

    # ------------------------------------------------------------------ finish
    def finish(
        self, exit_status: int, stop_reason: str, error: str | None, shutdown_workers: bool
    ) -> ProfileResult:
        """Stop recording and write trace.json.gz, run.json and the TensorBoard files (the caller
        analyzes the run: see ``runner.analyze_run``)."""
        end_ns = time.time_ns()
        with self.lock:
            if self.phase == "window" and self.prof is not None:
                was_warmup = self.sync is None
                self._end_window()
                if was_warmup:
                    self.notes.append(
                        "the script ended during the profiler warm-up: no steps recorded"
                    )
                else:
                    self.notes.append(
                        f"the script ended inside the window: the trace holds {self.window_steps} "
                        f"of {self.schedule['active']} planned steps"
                    )
            elif self.phase == "preloader":
                self._save_unstepped()
            elif self.phase == "waiting":
                wait = self.schedule.get("wait", "?")
                self.notes.append(
                    f"the script drew {self.batches_drawn} DataLoader batches, fewer than the "
                    f"{wait} skipped before the window: no trace; re-run with --wait 0 "
                    "or --run-to-completion on a longer run"
                )
            if self.sampler is not None:
                self.sampler.stop()
            hooks.uninstall()
            from tracelens.capture.worker import unpatch_fetch

            unpatch_fetch()
            self._restore_worker_init()
        if shutdown_workers:
            self._shutdown_iterators()
        run = self._run_document(exit_status, stop_reason, error, end_ns)
        run_json = self.run_dir / "run.json"
        run_json.write_text(json.dumps(run, separators=(",", ":"), allow_nan=False))
        shutil.rmtree(self.record_dir, ignore_errors=True)
        tb_dir = self._write_tensorboard(run) if self.config.tensorboard_dir else None
        return ProfileResult(
            run_dir=self.run_dir,
            exit_status=exit_status,
            stop_reason=stop_reason,
            steps_captured=self.window_steps if self.window["captured"] else 0,
            batches_drawn=self.batches_drawn,
            window_captured=bool(self.window["captured"]),
            trace_path=self.trace_path,
            run_json_path=run_json,
            tensorboard_dir=tb_dir,
            user_profiler=self.user_profiler is not None,
            wall_s=(end_ns - self.started_ns) / 1e9,
            notes=tuple(self.notes),
        )

    def _save_unstepped(self) -> None:
        """No DataLoader was iterated: keep the whole-run recording as the trace."""
        self.phase = "done"
        if self.prof is None:
            self.notes.append("no DataLoader batch was drawn: no steps and no trace")
            return
        prof, self.prof = self.prof, None
        self.window["start_ns"] = self.started_ns
        import torch.profiler

        t0 = time.time_ns()
        with torch.profiler.record_function(SYNC_MARKER):
            t1 = time.time_ns()
        self.sync = {"before_ns": t0, "after_ns": t1}
        prof.stop()
        if self.sampler is not None:
            self.sampler.stop()
        path = self.run_dir / "trace.json.gz"
        prof.export_chrome_trace(str(path))
        self.trace_path = path
        self.window["end_ns"] = time.time_ns()
        self.window["unstepped"] = True
        self.notes.append(
            "no torch.utils.data.DataLoader batch was drawn, so the trace has no ProfilerStep "
            "events: tracelens recorded the whole run instead (steps: 0)"
        )

    def _restore_worker_init(self) -> None:
        """Give loaders back their own ``worker_init_fn`` and forget this session's ids, so a
        loader reused in a later session is registered afresh."""
        for ref in self._loader_refs:
            loader = ref()
            if loader is None:
                continue
            loader_id = loader._tracelens_id
            if loader_id in self._user_worker_init:
                with contextlib.suppress(Exception):
                    loader.worker_init_fn = self._user_worker_init[loader_id]
            with contextlib.suppress(AttributeError):
                object.__delattr__(loader, "_tracelens_id")
        for it in list(self._iterators):
            with contextlib.suppress(AttributeError):
                del it._tracelens_loader_id

    def _shutdown_iterators(self) -> None:
        for it in list(self._iterators):
            shutdown = getattr(it, "_shutdown_workers", None)
            if callable(shutdown):
                with contextlib.suppress(Exception):
                    shutdown()

    # ------------------------------------------------------------------ run.json
    def _trace_clock(self) -> dict[str, Any]:
        """Relate ``time.time_ns()`` to the trace's ``ts``: trace_us = (t_ns + offset_ns - base_ns) / 1000."""
        base_ns = 0
        ts_us: float | None = None
        if self.trace_path is not None and self.trace_path.exists():
            try:
                with gzip.open(self.trace_path, "rb") as fh:
                    text = fh.read()
                m = re.search(rb'"baseTimeNanoseconds"\s*:\s*(\d+)', text)
                base_ns = int(m.group(1)) if m else 0
                m = re.search(
                    rb'"name"\s*:\s*"'
                    + SYNC_MARKER.encode()
                    + rb'"[^{}]*?"ts"\s*:\s*([0-9.eE+-]+)',
                    text,
                )
                ts_us = float(m.group(1)) if m else None
            except (OSError, EOFError, ValueError):
                pass
        if ts_us is not None and self.sync is not None:
            wall_mid = (self.sync["before_ns"] + self.sync["after_ns"]) // 2
            offset = round(ts_us * 1000 + base_ns) - wall_mid
            return {
                "base_time_ns": base_ns,
                "offset_ns": offset,
                "source": "sync_marker",
                "sync_uncertainty_ns": self.sync["after_ns"] - self.sync["before_ns"],
            }
        return {
            "base_time_ns": base_ns,
            "offset_ns": 0,
            "source": "assumed_wall_clock",
            "sync_uncertainty_ns": None,
        }

    def _run_document(
        self, exit_status: int, stop_reason: str, error: str | None, end_ns: int
    ) -> dict[str, Any]:
        from tracelens.capture.machine import machine_facts

        clock = self._trace_clock()
        base, offset = clock["base_time_ns"], clock["offset_ns"]

        def us(t_ns: int | None) -> float | None:
            return None if t_ns is None else round((t_ns + offset - base) / 1000.0, 3)

        window_start = self.window.get("start_ns")
        window_end = self.window.get("end_ns")
        lead_from = self.window.get("warmup_start_ns") or window_start or self.started_ns
        lead_from -= WORKER_RECORD_LEAD_NS
        workers, worker_batches = self._collect_workers(us, lead_from, window_end)
        machine = machine_facts(self.torch_threads_at_window)
        telemetry = self._telemetry_document(us)
        loaders = [
            {k: v for k, v in info.items() if k != "created_ns"}
            | {"created_us": us(info["created_ns"])}
            for info in self.loaders
        ]
        main_fetch = {
            "start_us": [us(s) for s, _, _ in self.main_fetch],
            "dur_us": [round((e - s) / 1000.0, 3) for s, e, _ in self.main_fetch],
            "cpu_us": [round(c / 1000.0, 3) for _, _, c in self.main_fetch],
        }
        cmd = dict(self.config.command)
        return {
            "schema_version": RUN_JSON_SCHEMA_VERSION,
            "tool": {"name": "tracelens", "version": _tool_version()},
            "command": cmd,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started_at": _iso(self.started_ns),
            "ended_at": _iso(end_ns),
            "wall_s": round((end_ns - self.started_ns) / 1e9, 3),
            "exit_status": exit_status,
            "stop_reason": stop_reason,
            "error": error,
            "user_profiler": self.user_profiler,
            "notes": list(self.notes),
            "schedule": self.schedule or None,
            "window": {
                "started": bool(self.window.get("started")),
                "captured": bool(self.window.get("captured")),
                "unstepped": bool(self.window.get("unstepped", False)),
                "first_batch": self.window_first_batch,
                "steps": self.window_steps if self.window.get("captured") else 0,
                "warmup_start_us": us(self.window.get("warmup_start_ns")),
                "start_us": us(window_start),
                "end_us": us(window_end),
            },
            "trace": {
                "path": self.trace_path.name if self.trace_path is not None else None,
                "clock": clock,
            },
            "loaders": loaders,
            "batches": {
                "count": self.batches_drawn,
                "loader_id": self.batch_cols["loader_id"],
                "start_us": [us(t) for t in self.batch_cols["start_ns"]],
                "wait_us": [round(w / 1000.0, 3) for w in self.batch_cols["wait_ns"]],
            },
            "main_fetch": main_fetch,
            "machine": machine,
            "workers": workers,
            "worker_batches": worker_batches,
            "telemetry": telemetry,
        }

    def _collect_workers(
        self, us: Any, keep_from_ns: int, keep_to_ns: int | None
    ) -> tuple[list[dict[str, Any]], dict[str, list[Any]]]:
        workers: list[dict[str, Any]] = []
        cols: dict[str, list[Any]] = {
            k: [] for k in ("loader_id", "worker_id", "pid", "start_us", "dur_us", "cpu_us")
        }
        try:
            names = sorted(os.listdir(self.record_dir))
        except OSError:
            names = []
        for name in names:
            parts = name[:-4].split("-") if name.endswith(".rec") else []
            if len(parts) != 3 or not all(p.isdigit() for p in parts):
                continue
            loader_id, worker_id, pid = (int(p) for p in parts)
            header, rows = read_record_file(str(self.record_dir / name))
            header = header or {}
            kept = [
                r
                for r in rows
                if r[1] >= keep_from_ns and (keep_to_ns is None or r[0] <= keep_to_ns)
            ]
            workers.append(
                {
                    "loader_id": loader_id,
                    "worker_id": worker_id,
                    "pid": pid,
                    "torch_threads": header.get("torch_threads"),
                    "started_us": us(header.get("started_ns")),
                    "init_done_us": us(header.get("init_done_ns")),
                    "batches_produced": len(rows),
                    "batches_kept": len(kept),
                }
            )
            for s, e, c in kept:
                cols["loader_id"].append(loader_id)
                cols["worker_id"].append(worker_id)
                cols["pid"].append(pid)
                cols["start_us"].append(us(s))
                cols["dur_us"].append(round((e - s) / 1000.0, 3))
                cols["cpu_us"].append(round(c / 1000.0, 3))
        workers.sort(key=lambda w: (w["started_us"] or 0.0, w["loader_id"], w["worker_id"]))
        return workers, cols

    def _telemetry_document(self, us: Any) -> dict[str, Any] | None:
        sampler = self.sampler
        if sampler is None:
            return None
        processes = []
        for series in sampler.series.values():
            cols = dict(series.columns)
            t_ns = cols.pop("t_ns")
            processes.append(
                {
                    "pid": series.pid,
                    "role": series.role,
                    "loader_id": series.loader_id,
                    "worker_id": series.worker_id,
                    "samples": {"t_us": [us(t) for t in t_ns]} | cols,
                }
            )
        return {
            "interval_ms": self.config.telemetry_interval_ms,
            "fields": list(SAMPLE_FIELDS),
            "start_us": us(sampler.start_ns),
            "end_us": us(sampler.end_ns),
            "ticks": sampler.ticks,
            "sampler_cpu_ms": round(sampler.sample_cost_ns / 1e6, 3),
            "processes": processes,
        }

    # ------------------------------------------------------------------ outputs
    def _write_tensorboard(self, run: dict[str, Any]) -> Path | None:
        """Trace in the layout ``tensorboard_trace_handler`` writes, plus per-step scalars."""
        tb_root = self.config.tensorboard_dir
        assert tb_root is not None
        run_name = self.run_dir.name
        out = tb_root / run_name
        out.mkdir(parents=True, exist_ok=True)
        if self.trace_path is not None:
            ms = int(time.time() * 1000)
            shutil.copyfile(
                self.trace_path, out / f"{socket.gethostname()}_{os.getpid()}.{ms}.pt.trace.json.gz"
            )
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception as exc:  # tensorboard not installed
            self.notes.append(f"--tensorboard: scalars skipped ({exc})")
            return out
        batches = run["batches"]
        starts, waits = batches["start_us"], batches["wait_us"]
        writer = SummaryWriter(log_dir=str(out))
        try:
            for i, (start, wait) in enumerate(zip(starts, waits, strict=False)):
                writer.add_scalar("tracelens/data_wait_ms", wait / 1000.0, i)
                if i + 1 < len(starts):
                    writer.add_scalar("tracelens/step_time_ms", (starts[i + 1] - start) / 1000.0, i)
        finally:
            writer.close()
        return out


_UNKNOWN_LOADER: dict[str, Any] = {
    "num_workers": 0,
    "prefetch_factor": None,
    "batches_per_epoch": None,
}


def _is_exhausted(it: Any) -> bool:
    """Whether this ``__next__`` on a map-style iterator can only raise ``StopIteration``."""
    try:
        from torch.utils.data.dataloader import _DatasetKind

        if it._dataset_kind != _DatasetKind.Map or it._sampler_iter is None:
            return False
        return bool(it._num_yielded >= len(it))
    except Exception:
        return False


class _Missing:
    pass


_MISSING = _Missing()


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(value)


def _tool_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("tracelens-dataloader")
    except Exception:
        return None
