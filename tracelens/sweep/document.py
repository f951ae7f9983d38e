"""``sweep.json`` (SPEC §4): the trials, the choice and the plan."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tracelens.sweep.stats import CI_LEVEL, NOISE_FLOOR_FRACTION
from tracelens.sweep.trials import (
    SweepResult,
    Trial,
    contention,
    cpu_bound,
    worker_cpu,
    worker_demand,
)
from tracelens.vocab import SETTING_KEYS

SCHEMA_VERSION = 1


def setting_dict(trial: Trial) -> dict[str, Any]:
    """The loader's settings as measured: constructed values, else the overrides."""
    lo = trial.loader
    s = trial.setting
    return {
        "num_workers": int(lo.get("num_workers", s.num_workers)),
        "pin_memory": bool(lo.get("pin_memory", bool(s.pin_memory))),
        "persistent_workers": bool(lo.get("persistent_workers", False)),
        "prefetch_factor": lo.get("prefetch_factor", s.prefetch_factor),
    }


def baseline_settings(trials: Sequence[Trial]) -> dict[str, Any] | None:
    """The script's own loader settings, recovered from what the overrides replaced."""
    for t in trials:
        lo = t.loader
        if not lo:
            continue
        own = dict(setting_dict(t))
        for key, change in (lo.get("overrides_applied") or {}).items():
            if key in own:
                own[key] = change.get("from")
        if own.get("num_workers") == 0:
            own["prefetch_factor"] = None
        return own
    return None


def trial_record(trial: Trial) -> dict[str, Any]:
    """One ``trials[]`` entry of sweep.json."""
    t = trial.throughput
    rec = setting_dict(trial)
    batch = trial.loader.get("batch_size")
    raw0 = trial.raw[0] if trial.raw else {}
    rec.update({
        "steps_per_s": round(t.steps_per_s, 4),
        "steps_per_s_spread": round(t.spread, 4),
        "steps_per_s_min": round(t.min, 4),
        "steps_per_s_max": round(t.max, 4),
        "steps_per_s_q1": round(t.q1, 4),
        "steps_per_s_q3": round(t.q3, 4),
        "spread_kind": "interquartile range of per-window rates",
        "steps_per_s_ci": [round(t.ci_lo, 4), round(t.ci_hi, 4)],
        "ci_kind": f"{100 * CI_LEVEL:.0f} % block-bootstrap interval of the mean rate",
        "samples_per_s": round(t.steps_per_s * batch, 2) if isinstance(batch, int) else None,
        "batch_size": batch,
        "exposed_data_wait_fraction": round(t.data_wait_fraction, 6),
        "exposed_data_wait_source": "host wait in DataLoader.__next__ (timing-only trial, no GPU trace)",
        "data_wait_fraction": round(t.data_wait_fraction, 6),
        "steps_measured": t.steps,
        "warmup_steps": raw0.get("warmup"),
        "repeats": len(trial.raw),
        "window_steps_per_s": list(t.window_rates),
        "worker_cpu_fraction": None if (c := worker_cpu(trial)) is None else round(c, 4),
        "cores_used": None if (u := contention(trial, "cpu_per_s")) is None else round(u, 3),
        "run_queue_delay_per_s": None if (d := contention(trial, "run_queue_delay_per_s")) is None
        else round(d, 3),
        "load_average_1m": raw0.get("load_average_1m"),
        "worker_cpu_demand": None if (wd := contention(trial, "worker_demand")) is None else round(wd, 4),
        "startup_ms": None if raw0.get("startup_ns") is None else round(raw0["startup_ns"] / 1e6, 2),
        "overrides": trial.setting.overrides(),
        "label": trial.setting.label(),
        "wall_s": round(trial.wall_s, 3),
        "remeasured": trial.remeasured,
        "loader_id": trial.loader.get("id"),
        "loader_created_at": trial.loader.get("created_at"),
        "loader_choice": raw0.get("loader_choice"),
        "unusable": raw0.get("unusable"),
        "exit_status": raw0.get("exit_status"),
        "stop_reason": raw0.get("stop_reason"),
        "error": raw0.get("error"),
    })
    return rec


def sweep_document(result: SweepResult) -> dict[str, Any]:
    """``sweep.json`` (SPEC §4), with the plan and the extras after the required keys."""
    trials = [trial_record(t) for t in result.trials]
    best = None
    if result.choice is not None:
        b = trials[result.choice.best]
        best = {k: b[k] for k in SETTING_KEYS}
    plan = result.plan
    return {
        "schema_version": SCHEMA_VERSION,
        "trials": trials,
        "best": best,
        "reason": result.reason,
        "fastest": None if result.choice is None else result.choice.fastest,
        "best_index": None if result.choice is None else result.choice.best,
        "within_noise": [] if result.choice is None else list(result.choice.within_noise),
        "baseline": baseline_settings(result.trials),
        "mode": "auto" if not plan.settings else "grid",
        "auto_start": result.auto_start,
        "auto_start_source": result.auto_start_source,
        "command": {"target": plan.target, "args": list(plan.args), "module": plan.module},
        "steps": plan.steps, "warmup": plan.warmup, "repeats": plan.repeats, "windows": plan.windows,
        "time_budget_s": plan.time_budget_s,
        "usable_cores": plan.usable_cores,
        "noise_floor_fraction": NOISE_FLOOR_FRACTION,
        "worker_cpu_demand": worker_demand(result.trials),
        "cpu_bound": cpu_bound(result.trials),
        "notes": list(result.notes),
        "wall_s": round(result.wall_s, 3),
    }
