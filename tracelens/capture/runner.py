"""Run a script or module as ``python SCRIPT ARGS`` / ``python -m MODULE ARGS`` would, under a
capture session, and keep its exit status."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from tracelens.capture.options import ProfileOptions, ProfileResult
from tracelens.capture.registry import jsonable
from tracelens.capture.session import CaptureSession, SessionConfig
from tracelens.capture.target import run_target
from tracelens.errors import UsageError
from tracelens.outputs import write_run_outputs
from tracelens.paths import timestamped_dir


def default_run_dir(options: ProfileOptions, now: datetime | None = None) -> Path:
    """``<runs_root>/<stem>-<YYYYmmdd-HHMMSS>`` (a ``-2``, ``-3``... suffix if it exists)."""
    return timestamped_dir(options.runs_root, options.stem, now)


def _resolve_run_dir(options: ProfileOptions) -> Path:
    if options.out is None:
        return default_run_dir(options)
    out = options.out
    if out.exists() and any(out.iterdir()) and not options.force:
        raise UsageError(
            f"{out}: run directory exists and is not empty; pass --force to overwrite it"
        )
    return out


def run_profile(options: ProfileOptions) -> ProfileResult:
    """Run ``options.target`` under the profiler and write its run directory.

    Returns once the script has finished, been stopped after the window, failed, or been
    interrupted; the script's own exit status is in the result (0, ``sys.exit(n)`` → n,
    exception → 1 with its traceback printed to stderr, Ctrl-C → 130).
    """
    if options.module:
        target_path: Path | None = None
    else:
        target_path = Path(options.target)
        if not target_path.is_file():
            raise UsageError(f"{options.target}: no such script")
    run_dir = _resolve_run_dir(options)
    command = {
        "kind": "module" if options.module else "script",
        "target": options.target,
        "argv": [options.target, *options.args],
        "cwd": os.getcwd(),
        "loader_overrides": {k: jsonable(v) for k, v in options.loader_overrides.items()},
    }
    session = CaptureSession(
        SessionConfig(
            run_dir=run_dir,
            command=command,
            wait=options.wait,
            warmup=options.warmup,
            active=options.active,
            stop_after_window=not options.run_to_completion,
            tensorboard_dir=options.tensorboard_dir,
            no_report=options.no_report,
            telemetry_interval_ms=options.telemetry_interval_ms,
            loader_overrides=dict(options.loader_overrides),
            record_shapes=options.record_shapes,
            with_stack=options.with_stack,
            profile_memory=options.profile_memory,
        )
    )
    session.start()
    status, reason, error = run_target(
        options.target, options.args, options.module, stop_reason="window_captured"
    )
    recorded = session.finish(status, reason, error, shutdown_workers=True)
    return analyze_run(recorded, no_report=options.no_report)


def analyze_run(recorded: ProfileResult, *, no_report: bool) -> ProfileResult:
    """Write ``analysis.json`` and ``report.html`` beside a finished recording.

    The recording is already on disk: a failed analysis is a note, never a lost run.
    """
    if no_report or recorded.trace_path is None:
        return recorded
    try:
        result = write_run_outputs(recorded.run_dir)
    except Exception as exc:
        note = f"analysis failed: {type(exc).__name__}: {exc}"
        return replace(recorded, notes=(*recorded.notes, note))
    return replace(recorded, analysis=result, analysis_path=recorded.run_dir / "analysis.json",
                   report_path=recorded.run_dir / "report.html")

