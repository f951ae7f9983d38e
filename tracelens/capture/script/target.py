"""Run a script or module as ``python SCRIPT ARGS`` / ``python -m MODULE ARGS`` would.

One function, :func:`run_target`, shared by ``tracelens profile`` (capture.script.child) and the
timing-only sweep trials (capture.measure): same ``sys.argv``, ``__main__`` and ``sys.path[0]``
as the interpreter gives the script, its exit status kept, and the interpreter's state
(argv, path, ``__main__``) restored afterwards.
"""

from __future__ import annotations

import contextlib
import os
import runpy
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path


class StopRun(BaseException):
    """Raised from ``DataLoader.__next__`` to stop the script once the window is captured.

    A ``BaseException`` so that the script's own ``except Exception`` does not swallow it.
    """

#: Stop reasons :func:`run_target` returns (``stopped`` is the caller's, see ``stop_reason``).
REASONS = ("finished", "exited", "interrupted", "error")


def exit_status_of(code: object) -> int:
    """Status of ``sys.exit(code)`` the way the interpreter computes it (a non-integer code is
    printed to stderr and gives 1)."""
    if code is None:
        return 0
    if isinstance(code, bool):
        return int(code)
    if isinstance(code, int):
        return code & 0xFF if code >= 0 else code % 256
    print(code, file=sys.stderr)
    return 1


def _is_internal(filename: str) -> bool:
    here = str(Path(__file__).resolve().parent)
    return (
        filename.startswith(here)
        or Path(filename).name == "runpy.py"
        or filename.startswith("<frozen runpy")
    )


def print_script_traceback(exc: BaseException) -> None:
    """Print the traceback as Python would, without the frames of tracelens and runpy."""
    tb = exc.__traceback__
    while tb is not None and _is_internal(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb)


def run_target(
    target: str, args: Sequence[str], module: bool, *, stop_reason: str = "stopped"
) -> tuple[int, str, str | None]:
    """Run ``target`` with ``args`` as the interpreter would; return (status, reason, error).

    - status: 0 when it returns, ``sys.exit(n)`` → n, an exception → 1 (its traceback printed
      to stderr without tracelens' frames), Ctrl-C → 130;
    - reason: ``finished``, ``exited`` (non-zero ``sys.exit``), ``interrupted``, ``error``, or
      ``stop_reason`` when a capture session stopped the script (:class:`StopRun`);
    - error: ``"Type: message"`` of what ended it abnormally, else None.

    ``sys.argv`` is ``[target, *args]``; ``sys.path[0]`` is the script's directory (the current
    directory for a module); both and ``sys.modules['__main__']`` are restored afterwards, and
    stdout/stderr are flushed so the script's output precedes what the caller prints next.
    """
    saved_argv, saved_path = sys.argv[:], sys.path[:]
    saved_main = sys.modules.get("__main__")
    status, reason, error = 0, "finished", None
    try:
        sys.argv = [target, *args]
        if module:
            sys.path[0:1] = [os.getcwd()]
            runpy.run_module(target, run_name="__main__", alter_sys=True)
        else:
            script_dir = str(Path(target).resolve().parent)
            if sys.path:
                sys.path[0] = script_dir
            else:
                sys.path.append(script_dir)
            runpy.run_path(target, run_name="__main__")
    except StopRun:
        reason = stop_reason
    except SystemExit as exc:
        status = exit_status_of(exc.code)
        reason = "finished" if status == 0 else "exited"
        if status != 0:
            error = f"SystemExit: {exc.code!r}"
    except KeyboardInterrupt:
        status, reason, error = 130, "interrupted", "KeyboardInterrupt"
        print("KeyboardInterrupt", file=sys.stderr)
    except BaseException as exc:
        status, reason = 1, "error"
        error = f"{type(exc).__name__}: {exc}"
        print_script_traceback(exc)
    finally:
        sys.argv = saved_argv
        sys.path[:] = saved_path
        if saved_main is not None:
            sys.modules["__main__"] = saved_main
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
    return status, reason, error
