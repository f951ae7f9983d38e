"""Where a DataLoader was built and which framework built it, read off the call stack once per
loader (at construction, or at its first ``__iter__`` for a loader built before the session).

``created_at`` is ``file:line in function`` of the innermost frame that is neither torch,
tracelens, a training framework nor the standard library, preferring the script's own code to
other installed packages; when every frame is one of those, the innermost framework frame.
``framework`` is ``transformers`` when any frame belongs to transformers (its ``Trainer``, also
around accelerate's re-built loader), else ``lightning`` (``lightning``, ``pytorch_lightning``,
``lightning_fabric``), else ``accelerate``, else None (the script builds its loader itself).
"""

from __future__ import annotations

import os
import sys
import sysconfig
from types import FrameType

#: Top-level package -> framework name, and the order in which a stack's frameworks win.
FRAMEWORKS = {"transformers": "transformers", "lightning": "lightning", "pytorch_lightning": "lightning",
              "lightning_fabric": "lightning", "accelerate": "accelerate"}
FRAMEWORK_ORDER = ("transformers", "lightning", "accelerate")
#: Packages whose frames are never "where the script built it".
INTERNAL = frozenset({"torch", "tracelens"})
#: Frames walked at most (a construction is never deeper than this in practice).
MAX_FRAMES = 200


def _stdlib_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    return tuple(os.path.realpath(p) + os.sep for p in {paths["stdlib"], paths["platstdlib"]})


_STDLIB = _stdlib_dirs()


def _installed(filename: str) -> bool:
    return "site-packages" in filename or "dist-packages" in filename


def _stdlib(filename: str) -> bool:
    return (filename.startswith("<frozen") or
            (not _installed(filename) and os.path.realpath(filename).startswith(_STDLIB)))


def frame_text(frame: FrameType) -> str:
    """``file:line in function``: the path relative to the working directory when under it,
    after ``site-packages/`` for installed packages, else as the interpreter has it."""
    name = frame.f_code.co_filename
    if _installed(name):
        name = name.split("site-packages" + os.sep)[-1].split("dist-packages" + os.sep)[-1]
    else:
        try:
            rel = os.path.relpath(name)
            name = name if rel.startswith("..") else rel
        except ValueError:
            pass
    return f"{name}:{frame.f_lineno} in {frame.f_code.co_name}"


def loader_origin(frame: FrameType | None = None) -> tuple[str | None, str | None]:
    """``(created_at, framework)`` of the code calling from ``frame`` outwards (default: the
    caller; frames of tracelens and torch are skipped anyway)."""
    f: FrameType | None = frame if frame is not None else sys._getframe(1)
    own: FrameType | None = None  # innermost frame of the script's own code
    other: FrameType | None = None  # innermost frame of another installed package
    fw_frame: FrameType | None = None
    found: set[str] = set()
    for _ in range(MAX_FRAMES):
        if f is None:
            break
        top = str(f.f_globals.get("__name__") or "").partition(".")[0]
        fw = FRAMEWORKS.get(top)
        if fw is not None:
            found.add(fw)
            fw_frame = fw_frame or f
        elif top not in INTERNAL and not _stdlib(f.f_code.co_filename):
            if _installed(f.f_code.co_filename):
                other = other or f
            else:
                own = own or f
        f = f.f_back
    site = own or other or fw_frame
    framework = next((name for name in FRAMEWORK_ORDER if name in found), None)
    return (frame_text(site) if site is not None else None), framework
