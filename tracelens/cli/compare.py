"""``tracelens compare A B``: before/after of two traces or run directories."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from tracelens.cli.output import check_output_file


def compare(
    a: Annotated[str, typer.Argument(metavar="A", help="The \"before\": a trace, a run directory or a directory of traces (or an fsspec URL of one).", show_default=False)],
    b: Annotated[str, typer.Argument(metavar="B", help="The \"after\", compared against A.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON document (SPEC §4) instead of the table.")] = False,
    html: Annotated[Path | None, typer.Option("--html", help="Also write a one-file HTML page to this file (an existing file only with --force).")] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite the --html file when it exists.")] = False,
    scheduler: Annotated[str | None, typer.Option("--scheduler", envvar="TRACELENS_SCHEDULER", help="Analyze directories of ranks on the Dask cluster at this address (tcp://host:8786); needs tracelens-dataloader[cluster].")] = None,
) -> None:
    """Compare two runs: step time, data wait, GPU busy and findings, B minus A."""
    from tracelens.api import compare_paths
    from tracelens.document.compare import encode_comparison
    from tracelens.render.compare import format_comparison, write_comparison_html

    check_output_file(html, force, "--html")
    c = compare_paths(a, b, scheduler=scheduler)
    if as_json:
        sys.stdout.write(encode_comparison(c).decode())
    else:
        typer.echo(format_comparison(c))
    if html is not None:
        write_comparison_html(c, html)
        if not as_json:
            typer.echo(f"report: {html}")


def register(app: typer.Typer) -> None:
    """Add the ``compare`` command to ``app``."""
    app.command("compare")(compare)
