"""Output files the commands write: never a directory, never an existing file without --force."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from tracelens.errors import UsageError
from tracelens.render.format import visible


def check_output_file(path: Path | None, force: bool, option: str) -> None:
    """Refuse ``path`` when it is a directory, or an existing file without ``force`` (exit 2)."""
    if path is None:
        return
    if path.is_dir():
        raise UsageError(f"{path}: is a directory; give {option} a file name")
    if path.exists() and not force:
        raise UsageError(f"{path}: exists; pass --force to overwrite it, or choose another file with {option}")


def report_failed_ranks(document: dict[str, Any]) -> None:
    """One stderr line per rank that could not be analyzed, then exit 1 (the others were printed)."""
    from tracelens.ranks.engine import failure_lines

    failed = failure_lines(document)
    for line in failed:
        typer.echo(f"tracelens: error: {visible(line)}", err=True)
    if failed:
        raise typer.Exit(1)
