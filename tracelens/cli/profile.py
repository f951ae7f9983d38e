"""``tracelens profile [OPTIONS] SCRIPT [ARGS]...``: run an unmodified script under torch.profiler."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from tracelens.cli.bounds import MAX_ACTIVE_STEPS, MAX_WAIT_BATCHES, MAX_WARMUP_STEPS
from tracelens.errors import UsageError


def profile(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(metavar="SCRIPT", help="The training script (or a module with -m); its own arguments follow it unchanged.", show_default=False)],
    module: Annotated[bool, typer.Option("-m", "--module", help="TARGET is a module, run as `python -m TARGET`.")] = False,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Run directory to write (default: tracelens-runs/<script>-<YYYYmmdd-HHMMSS>); for a torchrun job the job directory, one rank-<RANK>/ per rank.", show_default=False)] = None,
    runs_root: Annotated[Path, typer.Option("--runs-root", help="Where default run directories go.")] = Path("tracelens-runs"),
    force: Annotated[bool, typer.Option("--force", "-f", help="Replace the earlier run in --out (its tracelens files are removed first; never a directory another live run writes).")] = False,
    wait: Annotated[int | None, typer.Option("--wait", min=0, max=MAX_WAIT_BATCHES, help="Batches skipped before recording (default: chosen from the loader: worker start-up and the pre-filled queue).", show_default=False)] = None,
    warmup: Annotated[int, typer.Option("--warmup", min=0, max=MAX_WARMUP_STEPS, help="Profiler warm-up batches (recorded, then discarded).")] = 2,
    active: Annotated[int | None, typer.Option("--active", min=1, max=MAX_ACTIVE_STEPS, help="Batches recorded in the window (default 20, fewer for a short loader).", show_default=False)] = None,
    run_to_completion: Annotated[bool, typer.Option("--run-to-completion", help="Let the script finish instead of stopping it once the window is recorded.")] = False,
    tensorboard: Annotated[Path | None, typer.Option("--tensorboard", help="Also write the trace in TensorBoard's profiler layout and per-step scalars to this log directory.", show_default=False)] = None,
    no_report: Annotated[bool, typer.Option("--no-report", help="Skip analysis.json and report.html.")] = False,
    telemetry_interval_ms: Annotated[float, typer.Option("--telemetry-interval-ms", min=10.0, help="Sampling period of per-process CPU / I/O / run-queue telemetry.")] = 100.0,
    record_shapes: Annotated[bool, typer.Option("--record-shapes", help="Record operator input shapes (bigger trace).")] = False,
    with_stack: Annotated[bool, typer.Option("--with-stack", help="Record Python stacks (inflates CPU time; off by default).")] = False,
    profile_memory: Annotated[bool, typer.Option("--profile-memory", help="Record allocator events.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print analysis.json instead of the summary.")] = False,
) -> None:
    """Profile a training script as `python SCRIPT ARGS` would run it, with no code change.

    Each batch drawn from a DataLoader is one profiler step; after the warm-up batches one
    window is recorded and, unless --run-to-completion, the script is stopped. Writes a run
    directory with trace.json.gz, run.json (loader settings, machine, telemetry, how the run
    ended), analysis.json and report.html, prints the verdict, and exits with the script's own
    status. The script runs in a child process, so run.json says what happened even when it is
    killed; a directory another run is writing is refused.

    \b
    Multi-process jobs (every rank recorded into OUT/rank-<RANK>/, OUT holds the job's analysis):
      tracelens profile [OPTIONS] -- torchrun --nproc_per_node=2 train.py ARGS
      tracelens profile [OPTIONS] -- python -m torch.distributed.run ... train.py ARGS
      torchrun --nproc_per_node=2 --no-python tracelens profile [OPTIONS] train.py ARGS
    """
    try:
        from tracelens.capture import ProfileOptions, run_profile
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise UsageError(f"`tracelens profile` needs PyTorch: pip install 'tracelens-dataloader[profile]' ({exc})") from exc
    from tracelens.api import write_run_outputs
    from tracelens.document.schema import encode_document
    from tracelens.render.terminal import print_summary

    options = ProfileOptions(
        target=target, args=tuple(ctx.args), module=module, out=out, runs_root=runs_root,
        force=force, wait=wait, warmup=warmup, active=active, run_to_completion=run_to_completion,
        tensorboard_dir=tensorboard, no_report=no_report, telemetry_interval_ms=telemetry_interval_ms,
        record_shapes=record_shapes, with_stack=with_stack, profile_memory=profile_memory,
    )
    from tracelens.system.procs import Terminated

    try:
        result = run_profile(options, write_run_outputs)
    except Terminated as stop:
        typer.echo(f"tracelens: {stop.args[0]}", err=True)
        raise typer.Exit(stop.args[1]) from None
    # A rank of a job prints its lines only: the job's verdict comes once, from whoever combines.
    rank = getattr(result, "rank", None)
    if result.analysis is not None and rank is None:
        doc = result.analysis.document
        if as_json:
            sys.stdout.write(encode_document(doc).decode())
        else:
            print_summary(doc)
    prefix = f"tracelens rank {rank}: " if rank is not None else ""
    for line in result.summary_lines():
        typer.echo(prefix + line, err=as_json or rank is not None)
    raise typer.Exit(result.exit_status)


def register(app: typer.Typer) -> None:
    """Add the ``profile`` command (everything after SCRIPT goes to the script)."""
    app.command(
        "profile",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "allow_interspersed_args": False},
    )(profile)
