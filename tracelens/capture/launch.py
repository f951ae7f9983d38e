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
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

from tracelens.capture.options import JobResult, ProfileOptions, ProfileResult
from tracelens.errors import UsageError
from tracelens.system.rundirs import (
    RANK_DIR_PREFIX,
    claim_dir,
    claim_holder,
    claim_new_dir,
    holder_alive,
    process_start,
    release_claim,
)

#: Set by a ``tracelens profile -- torchrun`` process for its ranks: that process combines.
JOB_PARENT_ENV = "TRACELENS_JOB_PARENT"
LAUNCHER_MODULE = "torch.distributed.run"
LAUNCHER_NAMES = frozenset({"torchrun"})
#: torchrun options tracelens replaces by its own ``--no-python python -m tracelens profile``.
_DROPPED = frozenset({"--no-python", "--no_python", "-m", "--module", "--run-path", "--run_path"})
_PYTHON = re.compile(r"^python(\d+(\.\d+)*)?(\.exe)?$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
#: Files of the ``--no-python`` form's coordination in OUT.
COMBINE_LOCK = ".tracelens-combine.lock"
COMBINED_MARK = ".tracelens-combined"


@dataclass(frozen=True)
class RankEnv:
    """This process's place in a distributed job, from the launcher's environment."""

    rank: int
    world_size: int
    local_rank: int | None
    run_id: str | None  # TORCHELASTIC_RUN_ID unless unset or ``none``


def rank_env(environ: dict[str, str] | None = None) -> RankEnv | None:
    """``RANK`` and ``WORLD_SIZE`` (with 0 ≤ RANK < WORLD_SIZE) as set by torchrun; None outside a job."""
    env = os.environ if environ is None else environ
    try:
        rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
    except (KeyError, ValueError):
        return None
    if not 0 <= rank < world:
        return None
    local = env.get("LOCAL_RANK", "")
    run_id = env.get("TORCHELASTIC_RUN_ID") or None
    return RankEnv(rank, world, int(local) if local.isdigit() else None,
                   None if run_id in (None, "none") else run_id)


def parent_combines() -> bool:
    """Whether a ``tracelens profile -- torchrun`` process launched this rank (it combines)."""
    return bool(os.environ.get(JOB_PARENT_ENV))


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
    return LaunchPlan(tuple(opts), module, script, tuple(rest))


def rank_command(plan: LaunchPlan, options: ProfileOptions, job_dir: Path) -> list[str]:
    """The launcher command whose every rank runs ``tracelens profile --out JOB_DIR``."""
    import subprocess

    flags: list[str] = subprocess._args_from_interpreter_flags()  # type: ignore[attr-defined]
    return [sys.executable, *flags, "-m", LAUNCHER_MODULE, *plan.launcher_opts, "--no-python",
            sys.executable, *flags, "-m", "tracelens", "profile", *options.recording_flags(),
            f"--out={job_dir}", *(["-m"] if plan.module else []), "--", plan.script, *plan.script_args]


def job_label(rank: RankEnv) -> str:
    """The part of a default job directory's name the ranks of one job share."""
    if rank.run_id:
        rid = rank.run_id[:8] if _UUID.match(rank.run_id) else rank.run_id
        return re.sub(r"[^A-Za-z0-9_.-]", "_", rid)[:40]
    launcher = os.getppid()
    started = process_start(launcher)
    stamp = datetime.fromtimestamp(started).strftime("%Y%m%d-%H%M%S") if started else "job"
    return f"{stamp}-{launcher}"


def claim_rank_dir(options: ProfileOptions, rank: RankEnv) -> Path:
    """Claim ``OUT/rank-<RANK>`` (OUT: ``--out``, else ``runs_root/<stem>-<job>``)."""
    job_dir = options.out if options.out is not None else options.runs_root / f"{options.stem}-{job_label(rank)}"
    job_dir.mkdir(parents=True, exist_ok=True)
    holder = claim_holder(job_dir)
    if holder is not None and str(holder.get("pid")) != os.environ.get(JOB_PARENT_ENV) and holder_alive(holder):
        raise UsageError(f"{job_dir}: another tracelens run (pid {holder.get('pid')}) is writing this "
                         "directory; choose another --out")
    run_dir = job_dir / f"{RANK_DIR_PREFIX}{rank.rank}"
    claim_dir(run_dir, force=options.force)
    if options.force and not parent_combines():  # an old job's analysis must not outlive it
        for name in ("analysis.json", "report.html", COMBINED_MARK):
            (job_dir / name).unlink(missing_ok=True)
    return run_dir


def rank_dirs(job_dir: Path) -> list[Path]:
    """``rank-<n>`` subdirectories, by rank."""
    found = [p for p in job_dir.glob(f"{RANK_DIR_PREFIX}*")
             if p.is_dir() and p.name[len(RANK_DIR_PREFIX):].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(RANK_DIR_PREFIX):]))


