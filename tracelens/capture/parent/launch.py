"""Multi-process jobs (torchrun): every rank recorded into its own run directory of one job.

Two forms, the same result: ``OUT/rank-<RANK>/`` per rank (each claimed by that rank alone)
and the job's combined ``OUT/analysis.json`` and ``OUT/report.html``.

- ``tracelens profile [OPTIONS] -- torchrun ARGS train.py ...`` (also ``python -m
  torch.distributed.run``, ``-m torch.distributed.run``, a launcher given by path): this
  process claims OUT and runs ``python -m torch.distributed.run ARGS --no-python python -m
  tracelens profile OPTIONS --out OUT train.py ...``, so each rank's process is tracelens; when
  the launcher exits it analyzes all ranks together.
- ``torchrun ARGS --no-python tracelens profile [OPTIONS] train.py ...``: each rank finds its
  place from ``RANK`` / ``WORLD_SIZE`` / ``TORCHELASTIC_RUN_ID``; OUT is ``--out`` or
  ``runs_root/<stem>-<job>`` (the rendezvous id, else the launcher's start time and pid, the
  same for the ranks of one job on one machine); the last rank to finish writes the job's
  analysis (a file lock serializes the ranks).

A job over several nodes runs the first form on each node; with one ``--out`` on a shared file
system the launchers join it (:mod:`tracelens.capture.parent.nodes`), and the last to finish
writes the analysis of every rank in it.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NoReturn

from tracelens.capture.destination import COMBINED_MARK, JOB_PARENT_ENV, RankEnv, parent_combines
from tracelens.capture.machine.supply import with_job_root
from tracelens.capture.options import A, Analyze, JobResult, ProfileOptions, ProfileResult, analyzed
from tracelens.capture.parent.nodes import NodeJob, SiblingWatch, node_job
from tracelens.errors import UsageError
from tracelens.system import nodeclaims
from tracelens.system.rundirs import (
    RANK_DIR_PREFIX,
    claim_dir,
    claim_holder,
    claim_new_dir,
    release_claim,
)

LAUNCHER_MODULE = "torch.distributed.run"
LAUNCHER_NAMES = frozenset({"torchrun"})
#: torchrun options tracelens replaces by its own ``--no-python python -m tracelens profile``.
_DROPPED = frozenset({"--no-python", "--no_python", "-m", "--module", "--run-path", "--run_path"})
_PYTHON = re.compile(r"^python(\d+(\.\d+)*)?(\.exe)?$")


def _is_python(name: str) -> bool:
    return bool(_PYTHON.match(Path(name).name)) or name == sys.executable


def launcher_args(target: str, args: tuple[str, ...], module: bool) -> list[str] | None:
    """torchrun's own arguments when ``target`` is the launcher (``torchrun``, a path to it,
    ``-m torch.distributed.run``, ``python -m torch.distributed.run``), else None."""
    if module:
        return list(args) if target == LAUNCHER_MODULE else None
    if Path(target).name in LAUNCHER_NAMES:
        return list(args)
    if _is_python(target) and list(args[:2]) == ["-m", LAUNCHER_MODULE]:
        return list(args[2:])
    return None


@dataclass(frozen=True)
class LaunchPlan:
    """A torchrun command split: its options, and the Python script or module each rank runs."""

    launcher_opts: tuple[str, ...]
    module: bool
    script: str
    script_args: tuple[str, ...]
    job: NodeJob | None = None  # a job over several nodes (their launchers may share OUT)


def _torchrun_parser() -> Any:
    from torch.distributed.run import get_args_parser

    parser = get_args_parser()

    def error(message: str) -> NoReturn:
        raise UsageError(f"torchrun: {message}")

    parser.error = error  # type: ignore[method-assign]
    return parser


def _unwrap_python(executable: str, rest: list[str]) -> tuple[str, list[str], bool]:
    """``--no-python python [-m] X ARGS`` → (X, ARGS, module)."""
    if Path(executable).name == "tracelens":
        raise UsageError("the ranks already run `tracelens profile`: use either `tracelens profile -- "
                         "torchrun ARGS train.py` or `torchrun --no-python tracelens profile train.py`")
    if not _is_python(executable):
        raise UsageError(f"torchrun --no-python runs {executable}, not Python: tracelens profiles "
                         "Python training scripts (tracelens profile -- torchrun ARGS train.py)")
    if rest[:1] == ["-m"] and len(rest) > 1:
        return rest[1], rest[2:], True
    if rest and not rest[0].startswith("-"):
        return rest[0], rest[1:], False
    raise UsageError(f"torchrun --no-python {executable}: give the training script after it")


def plan_launch(args: list[str]) -> LaunchPlan:
    """Split torchrun arguments with torchrun's own parser."""
    ns = _torchrun_parser().parse_args(args)
    rest = list(ns.training_script_args)
    opts = [a for a in args[: len(args) - len(rest) - 1] if a not in _DROPPED]
    script, module = ns.training_script, bool(ns.module)
    if ns.no_python:
        script, rest, module = _unwrap_python(script, rest)
    return LaunchPlan(tuple(opts), module, script, tuple(rest), node_job(ns))


