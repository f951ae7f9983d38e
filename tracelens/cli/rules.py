"""``tracelens rules``: list every rule with its precondition and thresholds; docs/rules.md is this."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:  # the rules load the analysis (numpy, pandas): only when the command runs
    from tracelens.diagnosis import Rule


def rule_by_id(rule_id: str) -> Rule | None:
    """The rule with ``rule_id`` (case-insensitive)."""
    from tracelens.diagnosis import RULES

    return next((r for r in RULES if r.id.lower() == rule_id.lower()), None)


def register(app: typer.Typer) -> None:
    """Add ``tracelens rules`` to the CLI."""

    @app.command("rules")
    def rules_command(
        markdown: Annotated[bool, typer.Option("--markdown", help="Print docs/rules.md instead.")] = False,
        write: Annotated[Path | None, typer.Option("--write", help="Write the markdown to this file.")] = None,
    ) -> None:
        """List every diagnosis rule: id, kind, severity, precondition, thresholds and why."""
        from tracelens.diagnosis.listing import render_rules_markdown, render_rules_text

        if write is not None:
            write.write_text(render_rules_markdown())
            typer.echo(f"wrote {write}")
            return
        width = shutil.get_terminal_size((100, 24)).columns
        typer.echo(render_rules_markdown() if markdown else render_rules_text(width), nl=False)
