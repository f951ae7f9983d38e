"""docs/rules.md is generated from the rule table; the `tracelens rules` listing shows every rule."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from tracelens.cli import app
from tracelens.diagnosis import RULES
from tracelens.diagnosis.listing import render_rules_markdown

DOC = Path(__file__).resolve().parents[2] / "docs" / "rules.md"


def test_docs_rules_md_is_current() -> None:
    assert DOC.read_text() == render_rules_markdown(), (
        "docs/rules.md is stale: run `python -m tracelens.docgen`")


def test_rules_command_lists_every_rule_with_thresholds() -> None:
    out = CliRunner().invoke(app, ["rules"]).output
    for r in RULES:
        assert r.id in out and r.kind in out
    assert "exposed_wait_fraction = 0.05" in out and "XProf" in out


def test_rules_command_prints_markdown() -> None:
    out = CliRunner().invoke(app, ["rules", "--markdown"]).output
    assert out == render_rules_markdown()