def rank_command(plan: LaunchPlan, options: ProfileOptions, job_dir: Path) -> list[str]:
    """The launcher command whose every rank runs ``tracelens profile --out JOB_DIR``."""
    import subprocess

    flags: list[str] = subprocess._args_from_interpreter_flags()  # type: ignore[attr-defined]
    return [sys.executable, *flags, "-m", LAUNCHER_MODULE, *plan.launcher_opts, "--no-python",
            sys.executable, *flags, "-m", "tracelens", "profile", *options.recording_flags(),
            f"--out={job_dir}", *(["-m"] if plan.module else []), "--", plan.script, *plan.script_args]


def rank_dirs(job_dir: Path) -> list[Path]:
    """``rank-<n>`` subdirectories, by rank."""
    found = [p for p in job_dir.glob(f"{RANK_DIR_PREFIX}*")
             if p.is_dir() and p.name[len(RANK_DIR_PREFIX):].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(RANK_DIR_PREFIX):]))


def collect_ranks(job_dir: Path, options: ProfileOptions) -> tuple[ProfileResult[Any], ...]:
    """Each rank's result, from its run.json."""
    from tracelens.capture.parent.supervisor import result_from_run
    from tracelens.capture.recorded.outcome import read_run

    out = []
    for d in rank_dirs(job_dir):
        run = read_run(d)
        if run is not None:
            res = result_from_run(d, run, run.exit_status, options)
            out.append(replace(res, rank=int(d.name[len(RANK_DIR_PREFIX):])))
    return tuple(out)


def run_job(options: ProfileOptions, args: list[str], analyze: Analyze[A] | None) -> JobResult[A]:
    """Profile every rank of a torchrun job into one job directory (see the module doc).

    A job over several nodes whose launchers share ``--out`` joins it (claims per node, see
    :mod:`tracelens.system.nodeclaims`): this node stops when another node's launcher fails, and
    the last launcher to finish writes the analysis of every rank in OUT.
    """
    plan = plan_launch(args)
    rank_options = replace(options, target=plan.script, args=plan.script_args, module=plan.module)
    if not plan.module and not Path(plan.script).is_file():
        raise UsageError(f"{plan.script}: no such script (the script torchrun runs)")
    if options.out is not None and plan.job is not None:
        nodeclaims.join(options.out, plan.job.key, plan.job.max_nodes, force=options.force)
        return _run_node(options, rank_options, plan, plan.job, analyze)
    if options.out is None:
        job_dir = claim_new_dir(options.runs_root, rank_options.stem)
    else:
        claim_dir(options.out, force=options.force)
        job_dir = options.out
    try:
        rc, cmd, terminated, _ = _launch(plan, rank_options, job_dir, None)
        job: JobResult[Any] = JobResult(job_dir, rc, cmd, collect_ranks(job_dir, rank_options))
        if not terminated:
            job = _analyze_job(job, analyze, options)
    finally:
        release_claim(job_dir)
    return job


