"""The terminal summary: same verdict and change as the report, colour only where wanted."""

from __future__ import annotations

import io
from pathlib import Path

import msgspec
import pytest
from msgspec.structs import replace

from tests.builders import TraceBuilder, finding
from tracelens.api import analyze_path
from tracelens.document.schema import Document, Finding
from tracelens.render.terminal import format_summary, print_summary, use_color


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _doc(tmp_path: Path, iterator: str = "_SingleProcessDataLoaderIter") -> Document:
    b = TraceBuilder(device_names=("H100",))
    for i in range(4):
        b.step(i, i * 100_000, 100_000).next_call(i * 100_000, 30_000, iterator).kernel(i * 100_000 + 30_100, 60_000)
    doc = analyze_path(b.write(tmp_path / "t.json")).document
    assert isinstance(doc, Document)
    return doc


def test_summary_holds_verdict_numbers_and_the_change(tmp_path: Path) -> None:
    text = format_summary(_doc(tmp_path))
    assert "Input-bound" in text and "1.43× faster" in text
    assert "exposed 30.0 %" in text
    assert "loader = DataLoader(" in text or "keep the DataLoader settings" in text
    assert "\x1b[" not in text


def test_no_color_wins_over_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_color(_Tty())
    monkeypatch.delenv("NO_COLOR")
    assert use_color(_Tty())
    assert not use_color(io.StringIO())
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert use_color(io.StringIO())


def test_colour_codes_only_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("FORCE_COLOR", "1")
    out = io.StringIO()
    print_summary(_doc(tmp_path), out)
    assert "\x1b[1;31m" in out.getvalue()


def test_control_characters_from_the_trace_are_shown_escaped(tmp_path: Path) -> None:
    # GIVEN a DataLoader iterator name with an escape sequence that would clear the screen
    evil = finding("TL1", "high", title="evil \x1b[2J name", advice="do \x07 this.")
    doc = replace(_doc(tmp_path), findings=[msgspec.convert(evil, Finding)])
    text = format_summary(doc)
    assert "\x1b" not in text and "\x07" not in text and "evil \\x1b[2J name" in text


def test_multi_rank_summary_marks_the_slowest(tmp_path: Path) -> None:
    d = tmp_path / "ranks"
    d.mkdir()
    for rank, wait in ((0, 10_000), (1, 30_000)):
        b = TraceBuilder(rank=rank)
        for i in range(3):
            b.step(i, i * 100_000, 100_000).next_call(i * 100_000, wait).kernel(i * 100_000 + wait + 10, 50_000)
        b.write(d / f"rank{rank}.json")
    text = format_summary(analyze_path(d, jobs=1).document)
    assert "<- slowest" in text and "Slowest rank 1" in text


def test_non_utf8_stream_gets_a_readable_fallback(tmp_path: Path) -> None:
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii")
    print_summary(_doc(tmp_path), stream)
    stream.flush()
    assert b"faster" in raw.getvalue()


def test_thread_advice_environment_and_expected_gain_are_printed(tmp_path: Path) -> None:
    # GIVEN a recommendation with thread and environment advice, and one that keeps num_workers
    doc = _doc(tmp_path)
    doc = replace(doc, diagnosis="oversubscription", recommendation=replace(
        doc.recommendation, torch_threads_per_worker=1, torch_threads_main=1, expected_speedup=2.0,
        expected_speedup_bound=2.5, env={"OMP_NUM_THREADS": "1"}, keep_current=[],
        measure_with="tracelens sweep --num-workers 2,4 train.py"))
    text = format_summary(doc)
    assert "torch.set_num_threads(1)  # main process" in text and "worker_init_fn=" in text
    assert "+ export OMP_NUM_THREADS=1" in text and "up to 2.00× faster (estimate, at most 2.50×)" in text
    assert "measure the gain on this machine: tracelens sweep --num-workers 2,4 train.py" in text
    doc = replace(doc, loader=replace(doc.loader, num_workers=None, pin_memory=None, persistent_workers=None,
                                      prefetch_factor=None),
                  recommendation=replace(doc.recommendation, torch_threads_per_worker=None, torch_threads_main=None,
                                         env={}, keep_current=["num_workers"], num_workers=1, pin_memory=False,
                                         persistent_workers=False, prefetch_factor=None))
    assert "keep the DataLoader settings as they are (the trace does not show num_workers)" in format_summary(doc)


def test_a_hugging_face_trainer_user_sees_the_training_arguments_to_change(tmp_path: Path) -> None:
    # GIVEN the loader was built by transformers' Trainer (run.json says so)
    doc = _doc(tmp_path)
    doc = replace(doc, loader=replace(doc.loader, framework="transformers",
                                      created_at="transformers/trainer.py:1 in get_train_dataloader"))
    text = format_summary(doc)
    # THEN the knob they change comes first, the DataLoader diff beside it
    assert "Hugging Face Trainer" in text and "TrainingArguments(" in text
    assert f"+     dataloader_num_workers={doc.recommendation.num_workers}," in text
    assert text.index("TrainingArguments(") < text.index("loader = DataLoader(")


def test_a_lightning_user_is_told_where_the_loader_call_is(tmp_path: Path) -> None:
    doc = _doc(tmp_path)
    doc = replace(doc, loader=replace(doc.loader, framework="lightning", created_at="train.py:42 in train_dataloader"))
    text = format_summary(doc)
    assert "LightningDataModule.train_dataloader" in text and "train.py:42 in train_dataloader" in text