def collect_ranks(job_dir: Path, options: ProfileOptions) -> tuple[ProfileResult, ...]:
    """Each rank's result, from its run.json."""
    from tracelens.capture.outcome import read_run
    from tracelens.capture.supervisor import result_from_run

    out = []
    for d in rank_dirs(job_dir):
        run = read_run(d)
        if run is not None:
            res = result_from_run(d, run, run.exit_status, options)
            out.append(replace(res, rank=int(d.name[len(RANK_DIR_PREFIX):])))
    return tuple(out)


def analyze_job(job: JobResult, no_report: bool) -> JobResult:
    """Write the job's combined ``analysis.json`` and ``report.html`` (a failure is a note)."""
    if no_report or not any(r.trace_path is not None for r in job.ranks):
        return job
    try:
        from tracelens.api import write_run_outputs

        result = write_run_outputs(job.job_dir)
    except Exception as exc:
        return replace(job, notes=(*job.notes, f"job analysis failed: {type(exc).__name__}: {exc}"))
    return replace(job, analysis=result, analysis_path=job.job_dir / "analysis.json",
                   report_path=job.job_dir / "report.html")


def run_job(options: ProfileOptions, args: list[str]) -> JobResult:
    """Profile every rank of a torchrun job into one job directory (see the module doc)."""
    from tracelens.capture.supervisor import Relay, stop_on_sigterm

    plan = plan_launch(args)
    rank_options = replace(options, target=plan.script, args=plan.script_args, module=plan.module)
    if not plan.module and not Path(plan.script).is_file():
        raise UsageError(f"{plan.script}: no such script (the script torchrun runs)")
    if options.out is None:
        job_dir = claim_new_dir(options.runs_root, rank_options.stem)
    else:
        claim_dir(options.out, force=options.force)
        job_dir = options.out
    cmd = rank_command(plan, rank_options, job_dir)
    try:
        with Relay(grace_s=60.0) as relay:  # torchrun gives its ranks 30 s after SIGTERM
            relay.start(cmd, {**os.environ, JOB_PARENT_ENV: str(os.getpid())}, own_session=True)
            rc = relay.wait()
        job = JobResult(job_dir, rc if rc >= 0 else 128 - rc, cmd, collect_ranks(job_dir, rank_options))
        if not relay.terminated:
            with stop_on_sigterm(job_dir):
                job = analyze_job(job, options.no_report)
    finally:
        release_claim(job_dir)
    return job


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    import fcntl

    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _finished(run_dir: Path) -> bool:
    from tracelens.capture.outcome import read_run

    run = read_run(run_dir)
    return run is not None and run.stop_reason != "running" and claim_holder(run_dir) is None


def combine_if_last(options: ProfileOptions, rank: RankEnv, recorded: ProfileResult) -> JobResult | None:
    """In the ``--no-python`` form: the job's analysis, written by the rank that finds every
    rank of the job finished (None for the others, and when the launching tracelens combines)."""
    if parent_combines():
        return None
    job_dir = recorded.run_dir.parent
    with _locked(job_dir / COMBINE_LOCK):
        dirs = [job_dir / f"{RANK_DIR_PREFIX}{r}" for r in range(rank.world_size)]
        if (job_dir / COMBINED_MARK).exists() or not all(_finished(d) for d in dirs):
            return None
        (job_dir / COMBINED_MARK).write_text(f"{os.getpid()}\n")
        job = JobResult(job_dir, recorded.exit_status, [], collect_ranks(job_dir, options))
        return analyze_job(job, options.no_report)
