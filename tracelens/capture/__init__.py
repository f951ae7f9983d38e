"""Capture: run a training script under ``torch.profiler`` with no code change.

The only part of tracelens that imports torch, and only when a run starts (importing this
package does not import torch).

- ``run_profile(ProfileOptions(...)) -> ProfileResult``: what ``tracelens profile`` calls.
- ``profile(...)``: ``with tracelens.profile() as session:`` inside one's own script.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tracelens.capture.options import ProfileOptions, ProfileResult

if TYPE_CHECKING:
    from tracelens.capture.parent.profile import run_profile
    from tracelens.capture.script.inline import ProfileSession, profile

__all__ = ["ProfileOptions", "ProfileResult", "ProfileSession", "profile", "run_profile"]


def __getattr__(name: str) -> Any:
    if name == "run_profile":
        from tracelens.capture.parent.profile import run_profile

        return run_profile
    if name in ("profile", "ProfileSession"):
        from tracelens.capture.script import inline as api

        return getattr(api, name)
    raise AttributeError(name)
