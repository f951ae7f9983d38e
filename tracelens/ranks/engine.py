"""Running rank jobs: one rank through the pipeline, the ranks on a local pool, the result assembled.

A job names one rank's trace file(s) and run.json by location (a path or an fsspec URL).
:func:`run_rank_job` reads them (remote ones spooled to a local file first), loads, analyzes,
diagnoses and builds the rank's document, and returns a :class:`RankOutcome`: the document
(kilobytes) and the full analysis, or the rank's one-line error. The same function runs in
this process, in a local pool whose workers die with it (:func:`run_locally`), and on Dask
workers (:mod:`tracelens.ranks.cluster`, which sends back only the document), so every route
gives the same documents; :func:`assemble` then builds the one :class:`Result` where the
caller is.

A rank that cannot be analyzed does not stop the others: the multi-rank document lists it under
``failed_ranks`` (``{"rank", "paths", "error"}``) and the CLI exits 1 after printing the rest.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, as_completed
from dataclasses import replace
from pathlib import Path

import msgspec

from tracelens.analysis import (
    ROWS_READ,
    measure_owned,
    needs_every_row,
    with_table,
)
from tracelens.diagnosis import diagnose
from tracelens.document import build_document, build_multirank_document
from tracelens.document.result import RankOutcome, RankResult, Result
from tracelens.document.schema import AnalysisDocument, FailedRank
from tracelens.errors import BadInputError, TracelensError
from tracelens.load import Progress, load_trace
from tracelens.model import Trace, concat_traces
from tracelens.ranks.plan import Plan, RankJob
from tracelens.ranks.store import is_url, local_copies
from tracelens.runjson import RunInfo, read_run_info
from tracelens.steps import per_step_table_owned
from tracelens.system.procs import cores, worker_pool

RankProgress = Callable[[int, int, int], None]  # (ranks done, ranks in all, bytes read so far)


def analyze_files(paths: Sequence[str | Path], run: RunInfo | None = None, rank: int | None = None,
                  jobs: int | None = None, progress: Progress | None = None) -> RankResult:
    """One rank held in one or more local trace files, through the pipeline: loaded, analyzed,
    diagnosed (with its run.json when there is one) and turned into its document
    (``jobs``: decoding processes per file)."""
    # the trace handed over (its only holder): its steps are split out of it, not copied beside it,
    # and it is gone before the per-step table, which grows with the steps as the trace does
    measured, steps = measure_owned([load_rank(paths, jobs, progress)])
    box = [steps]  # the table's inputs (the step and wait columns), handed over in turn
    del steps
    per_step, next_wait = per_step_table_owned(box)
    analysis = with_table(measured, per_step, next_wait)
    del measured, per_step, next_wait
    if rank is not None and analysis.rank is None:
        analysis = replace(analysis, rank=rank)
    diagnosis = diagnose(analysis, run)
    doc = build_document(analysis, diagnosis, run)
    return RankResult(analysis.rank, tuple(str(p) for p in paths), analysis, diagnosis, run, doc)


def load_rank(paths: Sequence[str | Path], jobs: int | None = None, progress: Progress | None = None) -> Trace:
    """The rows of one rank's trace files that the analysis reads (all rows when it needs them)."""
    trace = concat_traces([load_trace(p, jobs=jobs, progress=progress, rows=ROWS_READ) for p in paths])
    if needs_every_row(trace):
        del trace
        trace = concat_traces([load_trace(p, jobs=jobs, progress=progress) for p in paths])
    return trace


def analyze_job(job: RankJob, spool_dir: str | Path | None = None,
                progress: Progress | None = None) -> tuple[RankResult, int]:
    """One rank read where it is stored and analyzed; its result and the bytes read.

    Raises :class:`BadInputError` naming the stored location (never the spool file) for input
    that is not usable, and storage errors as they come.
    """
    locations = job.paths + ((job.run_json,) if job.run_json else ())
    with local_copies(locations, spool_dir) as (local, nbytes):
        back = {str(loc): orig for loc, orig in zip(local, locations)}
        try:
            run = read_run_info(local[-1]) if job.run_json else None
            full = analyze_files(local[: len(job.paths)], run=run, rank=job.rank, jobs=job.decode_jobs,
                                 progress=progress)
        except BadInputError as exc:
            raise BadInputError(back.get(exc.path, exc.path), exc.problem) from None
    if any(is_url(p) for p in job.paths):  # named by the location, not the spool file
        name = " + ".join(job.paths)
        doc = full.document
        full = replace(full, paths=job.paths, analysis=replace(full.analysis, path=name),
                       document=msgspec.structs.replace(doc, source=msgspec.structs.replace(doc.source, path=name)))
    return full, nbytes


