"""analysis.json as typed structs: built once, encoded as analyze always wrote it, decoded back to
the same document, every field the analysis and the diagnosis produce declared."""

from __future__ import annotations

import dataclasses
import json
from functools import cache
from pathlib import Path

import msgspec
import pytest

from tests import golden
from tests.builders import TraceBuilder, make_document, plain, starved_loop
from tests.conftest import REPO
from tracelens._version import __version__
from tracelens.analysis import CopyStats, DeviceActivity
from tracelens.api import analyze_path
from tracelens.diagnosis import Finding as RuleFinding
from tracelens.diagnosis import Recommendation as RuleRecommendation
from tracelens.diagnosis import Skipped
from tracelens.document.schema import (
    AnalysisDocument,
    Copies,
    Device,
    Document,
    Finding,
    JobDocument,
    Recommendation,
    SkippedRule,
    StepRow,
    decode_document,
    encode_document,
    read_document,
)
from tracelens.errors import BadInputError

SAMPLES = REPO / "sample_traces"
CASES = ("ddp_torchrun", "hf_trainer", "synthetic/gpu_input_bound.json.gz", "synthetic/ranks")


@cache
def _analyzed(name: str) -> AnalysisDocument:
    return analyze_path(SAMPLES / name, jobs=1).document


@pytest.mark.parametrize("name", CASES)
def test_a_document_decodes_to_itself_and_encodes_to_the_same_bytes(name: str) -> None:
    doc = _analyzed(name)
    data = encode_document(doc)
    back = decode_document(data)
    assert type(back) is type(doc) and back == doc
    assert encode_document(back) == data


def _golden_documents() -> dict[str, object]:
    return {f"{f.stem.split('.')[0]}:{k}": v for f in (golden.SAMPLES_FILE, golden.SHARED_FILE)
            for k, v in golden.read(f).items() if k.startswith("document:")}


def test_the_golden_records_hold_single_and_job_documents() -> None:
    docs = _golden_documents()
    assert len(docs) > 50 and sum("ranks" in d for d in docs.values() if isinstance(d, dict)) >= 3


@pytest.mark.parametrize("key", sorted(_golden_documents()))
def test_every_recorded_document_decodes_strictly_every_key_declared(key: str) -> None:
    # Strict both ways: a key the structs do not declare would be dropped, a declared key the
    # writer omits would come back with its default, a number of the wrong type would change type.
    recorded = _golden_documents()[key]
    doc = decode_document(json.dumps(recorded).encode(), key)
    assert not golden.differences(recorded, plain(doc), key)


def test_the_encoding_is_indented_ascii_json_with_the_spec_keys_first() -> None:
    data = encode_document(_analyzed("hf_trainer")).decode()
    assert data.startswith('{\n  "schema_version": 1,\n') and data.endswith("}\n") and data.isascii()
    doc = json.loads(data)
    assert list(doc)[:9] == ["schema_version", "tool", "source", "steps", "metrics", "loader", "diagnosis",
                             "recommendation", "findings"]
    assert doc["tool"] == {"name": "tracelens", "version": __version__}


def test_keys_present_only_sometimes_stay_absent() -> None:
    single = json.loads(encode_document(_analyzed("synthetic/gpu_input_bound.json.gz")))
    assert "rank" not in single and "waits_for_rank" not in single
    job = json.loads(encode_document(_analyzed("ddp_torchrun")))
    assert "failed_ranks" not in job
    assert [r.get("waits_for_rank") for r in job["ranks"]] == [1, None]
    assert [("rank" in f) for f in job["findings"]] == [False, True]  # the job's straggler, then rank 1's


def test_a_document_of_the_previous_writer_has_no_tool_and_still_loads() -> None:
    doc = plain(_analyzed("ddp_torchrun"))
    for d in (doc, *doc["ranks"]):
        del d["tool"]
    old = decode_document(json.dumps(doc).encode())
    assert isinstance(old, JobDocument)
    assert old.tool.version is None and old.ranks[0].tool.version is None
    assert old.slowest_rank == 1


