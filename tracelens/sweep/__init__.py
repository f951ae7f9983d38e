"""``tracelens sweep``: measure candidate DataLoader and thread settings and pick the cheapest fast one.

- ``settings``: the overrides tried and their grids;
- ``stats`` (pure): per-window throughput, spread, bootstrap interval, noise, the auto order;
- ``rounds`` (pure): a setting's rounds, round-by-round comparisons, when a setting cannot win,
  when the sweep is conclusive, how disturbed the machine was;
- ``trials``: what each trial measured and what the set of trials says;
- ``pool``: the trial processes, one per setting, alive for the whole sweep;
- ``schedule``: the interleaved rounds, early stops, progress;
- ``run``: the result (choice, ceiling) and :func:`sweep` (the entry point);
- ``document``: ``sweep.json`` (SPEC §4). Rendering is :mod:`tracelens.render.sweep`.
"""

from __future__ import annotations

from tracelens.sweep.document import SCHEMA_VERSION, sweep_document
from tracelens.sweep.rounds import RoundRecord, paired
from tracelens.sweep.run import default_out_dir, run_sweep, sweep, usable_cores, write_outputs
from tracelens.sweep.settings import OWN, REPLAY, Setting, grid, parse_bool_list, parse_int_list
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
    Ceiling,
    SweepPlan,
    SweepResult,
    Trial,
)

__all__ = [
    "DEFAULT_STEPS", "DEFAULT_TIME_BUDGET_S", "OWN", "REPLAY", "SCHEMA_VERSION", "Ceiling", "Choice",
    "RoundRecord", "Setting", "SweepPlan", "SweepResult", "Throughput", "Trial", "choose", "default_out_dir",
    "grid", "is_within_noise", "next_auto_workers", "paired", "parse_bool_list", "parse_int_list", "run_sweep",
    "summarize", "sweep", "sweep_document", "usable_cores", "window_rates", "write_outputs",
]
