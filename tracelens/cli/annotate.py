"""``tracelens annotate TRACE [-o OUT] [--force]``: the user's own trace with tracelens's
tracks added (data wait per step, exposed and hidden; the verdict; the findings), to open in
the Perfetto UI or chrome://tracing."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from tracelens.cli.output import check_output_file


def default_output(path: Path) -> Path:
    """``<name>.tracelens.json.gz`` in the current directory."""
    name = path.resolve().name or "trace"
    if path.is_dir():
        name = name or "run"
    for suffix in (".json.gz", ".json"):
        name = name.removesuffix(suffix)
    name = re.sub(r"[^\w.-]+", "_", name.removesuffix(".pt.trace")).strip("._") or "trace"
    return Path(f"{name}.tracelens.json.gz")


def annotate(
    path: Annotated[Path, typer.Argument(metavar="TRACE", help="A trace (.json / .json.gz) or a run directory of one process.", show_default=False)],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="The trace to write (.json, or .json.gz to compress; default: <name>.tracelens.json.gz here).", show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Replace the output file when it exists.")] = False,
) -> None:
    """Write your trace with tracelens's tracks added, to open in the Perfetto UI or chrome://tracing.

    A process named "tracelens" sits on top: each step with its data wait, the exposed data
    wait (the GPU idle) and the hidden one (overlapped with GPU work), the verdict, and one
    track per finding; click a slice to read its text. Your own events are kept unchanged.
    """
    from tracelens.api import annotate_path

    out = output if output is not None else default_output(path)
    check_output_file(out, force, "-o")
    annotate_path(path, out)
    typer.echo(f"annotated trace: {out} (open it at ui.perfetto.dev or chrome://tracing)")


def register(app: typer.Typer) -> None:
    """Add the ``annotate`` command."""
    app.command("annotate")(annotate)
