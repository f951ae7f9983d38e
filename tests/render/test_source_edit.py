"""The recommendation as an edit of the user's own code: the call read with ast, the user's
arguments kept, only the recommended settings changed, a diff ``git apply`` accepts."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tracelens.document.schema import Document
from tracelens.render.source_edit import edit_call, parse_created_at, source_edit

SCRIPT = '''import torch
from torch.utils.data import DataLoader


def pad_batch(batch):
    return batch


def main():
    reviews = ReviewDataset("reviews.csv")
    loader = DataLoader(
        reviews,
        batch_size=64,
        shuffle=True,
        drop_last=True,
        collate_fn=pad_batch,
        num_workers=0,
    )
    for batch in loader:
        step(batch)
'''
REC = {"num_workers": 4, "pin_memory": False, "persistent_workers": True, "prefetch_factor": None}


def _keywords(source: str) -> dict[str, str]:
    call = next(n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "DataLoader")
    assert [ast.unparse(a) for a in call.args] == ["reviews"]
    return {str(k.arg): ast.unparse(k.value) for k in call.keywords}


def _git_apply(tmp_path: Path, name: str, source: str, diff: str, *, check_only: bool = False) -> str:
    """Apply ``diff`` to ``name`` (holding ``source``) in a fresh git repository; the new text."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    (repo / name).parent.mkdir(parents=True, exist_ok=True)
    (repo / name).write_text(source)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    patch = tmp_path / "change.patch"
    patch.write_text(f"# {name}:11: the DataLoader(...) call\n{diff}")
    subprocess.run(["git", "apply", "--check", str(patch)], cwd=repo, check=True, capture_output=True)
    if not check_only:
        subprocess.run(["git", "apply", str(patch)], cwd=repo, check=True, capture_output=True)
    return (repo / name).read_text()


def test_the_edit_keeps_every_argument_the_user_wrote(tmp_path: Path) -> None:
    # GIVEN a call with shuffle, drop_last, collate_fn and a dataset variable of its own name
    edit = edit_call(SCRIPT, "train.py", 11, REC, {"num_workers": 0})
    # THEN only the recommended settings change, the rest is as written, and git applies it
    assert edit.problem is None and edit.where == "train.py:11"
    assert edit.diff.startswith("--- a/train.py\n+++ b/train.py\n@@ -")
    after = _git_apply(tmp_path, "train.py", SCRIPT, edit.diff)
    assert _keywords(after) == {"batch_size": "64", "shuffle": "True", "drop_last": "True",
                                "collate_fn": "pad_batch", "num_workers": "4", "persistent_workers": "True"}
    assert "pin_memory" not in after  # the default it already gets: not added
    removed = [ln for ln in edit.diff.splitlines() if ln.startswith("-") and not ln.startswith("---")]
    assert removed == ["-        num_workers=0,"]
    assert edit.call.startswith("loader = DataLoader(\n    reviews,\n") and "collate_fn=pad_batch" in edit.call


def test_a_one_line_call_gets_its_new_arguments_on_the_line(tmp_path: Path) -> None:
    src = "from torch.utils.data import DataLoader\nloader = DataLoader(ds, shuffle=True, num_workers=8, prefetch_factor=4)\n"
    rec = {"num_workers": 0, "pin_memory": True, "persistent_workers": False, "prefetch_factor": None}
    edit = edit_call(src, "t.py", 2, rec, {})
    after = _git_apply(tmp_path, "t.py", src, edit.diff)
    # prefetch_factor goes: DataLoader refuses it without workers
    assert after.splitlines()[1] == "loader = DataLoader(ds, shuffle=True, num_workers=0, pin_memory=True)"


def test_thread_advice_adds_a_module_level_worker_init_fn(tmp_path: Path) -> None:
    rec = {"num_workers": 2, "pin_memory": False, "persistent_workers": False, "prefetch_factor": None,
           "torch_threads_per_worker": 1, "torch_threads_main": 1}
    edit = edit_call(SCRIPT, "train.py", 11, rec, {})
    after = _git_apply(tmp_path, "train.py", SCRIPT, edit.diff)
    tree = ast.parse(after)
    assert any(isinstance(s, ast.FunctionDef) and s.name == "set_worker_threads" for s in tree.body)
    assert _keywords(after)["worker_init_fn"] == "set_worker_threads"
    assert "    torch.set_num_threads(1)  # the main process\n    loader = DataLoader(" in after


def test_settings_passed_through_a_splat_are_left_to_the_user() -> None:
    src = "from torch.utils.data import DataLoader\n\ndef make(ds, kw):\n    return DataLoader(ds, **kw)\n"
    edit = edit_call(src, "m.py", 4, REC, {"num_workers": 0})
    assert edit.diff == "" and edit.unresolved == ["num_workers=4 (the call passes **kw: set it there)",
                                                   "persistent_workers=True (the call passes **kw: set it there)"]


