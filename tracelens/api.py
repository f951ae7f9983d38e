"""The public entry points behind the CLI, on top of the analysis pipeline and the renderers:
analyze a location, compare two, write a run directory's outputs."""

from __future__ import annotations

from pathlib import Path

from tracelens.document.compare import Comparison, compare_documents
from tracelens.document.result import Result
from tracelens.document.schema import encode_document
from tracelens.load import Progress
from tracelens.ranks.engine import RankProgress, analyze_files, assemble, run_locally
from tracelens.ranks.plan import plan
from tracelens.ranks.store import is_url

__all__ = ["analyze_files", "analyze_path", "compare_paths", "write_run_outputs"]


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


def compare_paths(path_a: str | Path, path_b: str | Path, scheduler: str | None = None) -> Comparison:
    """Analyze two traces, run directories or directories of ranks (on the Dask cluster at
    ``scheduler`` when given) and compare them (B is the "after")."""
    def one(p: str | Path) -> Result:
        return analyze_path(p if scheduler or is_url(p) else Path(p), scheduler=scheduler)

    return compare_documents(one(path_a).document, one(path_b).document)


def write_run_outputs(run_dir: str | Path) -> Result:
    """Analyze a run (or job) directory and write its ``analysis.json`` and ``report.html``."""
    from tracelens.render.html import write_atomic
    from tracelens.render.report import write_report

    d = Path(run_dir)
    result = analyze_path(d)
    write_atomic(d / "analysis.json", encode_document(result.document).decode())
    write_report(result, d / "report.html")
    return result
