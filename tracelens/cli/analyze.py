"""``tracelens analyze PATH``: measure DataLoader wait against GPU activity and diagnose it."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from tracelens.cli.bounds import JOBS_PER_CORE, max_jobs
from tracelens.cli.output import check_output_file, rank_progress_printer, report_failed_ranks
from tracelens.errors import TracelensError, UsageError
from tracelens.vocab import Severity

PROGRESS_MIN_BYTES = 64 << 20  # files smaller than this load too fast to need a progress line


def _progress_printer(path: Path) -> Callable[[int, int], None] | None:
    """A one-line progress display on stderr, for big files and an interactive terminal."""
    if not sys.stderr.isatty() or not path.is_file() or path.stat().st_size < PROGRESS_MIN_BYTES:
        return None
    name = path.name

    def show(done: int, total: int) -> None:
        end = "\n" if done >= total else ""
        sys.stderr.write(f"\rreading {name}: {100 * done // max(total, 1):3d} % "
                         f"({done / 1e6:,.0f} of {total / 1e6:,.0f} MB){end}")
        sys.stderr.flush()

    return show


def analyze(
    path: Annotated[str, typer.Argument(metavar="PATH", help="A trace (.json / .json.gz), a run directory, or a directory of traces (ranks, TensorBoard logdir); also an fsspec URL of one (s3://, gs://, https://).", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole analysis as JSON (what analysis.json holds) instead of the summary.")] = False,
    html: Annotated[Path | None, typer.Option("--html", help="Also write the HTML report to this file (an existing file only with --force).")] = None,
    fail_on: Annotated[str | None, typer.Option("--fail-on", help="Exit 3 when a finding of this severity or worse is present: high, medium, low, info.")] = None,
    jobs: Annotated[int | None, typer.Option("--jobs", "-j", min=1, help="Processes for several ranks (default: one per core; at most 4 per core).")] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite the --html file when it exists.")] = False,
    scheduler: Annotated[str | None, typer.Option("--scheduler", envvar="TRACELENS_SCHEDULER", help="Analyze the ranks on the Dask cluster at this address (tcp://host:8786); needs tracelens-dataloader[cluster].")] = None,
) -> None:
    """Measure DataLoader wait against GPU activity in a trace and diagnose it."""
    from tracelens.api import analyze_path
    from tracelens.document.schema import write_document
    from tracelens.render.terminal import print_summary
    from tracelens.render.wording import run_cwd

    if fail_on is not None and fail_on not in Severity.names():
        raise TracelensError(f"--fail-on must be one of {', '.join(Severity.names())}, not {fail_on!r}", exit_code=2)
    if jobs is not None and jobs > max_jobs():
        raise UsageError(f"--jobs {jobs}: at most {max_jobs()} here ({JOBS_PER_CORE} per core)")
    check_output_file(html, force, "--html")
    from tracelens.ranks.store import is_url
    from tracelens.system.memory import return_freed_memory

    return_freed_memory()  # columns of millions of steps freed one after another: RSS follows
    # A URL or --scheduler shows ranks done; a local file shows the bytes read.
    if scheduler or is_url(path):
        result = analyze_path(path, jobs=jobs, scheduler=scheduler, on_ranks=rank_progress_printer())
    else:
        result = analyze_path(Path(path), jobs=jobs, progress=_progress_printer(Path(path)))
    if as_json:
        write_document(result.document, sys.stdout)
    else:
        print_summary(result.document, cwd=run_cwd(result))
    if html is not None:
        from tracelens.render.report import write_report

        write_report(result, html)
        if not as_json:
            typer.echo(f"report: {html}")
    report_failed_ranks(result.document)
    if fail_on is not None and result.has_finding_at_least(fail_on):
        raise typer.Exit(3)


def register(app: typer.Typer) -> None:
    """Add the ``analyze`` command."""
    app.command("analyze")(analyze)
