"""``tracelens report PATH [-o FILE] [--redact] [--force]``: write the shareable HTML report.

Default output: ``report.html`` inside a ``tracelens profile`` run directory (the file
``profile`` itself writes, so regenerating it is expected), else
``tracelens-report-<name>.html`` in the current directory (named by tracelens, so it is
regenerated too). An explicit ``-o FILE`` that exists is never overwritten without ``--force``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from tracelens.cli.output import check_output_file, report_failed_ranks
from tracelens.ranks.store import is_url


def default_output(path: Path) -> Path:
    """Where the report goes when ``-o`` is not given."""
    if path.is_dir() and (path / "run.json").is_file():
        return path / "report.html"
    name = path.resolve().name or "trace"
    for suffix in (".json.gz", ".json"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    name = re.sub(r"[^\w.-]+", "_", name.removesuffix(".pt.trace")).strip("._") or "trace"
    return Path(f"tracelens-report-{name}.html")


def report(
    path: Annotated[str, typer.Argument(metavar="PATH", help="A trace (.json / .json.gz), a run directory, or a directory of traces (ranks); also an fsspec URL of one.", show_default=False)],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="The HTML file to write (default: report.html in a run directory, else tracelens-report-<name>.html here).", show_default=False)] = None,
    redact: Annotated[bool, typer.Option("--redact", help="Hide file paths, file names, the host name and the command line, for sharing.")] = False,
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite FILE given with -o when it exists.")] = False,
    scheduler: Annotated[str | None, typer.Option("--scheduler", envvar="TRACELENS_SCHEDULER", help="Analyze directories of ranks on the Dask cluster at this address (tcp://host:8786); needs tracelens-dataloader[cluster].")] = None,
) -> None:
    """Write the self-contained HTML report: verdict, the DataLoader change to make, findings, charts."""
    from tracelens.api import analyze_path
    from tracelens.render.report import write_report

    out = output if output is not None else default_output(Path(path))
    # the default names are tracelens' own files, rewritten on purpose
    check_output_file(out, force or output is None, "-o")
    result = analyze_path(path if scheduler or is_url(path) else Path(path), scheduler=scheduler)
    write_report(result, out, redact=redact)
    typer.echo(f"report: {out}")
    report_failed_ranks(result.document)


def register(app: typer.Typer) -> None:
    """Add the ``report`` command to the ``tracelens`` app."""
    app.command("report")(report)
