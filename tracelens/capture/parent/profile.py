"""``tracelens profile``: claim a run directory, record the script in a supervised child, hand
the directory to the caller's analysis step.

:func:`run_profile` is what the command runs. A launcher target (``torchrun ...``) becomes a
job of one run directory per rank (:mod:`tracelens.capture.parent.launch`); otherwise the run
directory is claimed (:mod:`tracelens.capture.destination`: ``OUT/rank-<RANK>`` inside a rank
of a job), the script recorded in a child (:mod:`tracelens.capture.parent.supervisor`, which
starts :mod:`tracelens.capture.script.child`) or, without supervision, in this process, and the
recording analyzed by the step the caller passed (:func:`tracelens.capture.options.analyzed`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from tracelens.capture.destination import claim_run_dir, rank_env
from tracelens.capture.options import A, Analyze, JobResult, ProfileOptions, ProfileResult, analyzed
from tracelens.capture.parent import launch
from tracelens.capture.parent.supervisor import result_from_run, stop_on_sigterm, supervise
from tracelens.capture.recorded.outcome import provisional_run, read_run, script_command, write_run
from tracelens.errors import UsageError
from tracelens.system.rundirs import release_claim


def check_target(options: ProfileOptions) -> None:
    """Refuse a script path that does not exist (a module is found by the child)."""
    if not options.module and not Path(options.target).is_file():
        raise UsageError(f"{options.target}: no such script")


def run_profile(options: ProfileOptions, analyze: Analyze[A] | None = None) -> ProfileResult[A] | JobResult[A]:
    """Run ``options.target`` under the profiler and write its run directory (or, for a
    launcher such as torchrun, one run directory per rank), then hand the directory to
    ``analyze`` (the caller's analysis step; None records only).

    Returns once the script has finished, been stopped after the window, failed, been
    interrupted or killed; the script's own exit status is in the result (0, ``sys.exit(n)``
    or ``os._exit(n)`` → n, exception → 1, Ctrl-C → 130, signal s → 128 + s).
    """
    launcher_args = launch.launcher_args(options.target, options.args, options.module)
    if launcher_args is not None:
        return launch.run_job(options, launcher_args, analyze)
    check_target(options)
    rank = rank_env()
    run_dir = claim_run_dir(options, rank)
    try:
        if options.supervise:
            recorded, stopped = supervise(options, run_dir, script_command(options))
        else:
            recorded, stopped = record_here(options, run_dir), False
        if stopped:
            note = f"analysis skipped (tracelens was asked to stop): tracelens analyze {run_dir}"
            recorded = replace(recorded, notes=(*recorded.notes, note))
        else:
            with stop_on_sigterm(run_dir):
                recorded = analyzed(recorded, run_dir, analyze, no_report=options.no_report)
    finally:
        release_claim(run_dir)
    if rank is None:
        return recorded
    recorded = replace(recorded, rank=rank.rank)
    job = None if stopped else launch.combine_if_last(options, rank, recorded, analyze)
    return job if job is not None else recorded


def record_here(options: ProfileOptions, run_dir: Path) -> ProfileResult[Any]:
    """Record in this process (no supervisor): a SIGKILL or a crash of the script loses the run."""
    from tracelens.capture.script.child import record

    write_run(run_dir, provisional_run(script_command(options), None))
    status = record(options, run_dir)
    run = read_run(run_dir)
    if run is None:
        raise RuntimeError(f"{run_dir}: the session wrote no readable run.json")
    return result_from_run(run_dir, run, status, options)
