"""``tracelens profile``: claim a run directory, record the script in a supervised child, analyze.

- :func:`run_profile` is what the command runs. A launcher target (``torchrun ...``) becomes a
  job of one run directory per rank (:mod:`tracelens.capture.launch`); inside a rank of such a
  job (``RANK`` set) the run directory is ``OUT/rank-<RANK>``; otherwise ``--out`` or a fresh
  ``runs_root/<stem>-<YYYYmmdd-HHMMSS>``. The directory is claimed atomically first.
- :func:`record` runs in the child process (:mod:`tracelens.capture.child`): the capture
  session around the script, run as ``python SCRIPT ARGS`` / ``python -m MODULE ARGS`` would,
  with ``os._exit``, SIGTERM / SIGHUP and ``fork`` guarded (:mod:`tracelens.capture.guard`).
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

from tracelens.capture import launch
from tracelens.capture.options import JobResult, ProfileOptions, ProfileResult
from tracelens.capture.progress import Status, follow
from tracelens.capture.registry import jsonable
from tracelens.capture.supervisor import stop_on_sigterm, supervise
from tracelens.errors import UsageError
from tracelens.system.rundirs import claim_dir, claim_new_dir, release_claim


def default_run_dir(options: ProfileOptions, now: datetime | None = None) -> Path:
    """Create and claim ``<runs_root>/<stem>-<YYYYmmdd-HHMMSS>`` (``-2``, ``-3``... when taken)."""
    return claim_new_dir(options.runs_root, options.stem, now)


def script_command(options: ProfileOptions) -> dict[str, Any]:
    """run.json's ``command`` of a profiled script or module."""
    return {
        "kind": "module" if options.module else "script",
        "target": options.target,
        "argv": [options.target, *options.args],
        "cwd": os.getcwd(),
        "loader_overrides": {k: jsonable(v) for k, v in options.loader_overrides.items()},
    }


def check_target(options: ProfileOptions) -> None:
    """Refuse a script path that does not exist (a module is found by the child)."""
    if not options.module and not Path(options.target).is_file():
        raise UsageError(f"{options.target}: no such script")


def claim_run_dir(options: ProfileOptions, rank: launch.RankEnv | None) -> Path:
    """The run directory of this process, claimed: ``OUT/rank-<RANK>`` inside a job, else
    ``--out`` or a fresh default directory."""
    if rank is not None:
        return launch.claim_rank_dir(options, rank)
    if options.out is None:
        return default_run_dir(options)
    claim_dir(options.out, force=options.force)
    return options.out


def run_profile(options: ProfileOptions) -> ProfileResult | JobResult:
    """Run ``options.target`` under the profiler and write its run directory (or, for a
    launcher such as torchrun, one run directory per rank and the job's analysis).

    Returns once the script has finished, been stopped after the window, failed, been
    interrupted or killed; the script's own exit status is in the result (0, ``sys.exit(n)``
    or ``os._exit(n)`` → n, exception → 1, Ctrl-C → 130, signal s → 128 + s).
    """
    launcher_args = launch.launcher_args(options.target, options.args, options.module)
    if launcher_args is not None:
        return launch.run_job(options, launcher_args)
    check_target(options)
    rank = launch.rank_env()
    run_dir = claim_run_dir(options, rank)
    try:
        with Status(enabled=rank is None) as status:  # a job's ranks share one terminal: silent
            if options.supervise:
                with follow(run_dir, status):
                    recorded, stopped = supervise(options, run_dir, script_command(options))
            else:
                recorded, stopped = record_here(options, run_dir), False
            if stopped:
                note = f"analysis skipped (tracelens was asked to stop): tracelens analyze {run_dir}"
                recorded = replace(recorded, notes=(*recorded.notes, note))
            else:
                status.update("analyzing the trace, writing analysis.json and report.html")
                with stop_on_sigterm(run_dir):
                    recorded = analyze_run(recorded, no_report=options.no_report)
    finally:
        release_claim(run_dir)
    if rank is None:
        return recorded
    recorded = replace(recorded, rank=rank.rank)
    job = None if stopped else launch.combine_if_last(options, rank, recorded)
    return job if job is not None else recorded


