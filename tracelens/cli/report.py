"""``tracelens report PATH [-o FILE] [--redact] [--force]``: write the shareable HTML report.

Default output: ``report.html`` inside a ``tracelens profile`` run directory (the file
``profile`` itself writes; ``report-redacted.html`` with ``--redact``, so the run's own report is
kept), else ``tracelens-report-<name>.html`` in the current directory. An existing file is
replaced without ``--force`` only when it is a default name that tracelens wrote (its
``<meta name="generator" content="tracelens">``); an explicit ``-o FILE`` that exists, or any file
tracelens did not write, never is.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from tracelens.cli.output import check_output_file, report_failed_ranks
from tracelens.ranks.store import is_url

GENERATOR_MARK = b'<meta name="generator" content="tracelens">'
MARK_SEARCH_BYTES = 4096  # the marker sits in the page's <head>


def default_output(path: Path, *, redact: bool = False) -> Path:
    """Where the report goes when ``-o`` is not given."""
    if path.is_dir() and (path / "run.json").is_file():
        return path / ("report-redacted.html" if redact else "report.html")
    name = path.resolve().name or "trace"
    for suffix in (".json.gz", ".json"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    name = re.sub(r"[^\w.-]+", "_", name.removesuffix(".pt.trace")).strip("._") or "trace"
    return Path(f"tracelens-report-{name}{'-redacted' if redact else ''}.html")


def written_by_tracelens(path: Path) -> bool:
    """Whether ``path`` is an HTML page tracelens wrote (its head carries the generator mark)."""
    try:
        with path.open("rb") as f:
            return GENERATOR_MARK in f.read(MARK_SEARCH_BYTES)
    except OSError:
        return False


def report(
    path: Annotated[str, typer.Argument(metavar="PATH", help="A trace (.json / .json.gz), a run directory, or a directory of traces (ranks); also an fsspec URL of one.", show_default=False)],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="The HTML file to write (default: report.html in a run directory, else tracelens-report-<name>.html here).", show_default=False)] = None,
    redact: Annotated[bool, typer.Option("--redact", help="Hide file paths, file and directory names, the host and user names and the command line, for sharing (default file: report-redacted.html).")] = False,
    force: Annotated[bool, typer.Option("--force", "-f", help="Replace the output file when it exists (without it, only a report tracelens wrote under the default name is replaced).")] = False,
    scheduler: Annotated[str | None, typer.Option("--scheduler", envvar="TRACELENS_SCHEDULER", help="Analyze directories of ranks on the Dask cluster at this address (tcp://host:8786); needs tracelens-dataloader[cluster].")] = None,
    open_it: Annotated[bool, typer.Option("--open", help="Open the report in the web browser once written.")] = False,
) -> None:
    """Write the self-contained HTML report: verdict, the DataLoader change to make, findings, charts."""
    from tracelens.api import analyze_path
    from tracelens.render.report import write_report

    out = output if output is not None else default_output(Path(path), redact=redact)
    # a default name is replaced only when tracelens wrote the file there: never a user's own file
    check_output_file(out, force or (output is None and written_by_tracelens(out)), "-o")
    result = analyze_path(path if scheduler or is_url(path) else Path(path), scheduler=scheduler)
    write_report(result, out, redact=redact)
    typer.echo(f"report: {out}")
    if open_it:
        open_in_browser(out)
    report_failed_ranks(result.document)


def open_in_browser(path: Path) -> None:
    """Open ``path`` in the user's browser (``$BROWSER`` when set); say so when none opens."""
    import webbrowser

    if not webbrowser.open(path.resolve().as_uri()):
        typer.echo(f"tracelens: no web browser found: open {path} yourself", err=True)


def register(app: typer.Typer) -> None:
    """Add the ``report`` command to the ``tracelens`` app."""
    app.command("report")(report)
