"""Rank jobs: plan a location into per-rank jobs, run a job anywhere, assemble the documents.

A job names one rank's trace file(s) by location (a local path or an fsspec URL). Running it
reads the files (remote ones spooled to a local file first), analyzes them and returns only
the rank's document (kilobytes) or its one-line error. The same job function runs in a local
process pool and on Dask workers (:mod:`tracelens.ranks.cluster`), so both give the same documents;
the cross-rank document is then built where the caller is.

A rank that cannot be analyzed does not stop the others: the multi-rank document lists it under
``failed_ranks`` (``{"rank", "paths", "error"}``) and the CLI exits 1 after printing the rest.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from tracelens.document.build import build_multirank_document
from tracelens.document.result import RankResult, Result
from tracelens.errors import BadInputError, TracelensError
from tracelens.ranks.plan import locate
from tracelens.ranks.rank import analyze_files
from tracelens.ranks.store import is_url, local_copies
from tracelens.runjson import read_run_info

RankProgress = Callable[[int, int, int], None]  # (ranks done, ranks in all, bytes read so far)
FAILURE_LINES = 20  # failed ranks named one per line; the rest are counted


@dataclass(frozen=True)
class RankJob:
    """One rank's work: its trace file(s) by location, and the rank to give a trace without one.

    ``rank`` is None for a single trace analyzed on its own (it keeps the rank it declares).
    ``decode_jobs`` is the processes decoding each file (1: in the job's own process).
    """

    rank: int | None
    paths: tuple[str, ...]
    run_json: str | None = None
    decode_jobs: int | None = 1


@dataclass(frozen=True)
class RankOutcome:
    """A job's result: the rank's document, or the one-line reason it has none."""

    rank: int | None
    paths: tuple[str, ...]
    document: dict[str, Any] | None
    error: str | None = None
    bytes_read: int = 0  # bytes read from storage for this rank
    seconds: float = 0.0  # wall time of the job where it ran
    worker: str | None = None  # where it ran: a Dask worker address, or host:pid
    cpu_seconds: float = 0.0  # CPU time of the thread that ran it

    @property
    def ok(self) -> bool:
        return self.document is not None


@dataclass(frozen=True)
class Plan:
    """A location resolved into rank jobs; ``multi_rank`` when the result is the multi-rank shape."""

    location: str  # as the documents name it
    jobs: tuple[RankJob, ...]
    multi_rank: bool


@dataclass(frozen=True)
class DocumentsResult(Result):
    """A :class:`~tracelens.api.Result` whose analyses stayed where they ran.

    Only documents came back, so ``ranks`` is empty: read ``document`` (``document["ranks"]``
    for several ranks) and ``outcomes`` (per job: document or error, bytes read, worker).
    """

    outcomes: tuple[RankOutcome, ...] = ()

    @property
    def is_multi_rank(self) -> bool:
        return "ranks" in self.document

    @property
    def slowest(self) -> RankResult:
        raise TracelensError("the per-rank analyses stayed on the workers: read .document['slowest_rank']")

    @property
    def failed(self) -> tuple[RankOutcome, ...]:
        return tuple(o for o in self.outcomes if not o.ok)


# --- planning ----------------------------------------------------------------------------


def plan(location: str | Path) -> Plan:
    """The rank jobs for a trace, a run directory or a directory of traces (path or URL).

    Mirrors :func:`tracelens.api.analyze_path`: one job for a file, a run directory or a
    directory holding one rank; one job per rank otherwise, sorted by rank.
    """
    if is_url(location):
        return _plan_url(str(location))
    found = locate(location)
    return Plan(found.location, tuple(RankJob(src.rank, tuple(map(str, src.paths)),
                                              str(src.run_json) if src.run_json is not None else None)
                                      for src in found.sources), found.multi_rank)


def _plan_url(url: str) -> Plan:
    from tracelens.ranks.store import group_urls_by_rank, list_location

    listing = list_location(url)
    if listing.kind != "directory":
        return Plan(url, (RankJob(None, listing.files, listing.run_json),), False)
    return _plan_groups(url, group_urls_by_rank(list(listing.files)), len(listing.files))


def _plan_groups(location: str, groups: dict[int, list[str]], n_files: int) -> Plan:
    if len(groups) == 1:
        ((rank, paths),) = groups.items()
        return Plan(location, (RankJob(rank if n_files > 1 else None, tuple(paths)),), False)
    return Plan(location, tuple(RankJob(r, tuple(fs)) for r, fs in sorted(groups.items())), True)


# --- running -----------------------------------------------------------------------------


def run_rank_job(job: RankJob, spool_dir: str | Path | None = None) -> RankOutcome:
    """Read and analyze one rank; its document, or its error line for input that is not usable.

    Errors that retrying could fix (network, storage) are raised for the caller to retry.
    """
    t0, cpu0 = time.perf_counter(), time.thread_time()
    where = f"{socket.gethostname()}:{os.getpid()}"
    locations = job.paths + ((job.run_json,) if job.run_json else ())
    try:
        with local_copies(locations, spool_dir) as (local, nbytes):
            run = read_run_info(local[-1]) if job.run_json else None
            traces = local[: len(job.paths)]
            back = {str(loc): orig for loc, orig in zip(local, locations)}
            try:
                doc = analyze_files(traces, run=run, rank=job.rank, jobs=job.decode_jobs).document
            except BadInputError as exc:
                raise BadInputError(back.get(exc.path, exc.path), exc.problem) from None
    except TracelensError as exc:
        return RankOutcome(job.rank, job.paths, None, str(exc), 0, time.perf_counter() - t0, where)
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        problem = "no such file" if isinstance(exc, FileNotFoundError) else (exc.strerror or type(exc).__name__)
        name = exc.filename if exc.filename else " + ".join(locations)
        return RankOutcome(job.rank, job.paths, None, f"{name}: {problem}", 0, time.perf_counter() - t0, where)
    if any(is_url(p) for p in job.paths):
        doc["source"]["path"] = " + ".join(job.paths)  # the location, not the spool file
    return RankOutcome(job.rank, job.paths, doc, None, nbytes, time.perf_counter() - t0, where, time.thread_time() - cpu0)


def failed_outcome(job: RankJob, exc: BaseException) -> RankOutcome:
    """The outcome of a job that raised (after any retries): its exception as one line."""
    text = str(exc).strip().splitlines()
    detail = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    return RankOutcome(job.rank, job.paths, None, f"{' + '.join(job.paths)}: {detail}")


def run_jobs_locally(jobs: Sequence[RankJob], workers: int | None = None,
                     on_progress: RankProgress | None = None) -> list[RankOutcome]:
    """Run ``jobs`` in local processes (``workers``, default one per core); outcomes in job order."""
    n = workers or min(len(jobs), os.cpu_count() or 1)
    outcomes: list[RankOutcome | None] = [None] * len(jobs)
    done = nbytes = 0

    def record(i: int, outcome: RankOutcome) -> None:
        nonlocal done, nbytes
        outcomes[i] = outcome
        done += 1
        nbytes += outcome.bytes_read
        if on_progress is not None:
            on_progress(done, len(jobs), nbytes)

    if n <= 1:
        for i, job in enumerate(jobs):
            try:
                record(i, run_rank_job(job))
            except Exception as exc:
                record(i, failed_outcome(job, exc))
    else:
        with ProcessPoolExecutor(max_workers=n) as pool:
            index: dict[Future[RankOutcome], int] = {pool.submit(run_rank_job, job): i for i, job in enumerate(jobs)}
            for fut in as_completed(index):
                i = index[fut]
                try:
                    record(i, fut.result())
                except Exception as exc:
                    record(i, failed_outcome(jobs[i], exc))
    return [o for o in outcomes if o is not None]


# --- assembling --------------------------------------------------------------------------


def assemble(plan: Plan, outcomes: Sequence[RankOutcome]) -> dict[str, Any]:
    """The analysis document from the jobs' outcomes; raises when no rank could be analyzed."""
    ok = [o for o in outcomes if o.document is not None]
    failed = [o for o in outcomes if o.document is None]
    if not ok:
        if len(failed) == 1:
            raise TracelensError(failed[0].error or "the rank could not be analyzed")
        raise TracelensError(f"all {len(failed)} ranks failed; rank {failed[0].rank}: {failed[0].error}")
    if not plan.multi_rank:
        return ok[0].document  # type: ignore[return-value]
    doc = build_multirank_document([o.document for o in ok if o.document is not None], plan.location)
    if failed:
        doc["failed_ranks"] = [{"rank": o.rank, "paths": list(o.paths), "error": o.error} for o in failed]
    return doc


def failure_lines(document: dict[str, Any], limit: int = FAILURE_LINES) -> list[str]:
    """One line per failed rank (at most ``limit``), then the count; empty when none failed."""
    failed = document.get("failed_ranks") or []
    if not failed:
        return []
    lines = [f"rank {f['rank']}: {f['error']}" for f in failed[:limit]]
    if len(failed) > limit:
        lines.append(f"... and {len(failed) - limit} more (failed_ranks in --json)")
    total = len(failed) + len(document.get("ranks", []))
    lines.append(f"{len(failed)} of {total} ranks failed; the results above are for the other {total - len(failed)}")
    return lines


def rank_progress_printer(stream: TextIO | None = None) -> RankProgress | None:
    """A one-line ranks-done display for an interactive terminal (None otherwise)."""
    out = stream or sys.stderr
    if not (hasattr(out, "isatty") and out.isatty()):
        return None

    def show(done: int, total: int, nbytes: int) -> None:
        end = "\n" if done >= total else ""
        out.write(f"\ranalyzed {done:,} of {total:,} ranks ({nbytes / 1e6:,.0f} MB read){end}")
        out.flush()

    return show
