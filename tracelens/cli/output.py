"""What the commands write besides their results: output files (never a directory, never an
existing file without --force), the ranks that failed, and the ranks-done line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import typer

from tracelens.errors import UsageError
from tracelens.render.format import visible

if TYPE_CHECKING:
    from tracelens.document.schema import AnalysisDocument
    from tracelens.ranks.engine import RankProgress

FAILURE_LINES = 20  # failed ranks named one per line; the rest are counted


def check_output_file(path: Path | None, force: bool, option: str) -> None:
    """Refuse ``path`` when it is a directory, or an existing file without ``force`` (exit 2)."""
    if path is None:
        return
    if path.is_dir():
        raise UsageError(f"{path}: is a directory; give {option} a file name")
    if path.exists() and not force:
        raise UsageError(f"{path}: exists; pass --force to overwrite it, or choose another file with {option}")


def failure_lines(document: AnalysisDocument, limit: int = FAILURE_LINES) -> list[str]:
    """One line per failed rank (at most ``limit``), then the count; empty when none failed."""
    from tracelens.document.schema import JobDocument

    if not isinstance(document, JobDocument) or not document.failed_ranks:
        return []
    failed = document.failed_ranks
    lines = [f"rank {f.rank}: {f.error}" for f in failed[:limit]]
    if len(failed) > limit:
        lines.append(f"... and {len(failed) - limit} more (failed_ranks in --json)")
    total = len(failed) + len(document.ranks)
    lines.append(f"{len(failed)} of {total} ranks failed; the results above are for the other {total - len(failed)}")
    return lines


def report_failed_ranks(document: AnalysisDocument) -> None:
    """One stderr line per rank that could not be analyzed, then exit 1 (the others were printed)."""
    failed = failure_lines(document)
    for line in failed:
        typer.echo(f"tracelens: error: {visible(line)}", err=True)
    if failed:
        raise typer.Exit(1)


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
