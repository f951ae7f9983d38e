"""``tracelens sweep``: measure DataLoader settings on the unmodified script, pick the cheapest fast one."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from tracelens.cli.bounds import (
    MAX_SWEEP_REPEATS,
    MAX_SWEEP_STEPS,
    MAX_SWEEP_WARMUP,
    max_sweep_workers,
)
from tracelens.errors import TracelensError, UsageError


def sweep(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(metavar="SCRIPT", help="The training script (or module with -m); its arguments follow.", show_default=False)],
    num_workers: Annotated[str, typer.Option("--num-workers", help="Comma-separated values (0,2,4,8), or 'auto': start from the diagnosis' recommendation and double while it helps.")] = "auto",
    pin_memory: Annotated[str | None, typer.Option("--pin-memory", help="Comma-separated true/false values to try (default: the script's own).")] = None,
    prefetch_factor: Annotated[str | None, typer.Option("--prefetch-factor", help="Comma-separated values to try with workers (default: the script's own).")] = None,
    steps: Annotated[int, typer.Option("--steps", min=5, max=MAX_SWEEP_STEPS, help="Steady-state steps measured per trial.")] = 50,
    warmup: Annotated[int | None, typer.Option("--warmup", min=0, max=MAX_SWEEP_WARMUP, help="Batches skipped before measuring (default: num_workers × prefetch_factor + 2, 5 to 64).")] = None,
    repeats: Annotated[int, typer.Option("--repeats", min=1, max=MAX_SWEEP_REPEATS, help="Trials (processes) per setting.")] = 1,
    time_budget: Annotated[float, typer.Option("--time-budget", min=1.0, help="Seconds for the whole sweep; no trial starts that would overrun it.")] = 600.0,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output directory (default: tracelens-runs/sweep-<script>-<time>).")] = None,
    module: Annotated[bool, typer.Option("-m", "--module", help="TARGET is a module, run as python -m TARGET.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines on stderr.")] = False,
) -> None:
    """Run the script once per DataLoader setting and pick the cheapest within noise of the fastest."""
    from tracelens import sweep as sw
    from tracelens.render.sweep import format_sweep

    args = tuple(ctx.args)
    if not module and not Path(target).is_file():
        raise UsageError(f"{target}: no such script")
    try:
        pins: list[bool | None] = list(sw.parse_bool_list(pin_memory, "--pin-memory")) if pin_memory else [None]
        pfs: list[int | None] = list(sw.parse_int_list(prefetch_factor, "--prefetch-factor")) if prefetch_factor else [None]
        auto = num_workers.strip().lower() == "auto"
        settings = () if auto else tuple(sw.grid(sw.parse_int_list(num_workers, "--num-workers"), pins, pfs))
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if auto and (len(pins) > 1 or len(pfs) > 1):
        raise UsageError("--num-workers auto takes one --pin-memory and one --prefetch-factor value")
    if any(p is not None and p < 1 for p in pfs):
        raise UsageError("--prefetch-factor must be at least 1")
    cores = sw.usable_cores()
    too_many = [s.num_workers for s in settings if s.num_workers > max_sweep_workers(cores)]
    if too_many:
        raise UsageError(f"--num-workers {max(too_many)}: at most {max_sweep_workers(cores)} workers per trial on "
                         f"{cores} usable core(s) (each worker is a process holding a copy of the dataset)")
    if any(s.num_workers < 0 for s in settings):
        raise UsageError("--num-workers values must be 0 or more")
    plan = sw.SweepPlan(
        target=target, args=args, module=module, settings=settings,
        auto_pin_memory=pins[0], auto_prefetch_factor=pfs[0],
        steps=steps, warmup=warmup, repeats=repeats, time_budget_s=time_budget,
        usable_cores=cores,
    )
    out_dir = out or sw.default_out_dir(target)
    result, js, html = sw.sweep(plan, out_dir, progress=None if quiet else sys.stderr, auto=auto)
    typer.echo(format_sweep(sw.sweep_document(result)))
    typer.echo(f"\nsweep.json: {js}\nreport: {html}")
    if result.choice is None:
        raise TracelensError(f"no setting could be measured; the script's output is in {out_dir / 'trials'}")


def register(app: typer.Typer) -> None:
    """Add the ``sweep`` command to ``app`` (extra arguments go to the script)."""
    app.command(
        "sweep",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "allow_interspersed_args": False},
    )(sweep)
