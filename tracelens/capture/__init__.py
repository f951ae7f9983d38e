"""Capture: run a training script under ``torch.profiler`` with no code change.

The only part of tracelens that imports torch, and only when a run starts (importing this
package does not import torch).

- ``run_profile(ProfileOptions(...), analyze) -> ProfileResult``: what ``tracelens profile``
  calls (``parent/``: the torch-free process that claims, supervises and launches).
- ``profile(...)``: ``with tracelens.profile() as session:`` inside one's own script
  (``script/inline.py``).

Both record only; ``analyze`` is the caller's analysis step (the CLI and ``tracelens.profile``
pass ``tracelens.api.write_run_outputs``), so capture imports nothing above itself. The folders
follow where the code runs, lowest first: ``options``, ``destination`` (torch-free); ``machine/``
(what is read from the machine); ``dataloader/`` (the patches and loader bookkeeping, in the
script's process and its workers); ``recorded/`` (run.json, how the run ended, TensorBoard);
``script/`` (the script's process: the session and its entry points); ``parent/`` (the
``tracelens profile`` process).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tracelens.capture.options import Analyze, JobResult, ProfileOptions, ProfileResult

if TYPE_CHECKING:
    from tracelens.capture.parent.profile import run_profile
    from tracelens.capture.script.inline import ProfileSession, profile

__all__ = ["Analyze", "JobResult", "ProfileOptions", "ProfileResult", "ProfileSession", "profile", "run_profile"]


def __getattr__(name: str) -> Any:
    if name == "run_profile":
        from tracelens.capture.parent.profile import run_profile

        return run_profile
    if name in ("profile", "ProfileSession"):
        from tracelens.capture.script import inline as api

        return getattr(api, name)
    raise AttributeError(name)
