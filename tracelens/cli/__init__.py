"""The ``tracelens`` command: a thin typer layer over the public API.

One module per command (``analyze``, ``profile``, ``report``, ``annotate``, ``sweep``, ``compare``, ``rules``),
registered from the explicit list below; :func:`main` is the one error boundary that turns a
:class:`~tracelens.errors.TracelensError`, a usage error, an OS error (the path and the
system's reason) or a signal (Ctrl-C: 130, SIGTERM: 143) into one line and an exit code.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import traceback
import warnings
from types import FrameType
from typing import Annotated

import typer

from tracelens._version import __version__
from tracelens.cli import analyze, annotate, compare, profile, report, rules, sweep
from tracelens.errors import TracelensError
from tracelens.render.format import visible
from tracelens.system.atomic import describe_os_error
from tracelens.system.procs import Terminated

app = typer.Typer(
    name="tracelens",
    help=(
        "Find out why a PyTorch training run's GPU waits for data, and which DataLoader "
        "settings fix it.\n\nAnalyze a saved torch.profiler trace with `tracelens analyze "
        "TRACE`; profile an unmodified script with `tracelens profile train.py ARGS`."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

_state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tracelens {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = None,
) -> None:
    _state["debug"] = debug


#: Every command, in the order ``--help`` lists them.
COMMANDS = (analyze, profile, report, annotate, sweep, compare, rules)
for _command in COMMANDS:
    _command.register(app)

#: Usage errors (typer's vendored click, or click itself with older typer) share this base.
_USAGE_ERROR: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def _say(line: str) -> None:
    """Print one line on stderr, even when stderr is gone (a closed terminal)."""
    with contextlib.suppress(Exception):
        typer.echo(line, err=True)


def _quiet_shutdown() -> None:
    """After a signal, objects cut short (an event loop of Dask's client, a coroutine never
    awaited) may complain while the interpreter exits ("Exception ignored in ..." with a
    traceback, RuntimeWarnings): the one line is said."""
    sys.unraisablehook = lambda unraisable: None
    warnings.simplefilter("ignore")


def _sigterm_raises_terminated() -> None:
    """SIGTERM to this process raises :class:`Terminated` (cleanup runs, then exit 143); a
    process forked from it (a pool worker) still dies by the signal at once."""
    me = os.getpid()

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if os.getpid() != me:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise Terminated(f"terminated by {signal.Signals(signum).name}", 128 + signum)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_sigterm)


def main() -> None:
    """Console entry point: one error boundary turns errors and signals into one line and an
    exit code."""
    _sigterm_raises_terminated()
    try:
        rc = app(standalone_mode=False)
        # Without standalone mode click returns typer.Exit's code instead of exiting.
        sys.exit(rc if isinstance(rc, int) else 0)
    except TracelensError as exc:
        if _state["debug"]:
            traceback.print_exc()
        typer.echo(f"tracelens: error: {visible(exc)}", err=True)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("tracelens: aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        _say("tracelens: interrupted")
        _quiet_shutdown()
        sys.exit(130)
    except Terminated as exc:  # SIGTERM during work that had to clean up first
        _say(f"tracelens: {visible(exc.args[0])}")
        _quiet_shutdown()
        sys.exit(int(exc.args[1]))
    except _USAGE_ERROR as exc:  # unknown option, missing argument, a value of the wrong type
        exc.show()  # type: ignore[attr-defined]
        sys.exit(getattr(exc, "exit_code", 2))
    except OSError as exc:  # a path tracelens reads or writes: name it and the system's reason
        if _state["debug"]:
            traceback.print_exc()
        typer.echo(f"tracelens: error: {visible(describe_os_error(exc))}", err=True)
        sys.exit(1)
    except Exception as exc:  # anything unexpected
        if _state["debug"]:
            traceback.print_exc()
        else:
            typer.echo(f"tracelens: internal error: {type(exc).__name__}: {visible(exc)} "
                       "(run with --debug for the traceback)", err=True)
        sys.exit(1)
