"""In-script API: ``with tracelens.profile() as session:`` around one's own training loop."""

from __future__ import annotations

import sys
from pathlib import Path
from types import TracebackType
from typing import Any

from tracelens.capture.options import (
    DEFAULT_TELEMETRY_INTERVAL_MS,
    DEFAULT_WARMUP_STEPS,
    ProfileResult,
)
from tracelens.capture.runner import analyze_run, default_run_dir
from tracelens.capture.session import CaptureSession, SessionConfig
from tracelens.capture.target import StopRun


class ProfileSession:
    """Context manager returned by :func:`profile`; ``result`` is set when the block ends."""

    def __init__(self, config: SessionConfig) -> None:
        self._session = CaptureSession(config)
        self.run_dir: Path = config.run_dir
        self.result: ProfileResult | None = None

    @property
    def batches_drawn(self) -> int:
        """DataLoader batches drawn inside the block so far."""
        return self._session.batches_drawn

    @property
    def window_captured(self) -> bool:
        """Whether the profiler window has been recorded and saved."""
        return self._session.window.captured

    def __enter__(self) -> ProfileSession:
        self._session.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if exc_type is None:
            status, reason, error = 0, "finished", None
        elif issubclass(exc_type, StopRun):
            status, reason, error = 0, "window_captured", None
        elif issubclass(exc_type, KeyboardInterrupt):
            status, reason, error = 130, "interrupted", "KeyboardInterrupt"
        elif issubclass(exc_type, SystemExit):
            code = exc.code if isinstance(exc, SystemExit) else None
            status = code if isinstance(code, int) else (0 if code is None else 1)
            reason, error = ("finished" if status == 0 else "exited"), None
        else:
            status, reason, error = 1, "error", f"{exc_type.__name__}: {exc}"
        recorded = self._session.finish(status, reason, error, shutdown_workers=False)
        self.result = analyze_run(recorded, no_report=self._session.config.no_report)
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
) -> ProfileSession:
    """Profile the DataLoader-driven loop inside a ``with`` block.

    Each batch drawn from any ``torch.utils.data.DataLoader`` inside the block is one step; the
    window (``wait`` skipped, ``warmup``, ``active`` recorded; ``None`` = chosen for the loader)
    is recorded once and written to ``out`` (default ``tracelens-runs/<script>-<time>``) with
    run.json, analysis.json and report.html. With ``stop_after_window`` the block is left right
    after the window (the code after the ``with`` goes on).
    """
    from tracelens.capture.options import ProfileOptions

    main = sys.modules.get("__main__")
    stem = Path(getattr(main, "__file__", None) or "session").stem
    run_dir = (
        Path(out)
        if out is not None
        else default_run_dir(ProfileOptions(target=f"{stem}.py", runs_root=Path(runs_root)))
    )
    command: dict[str, Any] = {
        "kind": "api",
        "target": stem,
        "argv": list(sys.argv),
        "cwd": str(Path.cwd()),
        "loader_overrides": {},
    }
    return ProfileSession(
        SessionConfig(
            run_dir=run_dir,
            command=command,
            wait=wait,
            warmup=warmup,
            active=active,
            stop_after_window=stop_after_window,
            tensorboard_dir=Path(tensorboard_dir) if tensorboard_dir is not None else None,
            no_report=no_report,
            telemetry_interval_ms=telemetry_interval_ms,
            record_shapes=record_shapes,
            with_stack=with_stack,
        )
    )