def test_a_job_document_reads_as_a_job_and_its_ranks_as_documents() -> None:
    job = _analyzed("ddp_torchrun")
    assert isinstance(job, JobDocument)
    assert all(isinstance(r, Document) for r in job.ranks) and job.slowest().rank == job.slowest_rank == 1
    assert job.ranks[0].waits_for_rank == 1 and job.findings[1].rank == 1 and job.failed_ranks == []


def _fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def test_every_field_of_a_rule_finding_and_the_recommendation_is_declared() -> None:
    # A field added to the diagnosis' types must get its place (and its description) here, or
    # the document would drop it.
    assert _fields(RuleFinding) == set(Finding.__struct_fields__) - {"rank_"}
    # (knob and knob_advice are the document's: named from the loader the document is about)
    assert _fields(RuleRecommendation) == set(Recommendation.__struct_fields__) - {"knob", "knob_advice"}
    assert _fields(Skipped) == set(SkippedRule.__struct_fields__)


def test_every_field_of_the_analysis_the_document_carries_is_declared() -> None:
    assert _fields(DeviceActivity) == set(Device.__struct_fields__)
    assert _fields(CopyStats) == set(Copies.__struct_fields__)
    per_step = analyze_path(SAMPLES / "hf_trainer", jobs=1).ranks[0].analysis.per_step
    assert list(per_step.columns) == list(StepRow.__struct_fields__)


def test_evidence_is_open_a_new_rule_needs_no_schema_change() -> None:
    f = msgspec.convert({"id": "TL299", "kind": "busy_machine", "severity": "medium", "confidence": 0.7,
                         "title": "t", "advice": "a", "evidence": {"other_cpu_cores": 3.5, "cores_left": 0.5,
                                                                    "top": [{"pid": 1, "cpu": 2.0}]}}, Finding)
    doc = make_document(findings=[msgspec.to_builtins(f)])
    assert decode_document(encode_document(doc)).findings[0].evidence["top"] == [{"pid": 1, "cpu": 2.0}]


def test_numpy_numbers_in_evidence_encode_as_plain_numbers() -> None:
    import numpy as np

    f = Finding(id="TL1", kind="k", severity="low", confidence=0.5, title="t", advice="",
                evidence={"x": np.float64(0.25), "n": np.int64(3)})
    doc = msgspec.structs.replace(make_document(), findings=[f])
    assert json.loads(encode_document(doc))["findings"][0]["evidence"] == {"x": 0.25, "n": 3}


@pytest.mark.parametrize(("data", "problem"), [
    (b"{not json", "cannot read analysis document"),
    (b"[1, 2]", "malformed analysis document"),
    (b'{"traceEvents": []}', "not a tracelens analysis document"),
    (b'{"schema_version": 9, "source": {}}', "unsupported analysis.json schema_version 9"),
    (b'{"schema_version": 1, "source": {"path": "x", "format": "json", "ranks": null, "devices": []}}',
     "missing required field `steps`"),
    (b'{"schema_version": 1, "source": {"path": "x"}, "ranks": "many"}', "malformed analysis document"),
])
def test_a_file_that_is_not_an_analysis_document_is_one_line(data: bytes, problem: str) -> None:
    with pytest.raises(BadInputError, match=problem) as err:
        decode_document(data, "a.json")
    assert str(err.value).startswith("a.json: ") and "\n" not in str(err.value)


def test_read_document_takes_a_run_directory_or_the_file(tmp_path: Path) -> None:
    doc = analyze_path(starved_loop(TraceBuilder(), steps=3).write(tmp_path / "t.json")).document
    (tmp_path / "analysis.json").write_bytes(encode_document(doc))
    assert read_document(tmp_path) == read_document(tmp_path / "analysis.json") == doc
    with pytest.raises(BadInputError, match="no such file"):
        read_document(tmp_path / "missing.json")
