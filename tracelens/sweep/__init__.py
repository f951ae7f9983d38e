"""``tracelens sweep``: measure candidate DataLoader settings and pick the cheapest fast one.

- ``settings``: the overrides tried and their grids;
- ``stats`` (pure): per-window throughput, spread, bootstrap interval, noise, the auto order, the choice;
- ``trials``: one run per setting, what it measured and what the set of trials says;
- ``run``: one child process per trial, the time budget, progress, and :func:`sweep` (the entry point);
- ``document``: ``sweep.json`` (SPEC §4). Rendering is :mod:`tracelens.render.sweep`.
"""

from __future__ import annotations

from tracelens.sweep.document import SCHEMA_VERSION, sweep_document
from tracelens.sweep.run import default_out_dir, run_sweep, sweep, usable_cores, write_outputs
from tracelens.sweep.settings import Setting, grid, parse_bool_list, parse_int_list
from tracelens.sweep.stats import (
    Choice,
    Throughput,
    choose,
    is_within_noise,
    next_auto_workers,
    summarize,
    window_rates,
)
from tracelens.sweep.trials import (
    DEFAULT_STEPS,
    DEFAULT_TIME_BUDGET_S,
    SweepPlan,
    SweepResult,
    Trial,
    TrialSpec,
    steps_for,
)

__all__ = [
    "DEFAULT_STEPS", "DEFAULT_TIME_BUDGET_S", "SCHEMA_VERSION", "Choice", "Setting", "SweepPlan", "SweepResult",
    "Throughput", "Trial", "TrialSpec", "choose", "default_out_dir", "grid", "is_within_noise",
    "next_auto_workers", "parse_bool_list", "parse_int_list", "run_sweep", "steps_for", "summarize", "sweep",
    "sweep_document", "usable_cores", "window_rates", "write_outputs",
]
