"""Run a script or module as ``python SCRIPT ARGS`` / ``python -m MODULE ARGS`` would, under a
capture session, and keep its exit status."""

from __future__ import annotations

import contextlib
import os
import runpy
import sys
import traceback
from datetime import datetime
from pathlib import Path

from tracelens.capture.options import ProfileOptions, ProfileResult
from tracelens.capture.session import CaptureSession, SessionConfig, StopRun
from tracelens.errors import UsageError


def default_run_dir(options: ProfileOptions, now: datetime | None = None) -> Path:
    """``<runs_root>/<stem>-<YYYYmmdd-HHMMSS>`` (a ``-2``, ``-3``... suffix if it exists)."""
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    base = options.runs_root / f"{options.stem}-{stamp}"
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def _resolve_run_dir(options: ProfileOptions) -> Path:
    if options.out is None:
        return default_run_dir(options)
    out = options.out
    if out.exists() and any(out.iterdir()) and not options.force:
        raise UsageError(
            f"{out}: run directory exists and is not empty; pass --force to overwrite it"
        )
    return out


def _print_script_traceback(exc: BaseException) -> None:
    """Print the traceback as Python would, without the frames of tracelens and runpy."""
    tb = exc.__traceback__
    while tb is not None and _is_internal(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb)


def _is_internal(filename: str) -> bool:
    here = str(Path(__file__).resolve().parent)
    return (
        filename.startswith(here)
        or Path(filename).name == "runpy.py"
        or filename.startswith("<frozen runpy")
    )


def _exit_status_of(code: object) -> int:
    """Status of ``sys.exit(code)`` the way the interpreter computes it."""
    if code is None:
        return 0
    if isinstance(code, bool):
        return int(code)
    if isinstance(code, int):
        return code & 0xFF if code >= 0 else code % 256
    print(code, file=sys.stderr)
    return 1


def run_profile(options: ProfileOptions) -> ProfileResult:
    """Run ``options.target`` under the profiler and write its run directory.

    Returns once the script has finished, been stopped after the window, failed, or been
    interrupted; the script's own exit status is in the result (0, ``sys.exit(n)`` → n,
    exception → 1 with its traceback printed to stderr, Ctrl-C → 130).
    """
    if options.module:
        target_path: Path | None = None
    else:
        target_path = Path(options.target)
        if not target_path.is_file():
            raise UsageError(f"{options.target}: no such script")
    run_dir = _resolve_run_dir(options)
    command = {
        "kind": "module" if options.module else "script",
        "target": options.target,
        "argv": [options.target, *options.args],
        "cwd": os.getcwd(),
        "loader_overrides": {k: _jsonable(v) for k, v in options.loader_overrides.items()},
    }
    session = CaptureSession(
        SessionConfig(
            run_dir=run_dir,
            command=command,
            wait=options.wait,
            warmup=options.warmup,
            active=options.active,
            stop_after_window=not options.run_to_completion,
            tensorboard_dir=options.tensorboard_dir,
            no_report=options.no_report,
            telemetry_interval_ms=options.telemetry_interval_ms,
            loader_overrides=dict(options.loader_overrides),
            record_shapes=options.record_shapes,
            with_stack=options.with_stack,
            profile_memory=options.profile_memory,
        )
    )
    saved_argv, saved_path = sys.argv[:], sys.path[:]
    saved_main = sys.modules.get("__main__")
    status, reason, error = 0, "finished", None
    session.start()
    try:
        if options.module:
            sys.argv = [options.target, *options.args]
            sys.path[0:1] = [os.getcwd()]
            runpy.run_module(options.target, run_name="__main__", alter_sys=True)
        else:
            assert target_path is not None
            sys.argv = [options.target, *options.args]
            script_dir = str(target_path.resolve().parent)
            if sys.path:
                sys.path[0] = script_dir
            else:
                sys.path.append(script_dir)
            runpy.run_path(options.target, run_name="__main__")
    except StopRun:
        reason = "window_captured"
    except SystemExit as exc:
        status = _exit_status_of(exc.code)
        reason = "finished" if status == 0 else "exited"
        if status != 0:
            error = f"SystemExit: {exc.code!r}"
    except KeyboardInterrupt:
        status, reason, error = 130, "interrupted", "KeyboardInterrupt"
        print("KeyboardInterrupt", file=sys.stderr)
    except BaseException as exc:
        status, reason = 1, "error"
        error = f"{type(exc).__name__}: {exc}"
        _print_script_traceback(exc)
    finally:
        sys.argv = saved_argv
        sys.path[:] = saved_path
        if saved_main is not None:
            sys.modules["__main__"] = saved_main
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
    return session.finish(status, reason, error, shutdown_workers=True)


def _jsonable(value: object) -> object:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(value)
