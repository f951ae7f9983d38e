"""The ``tracelens`` command: a thin typer layer over the public API."""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from tracelens import __version__
from tracelens.errors import TracelensError

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

SEVERITIES = ("info", "low", "medium", "high")
PROGRESS_MIN_BYTES = 64 << 20  # files smaller than this load too fast to need a progress line


def _progress_printer(path: Path) -> Callable[[int, int], None] | None:
    """A one-line progress display on stderr, for big files and an interactive terminal."""
    if not sys.stderr.isatty() or not path.is_file() or path.stat().st_size < PROGRESS_MIN_BYTES:
        return None
    name = path.name

    def show(done: int, total: int) -> None:
        end = "\n" if done >= total else ""
        sys.stderr.write(f"\rreading {name}: {100 * done // max(total, 1):3d} % "
                         f"({done / 1e6:,.0f} of {total / 1e6:,.0f} MB){end}")
        sys.stderr.flush()

    return show


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


@app.command()
def analyze(
    path: Annotated[str, typer.Argument(help="A trace (.json / .json.gz), a run directory, or a directory of traces (ranks, TensorBoard logdir); also an fsspec URL of one (s3://, gs://, https://).", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON document (SPEC §3) instead of the summary.")] = False,
    html: Annotated[Path | None, typer.Option("--html", help="Also write the HTML report to this file.")] = None,
    fail_on: Annotated[str | None, typer.Option("--fail-on", help="Exit 3 when a finding of this severity or worse is present: high, medium, low, info.")] = None,
    jobs: Annotated[int | None, typer.Option("--jobs", "-j", help="Processes for several ranks (default: one per core).")] = None,
    scheduler: Annotated[str | None, typer.Option("--scheduler", envvar="TRACELENS_SCHEDULER", help="Analyze the ranks on the Dask cluster at this address (tcp://host:8786); needs tracelens-dataloader[cluster].")] = None,
) -> None:
    """Measure DataLoader wait against GPU activity in a trace and diagnose it."""
    from tracelens.api import analyze_path
    from tracelens.render_terminal import print_summary

    if fail_on is not None and fail_on not in SEVERITIES:
        raise TracelensError(f"--fail-on must be one of {', '.join(SEVERITIES)}, not {fail_on!r}", exit_code=2)
    # Ranks analyzed by tracelens.jobs (--scheduler or a URL): only their documents come back.
    from tracelens.storage import is_url

    distributed = bool(scheduler) or is_url(path)
    if distributed and html is not None:
        raise TracelensError("--html needs the full analyses, which stay on the workers with --scheduler or a URL", exit_code=2)
    if distributed:
        from tracelens.jobs import rank_progress_printer

        result = analyze_path(path, jobs=jobs, scheduler=scheduler, on_ranks=rank_progress_printer())
    else:
        result = analyze_path(Path(path), jobs=jobs, progress=_progress_printer(Path(path)))
    if as_json:
        sys.stdout.write(json.dumps(result.document, indent=2) + "\n")
    else:
        print_summary(result.document)
    if html is not None:
        from tracelens.report import write_report

        write_report(result, html)
        if not as_json:
            typer.echo(f"report: {html}")
    if distributed:
        from tracelens.jobs import failure_lines

        failed = failure_lines(result.document)
        for line in failed:
            typer.echo(f"tracelens: error: {line}", err=True)
        if failed:
            raise typer.Exit(1)
    if fail_on is not None:
        floor = SEVERITIES.index(fail_on)
        docs = [result.document, *result.document.get("ranks", [])]
        if any(SEVERITIES.index(f["severity"]) >= floor for d in docs for f in d.get("findings", [])):
            raise typer.Exit(3)


# Commands that live in their own modules register themselves on ``app``.
_COMMAND_MODULES = ("cli_profile", "cli_report", "cli_sweep", "cli_compare", "cli_rules")


def _register_commands() -> None:
    import importlib
    import importlib.util

    for name in _COMMAND_MODULES:
        if importlib.util.find_spec(f"tracelens.{name}") is not None:
            importlib.import_module(f"tracelens.{name}").register(app)


_register_commands()


def main() -> None:
    """Console entry point: one error boundary turns TracelensError into its exit code."""
    try:
        rc = app(standalone_mode=False)
        # Without standalone mode click returns typer.Exit's code instead of exiting.
        sys.exit(rc if isinstance(rc, int) else 0)
    except TracelensError as exc:
        if _state["debug"]:
            traceback.print_exc()
        typer.echo(f"tracelens: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("tracelens: aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        typer.echo("tracelens: interrupted", err=True)
        sys.exit(130)
    except (typer.BadParameter, Exception) as exc:  # click usage errors and anything unexpected
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if _state["debug"]:
            traceback.print_exc()
        else:
            typer.echo(f"tracelens: internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)", err=True)
        sys.exit(1)