def _launch(plan: LaunchPlan, rank_options: ProfileOptions, job_dir: Path,
            watch: NodeJob | None) -> tuple[int, list[str], bool, str | None]:
    """Run the launcher: its exit status, command, whether this process was asked to stop, and
    why another node's failure stopped it (``watch``: the job whose other nodes are watched)."""
    from tracelens.capture.parent.supervisor import Relay

    cmd = rank_command(plan, rank_options, job_dir)
    stopped_by = None
    with Relay(grace_s=60.0) as relay:  # torchrun gives its ranks 30 s after SIGTERM
        proc = relay.start(cmd, with_job_root({**os.environ, JOB_PARENT_ENV: str(os.getpid())}), own_session=True)
        if watch is None:
            rc = relay.wait()
        else:
            with SiblingWatch(job_dir, watch, proc) as sibling:
                rc = relay.wait()
            stopped_by = sibling.reason
    status = rc if rc >= 0 else 128 - rc
    return (max(status, 1) if stopped_by else status), cmd, relay.terminated, stopped_by


def _analyze_job(job: JobResult[A], analyze: Analyze[A] | None, options: ProfileOptions) -> JobResult[A]:
    from tracelens.capture.parent.supervisor import stop_on_sigterm

    with stop_on_sigterm(job.job_dir):
        return analyzed(job, job.job_dir, analyze, no_report=options.no_report, what="job analysis")


def _run_node(options: ProfileOptions, rank_options: ProfileOptions, plan: LaunchPlan, node: NodeJob,
              analyze: Analyze[A] | None) -> JobResult[A]:
    """This node's launcher of a job over several nodes, in the OUT it joined."""
    job_dir = options.out
    assert job_dir is not None
    rc, terminated, stopped_by = 1, False, None
    cmd: list[str] = []
    try:
        rc, cmd, terminated, stopped_by = _launch(plan, rank_options, job_dir, node)
    finally:
        with nodeclaims.leave(job_dir, node.key, rc) as last:
            job: JobResult[Any] = JobResult(job_dir, rc, cmd, collect_ranks(job_dir, rank_options),
                                            notes=(stopped_by,) if stopped_by else ())
            if last and not terminated:
                job = _analyze_job(job, analyze, options)
            elif not last:
                job = replace(job, notes=(*job.notes, "the analysis of all ranks is written by the last "
                                          f"node to finish: {job_dir / 'analysis.json'}"))
    return job


def _finished(run_dir: Path) -> bool:
    from tracelens.capture.recorded.outcome import read_run

    run = read_run(run_dir)
    return run is not None and run.stop_reason != "running" and claim_holder(run_dir) is None


def combine_if_last(options: ProfileOptions, rank: RankEnv, recorded: ProfileResult[Any],
                    analyze: Analyze[A] | None) -> JobResult[A] | None:
    """In the ``--no-python`` form: the job's analysis, written by the rank that finds every
    rank of the job finished (None for the others, and when the launching tracelens combines)."""
    if parent_combines():
        return None
    job_dir = recorded.run_dir.parent
    with nodeclaims.job_lock(job_dir):
        dirs = [job_dir / f"{RANK_DIR_PREFIX}{r}" for r in range(rank.world_size)]
        if (job_dir / COMBINED_MARK).exists() or not all(_finished(d) for d in dirs):
            return None
        (job_dir / COMBINED_MARK).write_text(f"{os.getpid()}\n")
        job: JobResult[Any] = JobResult(job_dir, recorded.exit_status, [], collect_ranks(job_dir, options))
        return analyzed(job, job_dir, analyze, no_report=options.no_report, what="job analysis")
