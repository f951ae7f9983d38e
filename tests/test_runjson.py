"""run.json reader: torch-free, typed, derived window summaries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tracelens.errors import BadInputError
from tracelens.runjson import decode_run_info, encode_run_info, read_run_info


def _doc() -> dict[str, Any]:
    return {
        "schema_version": 1,
        "command": {"argv": ["train.py", "--lr", "0.1"]},
        "exit_status": 0,
        "stop_reason": "window_captured",
        "window": {
            "captured": True,
            "steps": 3,
            "first_batch": 5,
            "start_us": 1000.0,
            "end_us": 4000.0,
            "warmup_start_us": 500.0,
        },
        "trace": {"path": "trace.json.gz", "clock": {"offset_ns": 12, "source": "sync_marker"}},
        "loaders": [
            {
                "id": 0,
                "num_workers": 2,
                "batch_size": 8,
                "pin_memory": False,
                "persistent_workers": False,
                "prefetch_factor": 2,
                "batches_drawn": 9,
            }
        ],
        "machine": {
            "logical_cores": 4,
            "usable_cores": 2,
            "gpus": [{"name": "H100"}],
            "gpu_count": 1,
        },
        "workers": [{"loader_id": 0, "worker_id": 0, "pid": 11, "torch_threads": 1}],
        "batches": {
            "count": 4,
            "start_us": [1000.0, 2000.0, 3000.0, 4000.0],
            "wait_us": [5, 6, 7, 8],
        },
        "worker_batches": {
            "loader_id": [0, 0, 0],
            "worker_id": [0, 0, 0],
            "pid": [11, 11, 11],
            "start_us": [0.0, 1500.0, 2500.0],
            "dur_us": [900.0, 1000.0, 3000.0],
            "cpu_us": [900.0, 250.0, 750.0],
        },
        "main_fetch": {"start_us": [], "dur_us": [], "cpu_us": []},
        "telemetry": {
            "interval_ms": 100.0,
            "processes": [
                {
                    "pid": 11,
                    "role": "worker",
                    "loader_id": 0,
                    "worker_id": 0,
                    "samples": {
                        "t_us": [600.0, 1_000_600.0],
                        "cpu_ns": [0, 500_000_000],
                        "cpu_user_s": [0.0, 0.4],
                        "cpu_system_s": [0.0, 0.1],
                        "run_delay_ns": [0, 250_000_000],
                        "read_bytes": [None, None],
                        "write_bytes": [0, 10],
                        "ctx_voluntary": [1, 5],
                        "ctx_involuntary": [0, 3],
                        "num_threads": [1, 2],
                    },
                }
            ],
        },
    }


def test_reads_typed_fields_and_derived_numbers(tmp_path: Path) -> None:
    (tmp_path / "run.json").write_text(json.dumps(_doc()))
    info = read_run_info(tmp_path)
    assert info.command.argv == ["train.py", "--lr", "0.1"]
    assert info.main_loader is not None and info.main_loader.num_workers == 2
    assert info.machine.usable_cores == 2 and [g.name for g in info.machine.gpus] == ["H100"]
    assert info.trace.clock.offset_ns == 12
    # batches overlapping the window [1000, 4000]: the last two
    assert info.batch_production_ms_median() == pytest.approx(2.0)
    assert info.batch_cpu_fraction() == pytest.approx(1000 / 4000)
    assert info.steps_per_s() == pytest.approx(3 / 0.003)
    (s,) = info.process_summaries()
    assert s.cpu_cores == pytest.approx(0.5) and s.run_delay_fraction == pytest.approx(0.25)
    assert s.read_bytes is None and s.write_bytes == 10
    assert (s.ctx_voluntary, s.ctx_involuntary, s.max_threads) == (4, 3, 2)


def test_bad_inputs_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match=r"no run\.json"):
        read_run_info(tmp_path)
    (tmp_path / "run.json").write_text("{not json")
    with pytest.raises(BadInputError, match="cannot read"):
        read_run_info(tmp_path)
    doc = _doc()
    doc["schema_version"] = 99
    (tmp_path / "run.json").write_text(json.dumps(doc))
    with pytest.raises(BadInputError, match="schema_version"):
        read_run_info(tmp_path)


def test_wrong_types_name_the_field(tmp_path: Path) -> None:
    doc = _doc()
    doc["loaders"][0]["num_workers"] = "two"
    (tmp_path / "run.json").write_text(json.dumps(doc))
    with pytest.raises(BadInputError, match=r"malformed run\.json: Expected `int`, got `str` - at `\$\.loaders\[0\]\.num_workers`"):
        read_run_info(tmp_path)


def _contains(whole: Any, part: Any) -> bool:
    """``whole`` holds every key of ``part`` with the same value (more keys allowed)."""
    if isinstance(part, dict):
        return isinstance(whole, dict) and all(k in whole and _contains(whole[k], v) for k, v in part.items())
    if isinstance(part, list):
        return isinstance(whole, list) and len(whole) == len(part) and all(map(_contains, whole, part))
    return bool(whole == part)


def test_a_file_of_an_older_writer_round_trips_with_every_key_it_had() -> None:
    raw = json.loads((REPO / "sample_traces" / "oversubscribed" / "run.json").read_text())
    again = json.loads(encode_run_info(decode_run_info(json.dumps(raw).encode())))
    assert _contains(again, raw)
    assert again["window"]["loader_id"] is None and again["loaders"][0]["framework"] is None  # new keys


def test_minimal_document_without_telemetry(tmp_path: Path) -> None:
    (tmp_path / "run.json").write_text(json.dumps({"schema_version": 1}))
    info = read_run_info(tmp_path / "run.json")
    assert info.loaders == [] and info.main_loader is None
    assert info.steps_per_s() is None and info.batch_production_ms_median() is None
