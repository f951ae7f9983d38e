"""In-script API: ``with tracelens.profile() as session:`` around one's own training loop.

The session runs in the script's own process (no supervisor), so it survives what that process
survives: the block's end, an exception, ``sys.exit``, Ctrl-C, ``os._exit`` and SIGTERM /
SIGHUP (when the script left their handlers at the default: the trace is saved, then the
process dies by the signal). It cannot survive SIGKILL, a crash (SIGSEGV, the OOM killer) or
a signal whose handler the script replaced: then run.json stays the provisional one
(``stop_reason: running``) and the trace is lost; ``tracelens profile`` survives those.
A forked child of the script never finishes the session.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import TracebackType
from typing import Any

from tracelens.capture.destination import claim_run_dir, rank_env
from tracelens.capture.options import (
    DEFAULT_TELEMETRY_INTERVAL_MS,
    DEFAULT_WARMUP_STEPS,
    Analyze,
    ProfileOptions,
    ProfileResult,
    analyzed,
)
from tracelens.capture.script.session import CaptureSession
from tracelens.capture.script.target import StopRun


def _status_of(exc_type: type[BaseException] | None, exc: BaseException | None) -> tuple[int, str, str | None]:
    """(exit status, stop reason, error) of the way the block ended."""
    if exc_type is None:
        return 0, "finished", None
    if issubclass(exc_type, StopRun):
        return 0, "window_captured", None
    if issubclass(exc_type, KeyboardInterrupt):
        return 130, "interrupted", "KeyboardInterrupt"
    if issubclass(exc_type, SystemExit):
        code = exc.code if isinstance(exc, SystemExit) else None
        status = code if isinstance(code, int) else (0 if code is None else 1)
        return status, ("finished" if status == 0 else "exited"), None
    return 1, "error", f"{exc_type.__name__}: {exc}"


class ProfileSession:
    """Context manager returned by :func:`profile`; ``result`` is set when the block ends."""

    def __init__(self, options: ProfileOptions, run_dir: Path, command: dict[str, Any],
                 analyze: Analyze[Any] | None) -> None:
        from tracelens.capture.dataloader import hooks
        from tracelens.capture.script.guard import ExitGuard

        self._session = CaptureSession(options, run_dir, command)
        self._analyze = analyze
        self.run_dir: Path = run_dir
        self.result: ProfileResult[Any] | None = None

        def drop_hooks() -> None:
            if hooks.active_session() is self._session:
                hooks.uninstall()

        self._guard = ExitGuard(self._finish_abruptly, on_fork=drop_hooks)

    @property
    def batches_drawn(self) -> int:
        """DataLoader batches drawn inside the block so far."""
        return self._session.batches_drawn

    @property
    def window_captured(self) -> bool:
        """Whether the profiler window has been recorded and saved."""
        return self._session.window.captured

    def __enter__(self) -> ProfileSession:
        from tracelens.capture.recorded.outcome import provisional_run, write_run

        write_run(self.run_dir, provisional_run(self._session.command, None))
        self._session.start()
        self._guard.arm()
        return self

    def _finish(self, status: int, reason: str, error: str | None, signum: int | None,
                shutdown: bool) -> ProfileResult[Any]:
        from tracelens.capture.recorded.outcome import annotate
        from tracelens.system.rundirs import release_claim

        recorded = self._session.finish(status, reason, error, shutdown_workers=shutdown)
        run = annotate(self.run_dir, signum=signum, supervisor_pid=None, notes=recorded.notes)
        release_claim(self.run_dir)
        if run is None:
            return recorded
        from dataclasses import replace

        return replace(recorded, outcome=run.outcome, signal=run.signal)

    def _finish_abruptly(self, status: int, reason: str, error: str | None, signum: int | None) -> None:
        self.result = self._finish(status, reason, error, signum, False)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if self._guard.forked:  # a fork of the script leaves the block: not its run
            return False
        status, reason, error = _status_of(exc_type, exc)
        with self._guard.finishing():
            recorded = self._finish(status, reason, error, None, False)
        self.result = analyzed(recorded, self.run_dir, self._analyze, no_report=self._session.options.no_report)
        # Swallow only our own stop signal: the code after the block goes on.
        return exc_type is not None and issubclass(exc_type, StopRun)


def profile(
    out: str | Path | None = None,
    *,
    wait: int | None = None,
    warmup: int = DEFAULT_WARMUP_STEPS,
    active: int | None = None,
    stop_after_window: bool = False,
    tensorboard_dir: str | Path | None = None,
    no_report: bool = False,
    telemetry_interval_ms: float = DEFAULT_TELEMETRY_INTERVAL_MS,
    record_shapes: bool = False,
    with_stack: bool = False,
    runs_root: str | Path = "tracelens-runs",
    force: bool = False,
    analyze: Analyze[Any] | None = None,
) -> ProfileSession:
    """Profile the DataLoader-driven loop inside a ``with`` block.

    Each batch drawn from any ``torch.utils.data.DataLoader`` inside the block is one step; the
    window (``wait`` skipped, ``warmup``, ``active`` recorded; ``None`` = chosen for the loader)
    is recorded once and written to ``out`` (default ``tracelens-runs/<script>-<time>``, or
    ``tracelens-runs/<script>-<job>/rank-<RANK>`` under torchrun) with run.json; ``analyze``
    (``tracelens.profile`` passes ``tracelens.api.write_run_outputs``) then writes
    analysis.json and report.html. The directory is claimed when this is called: an ``out``
    holding files is refused unless ``force`` (which removes tracelens' files of the earlier
    run), and one that another live process writes is always refused. With
    ``stop_after_window`` the block is left right after the window (the code after the ``with``
    goes on).
    """
    main = sys.modules.get("__main__")
    stem = Path(getattr(main, "__file__", None) or "session").stem
    options = ProfileOptions(
        target=f"{stem}.py", out=Path(out) if out is not None else None, runs_root=Path(runs_root),
        force=force, wait=wait, warmup=warmup, active=active, run_to_completion=not stop_after_window,
        tensorboard_dir=Path(tensorboard_dir) if tensorboard_dir is not None else None, no_report=no_report,
        telemetry_interval_ms=telemetry_interval_ms, record_shapes=record_shapes, with_stack=with_stack,
        supervise=False,
    )
    run_dir = claim_run_dir(options, rank_env() if out is None else None)
    command: dict[str, Any] = {
        "kind": "api",
        "target": stem,
        "argv": list(sys.argv),
        "cwd": str(Path.cwd()),
        "loader_overrides": {},
    }
    return ProfileSession(options, run_dir, command, analyze)
