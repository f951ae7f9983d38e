"""The ``tracelens`` command: a thin typer layer over the public API.

One module per command (``analyze``, ``profile``, ``report``, ``annotate``, ``sweep``, ``compare``, ``rules``),
registered from the explicit list below; :func:`main` is the one error boundary that turns a
:class:`~tracelens.errors.TracelensError` or a usage error into one line and an exit code.
"""

from __future__ import annotations

import sys
import traceback
from typing import Annotated

import typer

from tracelens._version import __version__
from tracelens.cli import analyze, annotate, compare, profile, report, rules, sweep
from tracelens.errors import TracelensError
from tracelens.render.format import visible

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


def main() -> None:
    """Console entry point: one error boundary turns TracelensError into its exit code."""
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
        typer.echo("tracelens: interrupted", err=True)
        sys.exit(130)
    except _USAGE_ERROR as exc:  # unknown option, missing argument, a value of the wrong type
        exc.show()  # type: ignore[attr-defined]
        sys.exit(getattr(exc, "exit_code", 2))
    except Exception as exc:  # anything unexpected
        if _state["debug"]:
            traceback.print_exc()
        else:
            typer.echo(f"tracelens: internal error: {type(exc).__name__}: {visible(exc)} "
                       "(run with --debug for the traceback)", err=True)
        sys.exit(1)