def analyze_run(recorded: ProfileResult, *, no_report: bool) -> ProfileResult:
    """Write ``analysis.json`` and ``report.html`` beside a finished recording.

    The recording is already on disk: a failed analysis is a note, never a lost run.
    """
    if no_report or recorded.trace_path is None:
        return recorded
    try:
        from tracelens.api import write_run_outputs

        result = write_run_outputs(recorded.run_dir)
    except Exception as exc:
        note = f"analysis failed: {type(exc).__name__}: {exc}"
        return replace(recorded, notes=(*recorded.notes, note))
    notes = recorded.notes
    if recorded.tensorboard_dir is not None:
        from tracelens.capture.tensorboard import write_analysis_summary
        from tracelens.document.schema import Document

        doc = result.document
        notes += tuple(write_analysis_summary(doc, recorded.tensorboard_dir)) if isinstance(doc, Document) else ()
    return replace(recorded, analysis=result, analysis_path=recorded.run_dir / "analysis.json",
                   report_path=recorded.run_dir / "report.html", notes=notes)


def session_config(options: ProfileOptions, run_dir: Path) -> Any:
    """The capture session's settings for ``options``."""
    from tracelens.capture.session import SessionConfig

    return SessionConfig(
        run_dir=run_dir, command=script_command(options), wait=options.wait, warmup=options.warmup,
        active=options.active, stop_after_window=not options.run_to_completion,
        tensorboard_dir=options.tensorboard_dir, no_report=options.no_report,
        telemetry_interval_ms=options.telemetry_interval_ms, loader_overrides=dict(options.loader_overrides),
        record_shapes=options.record_shapes, with_stack=options.with_stack, profile_memory=options.profile_memory,
    )


def record_here(options: ProfileOptions, run_dir: Path) -> ProfileResult:
    """Record in this process (no supervisor): a SIGKILL or a crash of the script loses the run."""
    from tracelens.capture.outcome import provisional_run, read_run, write_run
    from tracelens.capture.supervisor import result_from_run

    write_run(run_dir, provisional_run(script_command(options), None))
    status = record(options, run_dir)
    run = read_run(run_dir)
    if run is None:
        raise RuntimeError(f"{run_dir}: the session wrote no readable run.json")
    return result_from_run(run_dir, run, status, options)


def exit_forked_child(status: int) -> NoReturn:
    """End a fork of the script that returned from it, as the interpreter would (atexit
    handlers, flushed streams) but without C++ static destructors: Kineto's, inherited from a
    process that was recording, wait forever on a condition variable in a forked child."""
    import atexit

    with contextlib.suppress(BaseException):
        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)


def record(options: ProfileOptions, run_dir: Path, *, supervisor_pid: int | None = None) -> int:
    """Run the script under a capture session in this process; write trace.json.gz and run.json
    into the claimed ``run_dir``; return the script's exit status.

    ``os._exit`` and SIGTERM / SIGHUP finish the session before the process ends; a forked
    child of the script that returns from it exits with its status without touching the run.
    """
    from tracelens.capture import hooks
    from tracelens.capture.guard import ExitGuard
    from tracelens.capture.outcome import annotate, write_phase
    from tracelens.capture.progress import progress_writer
    from tracelens.capture.session import CaptureSession
    from tracelens.capture.target import run_target

    session = CaptureSession(session_config(options, run_dir))
    session.observer = lambda phase: write_phase(run_dir, phase)
    session.progress = progress_writer(run_dir)

    def finish(status: int, reason: str, error: str | None, signum: int | None, shutdown: bool) -> None:
        write_phase(run_dir, "finishing")
        session.progress("writing the trace and run.json", True)  # type: ignore[misc]
        done = session.finish(status, reason, error, shutdown_workers=shutdown)
        notes = done.notes
        if supervisor_pid is not None and os.getppid() != supervisor_pid:
            notes += (f"the supervising tracelens profile process (pid {supervisor_pid}) died first: "
                      "its parent-death signal made this recording save the run",)
        annotate(run_dir, signum=signum, supervisor_pid=supervisor_pid, notes=notes)
        write_phase(run_dir, "done")

    def drop_hooks() -> None:
        if hooks.active_session() is session:
            hooks.uninstall()

    guard = ExitGuard(lambda st, why, err, sig: finish(st, why, err, sig, False), on_fork=drop_hooks)
    write_phase(run_dir, "recording")
    session.start()
    guard.arm()
    status, reason, error = run_target(options.target, options.args, options.module,
                                       stop_reason="window_captured")
    if guard.forked:  # a fork of the script returned from it: its status, not our run
        exit_forked_child(status)
    with guard.finishing():
        finish(status, reason, error, None, True)
    return status
