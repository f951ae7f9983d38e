"""Generated documents are current, and every key the capture writes is declared in run.json's structs."""

from __future__ import annotations

import msgspec
import pytest

from tests.conftest import REPO
from tracelens.docgen import analysis_json_markdown, run_json_markdown
from tracelens.runjson import Machine, Samples


def test_docs_run_json_md_is_current() -> None:
    assert (REPO / "docs" / "run-json.md").read_text(encoding="utf-8") == run_json_markdown(), (
        "docs/run-json.md is stale: run `python -m tracelens.docgen`")


def test_docs_analysis_json_md_is_current() -> None:
    assert (REPO / "docs" / "analysis-json.md").read_text(encoding="utf-8") == analysis_json_markdown(), (
        "docs/analysis-json.md is stale: run `python -m tracelens.docgen`")


def test_every_documented_struct_field_has_a_meaning() -> None:
    assert "|  |" not in run_json_markdown()
    assert "|  |" not in analysis_json_markdown()


def test_the_analysis_json_tables_cover_both_document_shapes_and_link_their_structs() -> None:
    text = analysis_json_markdown()
    headings = {line[3:] for line in text.splitlines() if line.startswith("## ")}
    assert {"Document", "JobDocument", "Finding", "FailedRank", "Tool"} <= headings
    links = {part.split(")")[0] for part in text.split("](#")[1:]}
    assert links <= {h.lower() for h in headings}


def test_every_machine_fact_the_probe_emits_is_declared() -> None:
    pytest.importorskip("torch")
    from tracelens.capture.machine.facts import machine_facts

    emitted = set(machine_facts())
    assert emitted <= set(Machine.__struct_fields__), f"run.json would drop: {sorted(emitted - set(Machine.__struct_fields__))}"


def test_every_telemetry_field_the_sampler_emits_is_declared() -> None:
    from tracelens.capture.machine.telemetry import SAMPLE_FIELDS

    assert {f for f in SAMPLE_FIELDS if f != "t_ns"} | {"t_us"} == set(Samples.__struct_fields__)
    assert msgspec.json.decode(msgspec.json.encode(Samples(t_us=[1.0], cpu_ns=[2])), type=Samples).cpu_ns == [2]