def test_the_function_finds_a_call_that_moved_since_the_run() -> None:
    # the run said line 20 in make_loader; the file has it at line 4 now
    src = "from torch.utils.data import DataLoader\n\ndef make_loader(ds):\n    return DataLoader(ds, num_workers=0)\n"
    edit = edit_call(src, "m.py", 20, REC, {}, function="make_loader")
    assert edit.where == "m.py:4" and "+    return DataLoader(ds, num_workers=4, persistent_workers=True)" in edit.diff
    assert parse_created_at("a/b.py:12 in make_loader") == ("a/b.py", 12, "make_loader")


def test_training_arguments_are_edited_for_hugging_face(tmp_path: Path) -> None:
    src = ("from transformers import TrainingArguments\n\nargs = TrainingArguments(\n    output_dir='out',\n"
           "    dataloader_num_workers=0,\n)\ntrainer.train()\n")
    (tmp_path / "t.py").write_text(src)
    edit = source_edit("t.py:7 in <module>", str(tmp_path), REC, {}, "transformers")
    assert edit is not None
    after = _git_apply(tmp_path, "t.py", src, edit.diff)
    # Trainer pins memory by default: the recommended False is written out
    assert ("    dataloader_num_workers=4,\n    dataloader_pin_memory=False,\n"
            "    dataloader_persistent_workers=True,\n)") in after
    assert edit.target == "TrainingArguments"


def test_unreadable_source_is_said_not_guessed(tmp_path: Path) -> None:
    edit = source_edit("gone.py:3 in main", str(tmp_path), REC, {})
    assert edit is not None and edit.problem is not None and edit.problem.startswith("gone.py cannot be read here")
    assert edit.diff == ""
    assert source_edit(None, str(tmp_path), REC, {}) is None


def _run_with_source(tmp_path: Path) -> Path:
    """The sleep_1ms_loader run, its loader built at line 11 of a script in ``tmp_path``."""
    run_dir = tmp_path / "run"
    shutil.copytree(REPO / "sample_traces" / "sleep_1ms_loader", run_dir)
    (tmp_path / "train.py").write_text(SCRIPT)
    run = json.loads((run_dir / "run.json").read_text())
    run["command"]["cwd"] = str(tmp_path)
    run["loaders"][0]["created_at"] = "train.py:11 in main"
    (run_dir / "run.json").write_text(json.dumps(run))
    return run_dir


def test_report_and_terminal_show_the_edit_of_the_users_file(tmp_path: Path) -> None:
    from tracelens.api import analyze_path
    from tracelens.render.report import build_view, render_report
    from tracelens.render.terminal import format_summary
    from tracelens.render.wording import run_cwd

    result = analyze_path(_run_with_source(tmp_path))
    rec: dict[str, Any] = build_view(result)["recommendation"]
    assert isinstance(result.document, Document)
    n = result.document.recommendation.num_workers
    # THEN the copy button copies the user's own statement, edited
    assert rec["code"].startswith("loader = DataLoader(\n    reviews,") and f"num_workers={n}," in rec["code"]
    assert "shuffle=True" in rec["code"] and "collate_fn=pad_batch" in rec["code"]
    assert rec["source"]["patch"].startswith("# train.py:11: the DataLoader(...) call\n--- a/train.py")
    assert 'data-copy="fix-patch"' in render_report(result)
    _git_apply(tmp_path, "train.py", SCRIPT, rec["source"]["patch"].split("\n", 1)[1], check_only=True)
    text = format_summary(result.document, cwd=run_cwd(result))
    assert "edit the DataLoader(...) call at train.py:11:" in text and f"+         num_workers={n}," in text
    # AND without the file, the report says so and shows the settings
    (tmp_path / "train.py").unlink()
    view = build_view(analyze_path(tmp_path / "run"))
    assert "cannot be read here" in view["recommendation"]["source"]["problem"]
    assert any(ln["text"].strip() == f"num_workers={n}," for ln in view["recommendation"]["diff"])


def test_a_datamodules_train_loader_is_edited_not_its_val_loader(tmp_path: Path) -> None:
    # GIVEN a Lightning DataModule whose val loader sits where the run's line now points
    src = '''import lightning as L
from torch.utils.data import DataLoader


class Patches(L.LightningDataModule):
    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=32, shuffle=True, num_workers=0)

    def val_dataloader(self):
        return DataLoader(self.val_set, batch_size=32, num_workers=0)
'''
    (tmp_path / "dm.py").write_text(src)
    edit = source_edit("dm.py:10 in train_dataloader", str(tmp_path), REC, {}, "lightning")
    assert edit is not None and edit.where == "dm.py:7"
    after = _git_apply(tmp_path, "dm.py", src, edit.diff)
    assert "DataLoader(self.train_set, batch_size=32, shuffle=True, num_workers=4, persistent_workers=True)" in after
    assert "DataLoader(self.val_set, batch_size=32, num_workers=0)" in after
