"""``tracelens sweep``: measure DataLoader and thread settings on the unmodified script, pick the cheapest fast one."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from tracelens.cli.bounds import (
    MAX_REPLAY_BATCHES,
    MAX_SWEEP_ALIVE,
    MAX_SWEEP_REPEATS,
    MAX_SWEEP_ROUNDS,
    MAX_SWEEP_STEPS,
    MAX_SWEEP_THREADS,
    MAX_SWEEP_WARMUP,
    max_sweep_workers,
)
from tracelens.errors import TracelensError, UsageError
from tracelens.system.procs import Terminated, sigterm_raises


def sweep(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(metavar="SCRIPT", help="The training script (or module with -m); its arguments follow.", show_default=False)],
    num_workers: Annotated[str, typer.Option("--num-workers", help="Comma-separated values (0,2,4,8), or 'auto': start from the diagnosis' recommendation and double while it helps.")] = "auto",
    pin_memory: Annotated[str | None, typer.Option("--pin-memory", help="Comma-separated true/false values to try (default: the script's own).")] = None,
    prefetch_factor: Annotated[str | None, typer.Option("--prefetch-factor", help="Comma-separated values to try with workers (default: the script's own).")] = None,
    main_threads: Annotated[str | None, typer.Option("--main-threads", help="Comma-separated torch.set_num_threads values for the training process (default: the script's own).")] = None,
    worker_threads: Annotated[str | None, typer.Option("--worker-threads", help="Comma-separated torch.set_num_threads values for each worker, set after its worker_init_fn (default: the DataLoader's 1).")] = None,
    ceiling: Annotated[bool, typer.Option("--ceiling", help="Also measure the loop with a free loader: batches cached from the training loader replayed through the unmodified loop; shows the measured speed-up ceiling beside the estimated one.")] = False,
    replay_batches: Annotated[int, typer.Option("--replay-batches", min=1, max=MAX_REPLAY_BATCHES, help="Batches the --ceiling trial caches (at most 1 GiB of tensors).")] = 16,
    steps: Annotated[int, typer.Option("--steps", min=5, max=MAX_SWEEP_STEPS, help="Steady-state steps measured per setting, at least (over its rounds).")] = 50,
    warmup: Annotated[int | None, typer.Option("--warmup", min=0, max=MAX_SWEEP_WARMUP, help="Batches skipped before measuring (default: num_workers × prefetch_factor + 2, 5 to 64).")] = None,
    repeats: Annotated[int, typer.Option("--repeats", min=1, max=MAX_SWEEP_REPEATS, help="Measure every setting in at least 3 × this many rounds.")] = 1,
    max_rounds: Annotated[int, typer.Option("--max-rounds", min=1, max=MAX_SWEEP_ROUNDS, help="Rounds per setting at most (fewer once the comparisons are conclusive).")] = 8,
    early_stop: Annotated[bool, typer.Option("--early-stop/--no-early-stop", help="Stop measuring settings that cannot win, and the sweep once conclusive.")] = True,
    max_alive: Annotated[int, typer.Option("--max-alive", min=1, max=MAX_SWEEP_ALIVE, help="Trial processes alive at once (each holds the script and its workers).")] = 6,
    time_budget: Annotated[float, typer.Option("--time-budget", min=1.0, help="Seconds for the whole sweep; no round or trial starts that would overrun it.")] = 600.0,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output directory (default: tracelens-runs/sweep-<script>-<time>).")] = None,
    module: Annotated[bool, typer.Option("-m", "--module", help="TARGET is a module, run as python -m TARGET.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines on stderr.")] = False,
) -> None:
    """Measure each setting in interleaved rounds (one live process per setting) and pick the cheapest within noise of the fastest."""
    from tracelens import sweep as sw
    from tracelens.render.sweep import format_sweep

    args = tuple(ctx.args)
    if not module and not Path(target).is_file():
        raise UsageError(f"{target}: no such script")
    try:
        pins: list[bool | None] = list(sw.parse_bool_list(pin_memory, "--pin-memory")) if pin_memory else [None]
        pfs: list[int | None] = list(sw.parse_int_list(prefetch_factor, "--prefetch-factor", 1)) if prefetch_factor else [None]
        mts: list[int | None] = list(sw.parse_int_list(main_threads, "--main-threads", 1)) if main_threads else [None]
        wts: list[int | None] = list(sw.parse_int_list(worker_threads, "--worker-threads", 1)) if worker_threads else [None]
        auto = num_workers.strip().lower() == "auto"
        settings = () if auto else tuple(sw.grid(sw.parse_int_list(num_workers, "--num-workers"), pins, pfs, mts, wts))
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if auto and any(len(x) > 1 for x in (pins, pfs, mts, wts)):
        raise UsageError("--num-workers auto takes one value of --pin-memory, --prefetch-factor, --main-threads "
                         "and --worker-threads")
    if any(t is not None and t > MAX_SWEEP_THREADS for t in (*mts, *wts)):
        raise UsageError(f"--main-threads/--worker-threads: at most {MAX_SWEEP_THREADS} threads")
    cores = sw.usable_cores()
    too_many = [s.num_workers or 0 for s in settings if (s.num_workers or 0) > max_sweep_workers(cores)]
    if too_many:
        raise UsageError(f"--num-workers {max(too_many)}: at most {max_sweep_workers(cores)} workers per trial on "
                         f"{cores} usable core(s) (each worker is a process holding a copy of the dataset)")
    min_rounds = 3 * repeats
    plan = sw.SweepPlan(
        target=target, args=args, module=module, settings=settings,
        auto_pin_memory=pins[0], auto_prefetch_factor=pfs[0], auto_main_threads=mts[0], auto_worker_threads=wts[0],
        steps=steps, warmup=warmup, time_budget_s=time_budget, usable_cores=cores,
        min_rounds=min_rounds, max_rounds=max(max_rounds, min_rounds), early_stop=early_stop, max_alive=max_alive,
        ceiling=ceiling, replay_batches=replay_batches,
    )
    out_dir = out or sw.default_out_dir(target)
    try:
        with sigterm_raises():
            result, js, html = sw.sweep(plan, out_dir, progress=None if quiet else sys.stderr, auto=auto)
    except Terminated as stop:  # the trials are ended by then; one line, 128 + the signal
        typer.echo(f"tracelens: {stop.args[0]}; the trials were ended", err=True)
        raise typer.Exit(stop.args[1]) from None
    except KeyboardInterrupt:
        typer.echo("tracelens: interrupted; the trials were ended", err=True)
        raise typer.Exit(130) from None
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
