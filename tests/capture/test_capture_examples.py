"""The framework examples under ``tracelens profile`` (real runs, small flags): the training
loader is windowed and named, whoever builds it, and short epochs show their respawns."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from tracelens.api import write_run_outputs  # noqa: E402
from tracelens.capture import ProfileOptions, ProfileResult, run_profile  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.slow]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _profile(tmp_path: Path, example: str, *args: str, **kw: Any) -> tuple[ProfileResult, dict[str, Any], dict[str, Any]]:
    result = run_profile(ProfileOptions(target=str(EXAMPLES / example), args=args, out=tmp_path / "run", **kw),
                         write_run_outputs)
    assert result.analysis_path is not None, result.notes
    run = json.loads(result.run_json_path.read_text())
    return result, run, json.loads(result.analysis_path.read_text())


def test_lightning_windows_the_training_loader_not_the_sanity_check(tmp_path: Path) -> None:
    pytest.importorskip("lightning")
    # GIVEN Lightning's Trainer: a 2-batch sanity check on the validation loader, then training
    result, run, doc = _profile(tmp_path, "lightning_train.py", "--epochs", "1", "--train-samples", "384",
                                "--val-samples", "64", "--blur-passes", "2", active=10)
    train = next(lo for lo in run["loaders"] if "train_dataloader" in (lo["created_at"] or ""))
    val = next(lo for lo in run["loaders"] if "val_dataloader" in (lo["created_at"] or ""))
    # THEN the window holds 10 steps of the training loader, sized by it (not shrunk)
    assert run["window"]["loader_id"] == train["id"] and result.steps_captured == 10
    assert run["schedule"]["active"] == 10 and run["schedule"]["adapted"] is False
    assert (train["training"], val["training"]) == (True, False)
    assert train["framework"] == val["framework"] == "lightning"
    assert "lightning_train.py:" in train["created_at"]
    # AND analysis.json names the loader it analyzed
    assert doc["loader"]["id"] == train["id"] and doc["loader"]["dataset_len"] == 384
    assert doc["loader"]["batches_per_epoch"] == 24 and doc["loader"]["training"] is True


def test_hugging_face_trainer_windows_accelerate_s_loader_and_names_the_trainer(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    result, run, doc = _profile(tmp_path, "hf_trainer.py", "--steps", "20", "--samples", "512",
                                "--words", "64", active=8)
    # GIVEN the Trainer's own loader (never iterated) and accelerate's re-built one
    assert len(run["loaders"]) == 2
    never, iterated = run["loaders"]
    # THEN the iterated one is windowed; both are the Trainer's, built from the script's main()
    assert run["window"]["loader_id"] == iterated["id"] and result.steps_captured == 8
    assert (never["batches_drawn"], never["training"], iterated["training"]) == (0, None, True)
    assert never["framework"] == iterated["framework"] == "transformers"
    assert "hf_trainer.py:" in iterated["created_at"] and iterated["created_at"].endswith("in main")
    assert doc["loader"]["id"] == iterated["id"] and doc["loader"]["framework"] == "transformers"


def test_an_iterable_stream_is_windowed_with_its_workers(tmp_path: Path) -> None:
    result, run, doc = _profile(tmp_path, "iterable_stream.py", "--shards", "4", "--per-shard", "160",
                                "--latency-ms", "0.05", "--cpu-ms", "0.02", "--num-workers", "2", active=12)
    (lo,) = run["loaders"]
    assert run["window"]["loader_id"] == 0 and result.steps_captured == 12
    assert lo["dataset_kind"] == "iterable" and lo["batches_per_epoch"] is None and lo["training"] is True
    assert lo["framework"] is None and "_common.py:" in lo["created_at"]
    assert doc["steps"] == 12


def test_short_epochs_with_fresh_workers_report_the_respawn_not_healthy(tmp_path: Path) -> None:
    # GIVEN 4 batches per epoch, workers restarted every epoch (each opens its index: 60 ms)
    result, run, doc = _profile(tmp_path, "short_epoch_respawn.py", "--epochs", "9", "--open-ms", "60",
                                "--init-ms", "20")
    # THEN the default window (20 steps) spans epochs instead of shrinking to one
    assert run["schedule"]["active"] == 20 and result.steps_captured == 20
    assert run["loaders"][0]["iterators_created"] >= 6
    # AND the respawn is found and fixed: persistent workers, never "healthy"
    assert doc["diagnosis"] != "healthy"
    respawn = next(f for f in doc["findings"] if f["kind"] == "worker_respawn")
    assert respawn["severity"] == "high"
    assert doc["recommendation"]["persistent_workers"] is True