def run_rank_job(job: RankJob, spool_dir: str | Path | None = None) -> RankOutcome:
    """Read and analyze one rank; its outcome, with its error line for input that is not usable.

    Errors that retrying could fix (network, storage) are raised for the caller to retry.
    """
    t0, cpu0 = time.perf_counter(), time.thread_time()
    try:
        full, nbytes = analyze_job(job, spool_dir)
    except TracelensError as exc:
        return RankOutcome(job.rank, job.paths, None, str(exc), 0, time.perf_counter() - t0, _here())
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        problem = "no such file" if isinstance(exc, FileNotFoundError) else (exc.strerror or type(exc).__name__)
        name = exc.filename if exc.filename else " + ".join(job.paths)
        return RankOutcome(job.rank, job.paths, None, f"{name}: {problem}", 0, time.perf_counter() - t0, _here())
    return _analyzed(job, full, nbytes, t0, cpu0)


def _here() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _analyzed(job: RankJob, full: RankResult, nbytes: int, t0: float, cpu0: float) -> RankOutcome:
    """The outcome of a job analyzed in this thread since ``t0`` (wall) and ``cpu0`` (CPU)."""
    return RankOutcome(job.rank, job.paths, full.document, None, nbytes, time.perf_counter() - t0, _here(),
                       time.thread_time() - cpu0, full)


def failed_outcome(job: RankJob, exc: BaseException) -> RankOutcome:
    """The outcome of a job that raised (after any retries): its exception as one line."""
    text = str(exc).strip().splitlines()
    detail = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    return RankOutcome(job.rank, job.paths, None, f"{' + '.join(job.paths)}: {detail}")


def run_locally(jobs: Sequence[RankJob], workers: int | None = None, on_progress: RankProgress | None = None,
                progress: Progress | None = None) -> list[RankOutcome]:
    """Run ``jobs`` here; their outcomes in job order.

    One job runs in this process, its file decoded by ``workers`` processes (default: as many
    as pay off) with ``progress(done, total)`` in bytes, and raises what it raises. Several run
    in ``workers`` processes (default one per core) that die with this one, one process each;
    a rank that fails is its outcome's error.
    """
    outcomes: list[RankOutcome | None] = [None] * len(jobs)
    done = nbytes = 0

    def record(i: int, outcome: RankOutcome) -> None:
        nonlocal done, nbytes
        outcomes[i] = outcome
        done += 1
        nbytes += outcome.bytes_read
        if on_progress is not None:
            on_progress(done, len(jobs), nbytes)

    n = min(len(jobs), workers or cores())
    if len(jobs) == 1:
        t0, cpu0 = time.perf_counter(), time.thread_time()
        try:
            full, read = analyze_job(replace(jobs[0], decode_jobs=workers), progress=progress)
        except Exception as exc:
            if isinstance(exc, TracelensError) or not any(is_url(p) for p in jobs[0].paths):
                raise  # bad input is its one line; a local failure keeps its traceback (--debug)
            raise TracelensError(failed_outcome(jobs[0], exc).error or str(exc)) from exc  # storage, as one line
        record(0, _analyzed(jobs[0], full, read, t0, cpu0))
    elif n <= 1:
        for i, job in enumerate(jobs):
            try:
                record(i, run_rank_job(job))
            except Exception as exc:
                record(i, failed_outcome(job, exc))
    else:
        with worker_pool(n) as pool:
            index: dict[Future[RankOutcome], int] = {pool.submit(run_rank_job, job): i for i, job in enumerate(jobs)}
            for fut in as_completed(index):
                i = index[fut]
                try:
                    record(i, fut.result())
                except Exception as exc:
                    record(i, failed_outcome(jobs[i], exc))
    return [o for o in outcomes if o is not None]


def assemble(plan: Plan, outcomes: Sequence[RankOutcome]) -> Result:
    """The result of a plan's outcomes; raises when no rank could be analyzed."""
    ok = [o for o in outcomes if o.document is not None]
    failed = [o for o in outcomes if o.document is None]
    if not ok:
        if len(failed) == 1:
            raise TracelensError(failed[0].error or "the rank could not be analyzed")
        raise TracelensError(f"all {len(failed)} ranks failed; rank {failed[0].rank}: {failed[0].error}")
    docs = [o.document for o in ok if o.document is not None]
    doc: AnalysisDocument = docs[0]
    if plan.multi_rank:
        doc = build_multirank_document(docs, plan.location, [
            FailedRank(rank=o.rank, paths=list(o.paths), error=o.error or "") for o in failed])
    return Result(plan.location, tuple(o.detail for o in ok if o.detail is not None), doc, tuple(outcomes))
