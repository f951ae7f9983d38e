"""``profile --tensorboard`` (render/tensorboard.py): after the analysis, the step breakdown and the exposed wait as
scalars and the verdict and recommendation as text, in the run's logdir (torch-free)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tracelens.api import analyze_path
from tracelens.document.schema import PART_FIELDS, Document

pytest.importorskip("tensorboard")


def test_breakdown_scalars_and_verdict_text_land_in_the_logdir(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from tracelens.render.tensorboard import write_analysis_summary

    doc = analyze_path(REPO / "sample_traces" / "sleep_1ms_loader").document
    assert isinstance(doc, Document)
    assert write_analysis_summary(doc, tmp_path) == []
    acc = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"tracelens/exposed_wait_ms", *(f"tracelens/step/{p}" for p in PART_FIELDS)} <= tags
    exposed = [e.value for e in acc.Scalars("tracelens/exposed_wait_ms")]
    assert exposed == pytest.approx([r.exposed_wait_ms for r in doc.per_step], abs=1e-3)
    text = acc.Tensors("tracelens/verdict")[0].tensor_proto.string_val[0].decode()
    assert "IO BOUND" in text and "num_workers=" in text


def test_the_summary_imports_no_torch() -> None:
    code = ("import sys; from tracelens.render.tensorboard import write_analysis_summary; "
            "print('torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "False", r.stderr
