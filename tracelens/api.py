"""The public entry points behind the CLI: analyze a file, a run directory or a directory of ranks."""

from __future__ import annotations

from pathlib import Path

from tracelens.document.result import Result
from tracelens.load import Progress
from tracelens.ranks.engine import RankProgress, analyze_files, assemble, run_locally
from tracelens.ranks.plan import plan

__all__ = ["analyze_files", "analyze_path"]


def analyze_path(path: str | Path, jobs: int | None = None, progress: Progress | None = None,
                 scheduler: str | None = None, on_ranks: RankProgress | None = None) -> Result:
    """Analyze a trace file, a ``tracelens profile`` run directory, or a directory of traces or
    of rank run directories, given as a path or an fsspec URL.

    The ranks run in ``jobs`` local processes (default one per core) that die with this one, or
    on the Dask cluster at ``scheduler``; the result has the same document either way.
    ``progress(done, total)`` is called now and then while a single file is read (bytes), and
    ``on_ranks(done, total, bytes_read)`` as ranks finish.
    """
    p = plan(path)
    if scheduler:
        from tracelens.ranks.cluster import analyze_ranks_on_cluster

        outcomes = analyze_ranks_on_cluster(scheduler, p.jobs, on_progress=on_ranks)
    else:
        outcomes = run_locally(p.jobs, workers=jobs, on_progress=on_ranks, progress=progress)
    return assemble(p, outcomes)
