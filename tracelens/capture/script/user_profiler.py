"""A script that drives its own ``torch.profiler``: Kineto allows one profiler, so tracelens
stops its own and keeps the script's first recorded cycle as the run's trace (its
``ProfilerStep#`` steps and DataLoader events are what analysis reads), with tracelens's
telemetry sampled while the script's profiler runs. The script's own ``on_trace_ready`` is
called first and unchanged."""

from __future__ import annotations

import gzip
import re
from typing import Any, Protocol

from tracelens.capture.machine.telemetry import TelemetrySampler
from tracelens.capture.recorded.rundoc import WindowTimes

_STEP = re.compile(rb'"name"\s*:\s*"ProfilerStep#(\d+)"')


class KeepingSession(Protocol):
    run_dir: Any
    trace_path: Any
    window: WindowTimes
    window_steps: int
    sampler: TelemetrySampler | None
    notes: list[str]

    def _new_sampler(self) -> TelemetrySampler: ...


def steps_in(path: Any) -> int:
    """Distinct ``ProfilerStep#N`` in a saved trace (the GPU mirror of a step counts once)."""
    with gzip.open(path, "rb") as fh:
        return len(set(_STEP.findall(fh.read())))


def _keep(session: KeepingSession, saved: list[str], export: Any) -> None:
    """Save the cycle as ``trace.json.gz``: a copy of what the script exported, else ours."""
    import shutil
    import time

    path = session.run_dir / "trace.json.gz"
    try:
        if saved:
            opener: Any = gzip.open if saved[0].endswith(".gz") else open
            with opener(saved[0], "rb") as src, gzip.open(path, "wb") as dst:
                shutil.copyfileobj(src, dst)
        else:
            export(str(path))
        session.trace_path = path
        session.window.captured = True
        session.window.end_ns = time.time_ns()
        session.window_steps = steps_in(path)
    except Exception as exc:  # the script's run goes on; the run says why there is no trace
        session.notes.append(f"the script's profiler cycle could not be kept as the trace ({type(exc).__name__}: {exc})")
    if session.sampler is not None:
        session.sampler.stop()


def keep_user_trace(session: KeepingSession, prof: Any) -> None:
    """Wrap ``prof.on_trace_ready`` so its first cycle is also saved as ``trace.json.gz``."""
    import time

    user_ready = getattr(prof, "on_trace_ready", None)
    session.sampler = session._new_sampler()
    session.sampler.start()
    session.window.started = True
    session.window.start_ns = time.time_ns()

    def on_trace_ready(p: Any) -> None:
        # Kineto saves a cycle once: the script's handler exports it, and we copy that file
        saved: list[str] = []
        own_export = p.export_chrome_trace

        def export(path: Any, *args: Any, **kwargs: Any) -> Any:
            result = own_export(path, *args, **kwargs)
            saved.append(str(path))
            return result

        p.export_chrome_trace = export
        try:
            if user_ready is not None:
                user_ready(p)
        finally:
            p.__dict__.pop("export_chrome_trace", None)
            if session.trace_path is None:
                _keep(session, saved, own_export)

    prof.on_trace_ready = on_trace_ready
