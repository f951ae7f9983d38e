"""The public entry points behind the CLI: analyze a file, a run directory or a directory of ranks."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracelens.document.build import build_multirank_document
from tracelens.document.result import RankResult, Result
from tracelens.errors import TracelensError
from tracelens.load import Progress
from tracelens.ranks.plan import RankSource, locate
from tracelens.ranks.rank import analyze_files, analyze_source
from tracelens.system.procs import worker_pool

if TYPE_CHECKING:
    from tracelens.ranks.engine import DocumentsResult, RankProgress

__all__ = ["analyze_files", "analyze_path", "analyze_ranks", "analyze_source"]


def _rank_job(source: RankSource) -> RankResult:
    return analyze_source(source, jobs=1)  # ranks in parallel processes: each decodes in its own


def analyze_ranks(sources: tuple[RankSource, ...], jobs: int | None = None) -> tuple[list[RankResult], list[dict[str, Any]]]:
    """Every rank in worker processes that die with this one; the results, and one entry per
    rank that could not be analyzed (``{"rank", "paths", "error"}``: one bad rank stops no other)."""
    results: list[RankResult] = []
    failed: list[dict[str, Any]] = []

    def fail(source: RankSource, exc: Exception) -> None:
        error = str(exc) if isinstance(exc, TracelensError) else f"{' + '.join(map(str, source.paths))}: {type(exc).__name__}: {exc}"
        failed.append({"rank": source.rank, "paths": [str(x) for x in source.paths], "error": error})

    workers = min(len(sources), jobs or os.cpu_count() or 1)
    if workers <= 1:
        for source in sources:
            try:
                results.append(_rank_job(source))
            except Exception as exc:
                fail(source, exc)
        return results, failed
    with worker_pool(workers) as pool:
        futures = [(source, pool.submit(_rank_job, source)) for source in sources]
        for source, future in futures:
            try:
                results.append(future.result())
            except Exception as exc:
                fail(source, exc)
    return results, failed


def analyze_path(path: str | Path, jobs: int | None = None, progress: Progress | None = None,
                 scheduler: str | None = None,
                 on_ranks: Callable[[int, int, int], None] | None = None) -> Result:
    """Analyze a trace file, a ``tracelens profile`` run directory, or a directory of traces.

    ``progress(done, total)`` is called now and then while a single file is read (bytes).
    With a Dask ``scheduler`` address, or a URL ``path``, the ranks are analyzed by
    :func:`analyze_location` (``on_ranks(done, total, bytes_read)`` as they finish).
    """
    from tracelens.ranks.store import is_url

    if scheduler or is_url(path):
        return analyze_location(path, scheduler=scheduler, jobs=jobs, on_progress=on_ranks)
    found = locate(path)
    if not found.multi_rank:
        r = analyze_source(found.sources[0], jobs=jobs, progress=progress)
        return Result(found.location, (r,), r.document)
    results, failed = analyze_ranks(found.sources, jobs)
    if not results:
        first = failed[0]
        raise TracelensError(f"all {len(failed)} ranks failed; rank {first['rank']}: {first['error']}")
    doc = build_multirank_document([r.document for r in results], found.location)
    if failed:
        doc["failed_ranks"] = failed
    return Result(found.location, tuple(results), doc)


def analyze_location(location: str | Path, scheduler: str | None = None, jobs: int | None = None,
                     on_progress: RankProgress | None = None) -> DocumentsResult:
    """Analyze a path or URL rank by rank, on the Dask cluster at ``scheduler`` or locally.

    Locally, ``jobs`` processes (default one per core) run the ranks. Only documents come
    back; see :class:`DocumentsResult`.
    """
    from tracelens.ranks.engine import assemble, plan, run_jobs_locally

    p = plan(location)
    if scheduler:
        from tracelens.ranks.cluster import analyze_ranks_on_cluster

        outcomes = analyze_ranks_on_cluster(scheduler, p.jobs, on_progress=on_progress)
    else:
        outcomes = run_jobs_locally(p.jobs, workers=jobs, on_progress=on_progress)
    from tracelens.ranks.engine import DocumentsResult

    return DocumentsResult(p.location, (), assemble(p, outcomes), tuple(outcomes))
