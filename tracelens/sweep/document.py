"""``sweep.json`` (SPEC §4): the trials, the choice and the plan; per trial its rounds and the
CPU other processes used meanwhile; the rounds of the sweep; the measured ceiling."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tracelens.sweep.rounds import RoundRecord
from tracelens.sweep.stats import CI_LEVEL, NOISE_FLOOR_FRACTION
from tracelens.sweep.trials import (
    Ceiling,
    SweepResult,
    Trial,
    contention,
    cpu_bound,
    failure,
    other_cores,
    worker_cpu,
    worker_demand,
)
from tracelens.vocab import SETTING_KEYS

SCHEMA_VERSION = 1


def _r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(float(x), nd)


def setting_dict(trial: Trial) -> dict[str, Any]:
    """The loader's settings as measured: constructed values, else the overrides."""
    lo = trial.loader
    s = trial.setting
    return {
        "num_workers": int(lo.get("num_workers", s.num_workers or 0)),
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


def round_record(r: RoundRecord) -> dict[str, Any]:
    """One ``trials[].rounds[]`` entry."""
    return {"round": r.round, "steps": r.steps, "steps_per_s": _r(r.rate, 4),
            "data_wait_fraction": _r(r.wait_ns / r.ns if r.ns else 0.0, 4),
            "other_cpu_cores": _r(r.other_cores), "trial_cpu_cores": _r(r.trial_cores),
            "busy_cores": _r(r.busy_cores), "run_queue_delay_per_s": _r(r.run_queue_delay_per_s),
            "wall_s": _r(r.wall_s), "settle_s": r.settle_s, "discarded_steps": r.discarded, "partial": r.partial}


def trial_record(trial: Trial) -> dict[str, Any]:
    """One ``trials[]`` entry."""
    t = trial.throughput
    rec = setting_dict(trial)
    batch = trial.loader.get("batch_size")
    raw = trial.raw
    rec.update({
        "steps_per_s": round(t.steps_per_s, 4),
        "steps_per_s_spread": round(t.spread, 4),
        "steps_per_s_min": round(t.min, 4),
        "steps_per_s_max": round(t.max, 4),
        "steps_per_s_q1": round(t.q1, 4),
        "steps_per_s_q3": round(t.q3, 4),
        "spread_kind": "interquartile range of the per-round rates",
        "steps_per_s_ci": [round(t.ci_lo, 4), round(t.ci_hi, 4)],
        "ci_kind": f"{100 * CI_LEVEL:.0f} % t interval of the mean over the rounds (block bootstrap under 3 rounds)",
        "samples_per_s": round(t.steps_per_s * batch, 2) if isinstance(batch, int) else None,
        "batch_size": batch,
        "exposed_data_wait_fraction": round(t.data_wait_fraction, 6),
        "exposed_data_wait_source": "host wait in DataLoader.__next__ (timing-only trial, no GPU trace)",
        "data_wait_fraction": round(t.data_wait_fraction, 6),
        "steps_measured": t.steps,
        "warmup_steps": raw.get("warmup"),
        "torch_threads_main": trial.setting.main_threads,
        "torch_threads_per_worker": trial.setting.worker_threads,
        "torch_threads": raw.get("torch_threads"),
        "window_steps_per_s": list(t.window_rates),
        "worker_cpu_fraction": _r(worker_cpu(trial), 4),
        "cores_used": _r(contention(trial, "cpu_per_s")),
        "run_queue_delay_per_s": _r(contention(trial, "run_queue_delay_per_s")),
        "other_cpu_cores": _r(other_cores(trial)),
        "load_average_1m": raw.get("load_average_1m"),
        "worker_cpu_demand": _r(contention(trial, "worker_demand"), 4),
        "startup_ms": None if raw.get("startup_ns") is None else round(raw["startup_ns"] / 1e6, 2),
        "overrides": trial.setting.overrides(),
        "label": trial.setting.label(),
        "wall_s": round(trial.wall_s, 3),
        "startup_s": _r(trial.startup_s),
        "measured_s": _r(trial.measured_s),
        "rounds": [round_record(r) for r in trial.rounds],
        "stopped_early": trial.stopped,
        "loader_id": trial.loader.get("id"),
        "loader_created_at": trial.loader.get("created_at"),
        "loader_choice": raw.get("loader_choice"),
        "unusable": None if trial.ok else (raw.get("unusable") or "no steady step measured"),
        "exit_status": raw.get("exit_status"),
        "stop_reason": raw.get("stop_reason"),
        "script_error": raw.get("script_error"),
        "error": raw.get("error") or (None if trial.ok else failure(trial)),
    })
    return rec


def ceiling_record(c: Ceiling, trials: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``ceiling``: the replay (a free loader) against the script's own loader."""
    rt = c.replay.throughput
    return {
        "measured": _r(c.measured),
        "measured_ci": None if c.paired is None else [_r(c.paired.lo), _r(c.paired.hi)],
        "measured_kind": "replay steps/s ÷ the script's own loader's steps/s, in the same rounds "
                         f"({100 * CI_LEVEL:.0f} % interval of the round-by-round ratio)",
        "estimated": _r(c.estimated),
        "estimated_kind": "1 / (1 − exposed data wait of the script's own loader)",
        "baseline_index": c.baseline,
        "baseline_label": None if c.baseline is None else trials[c.baseline]["label"],
        "replay_steps_per_s": round(rt.steps_per_s, 4),
        "replay_steps_per_s_ci": [round(rt.ci_lo, 4), round(rt.ci_hi, 4)],
        "compute_step_ms": None if not rt.steps_per_s else round(1000 / rt.steps_per_s, 3),
        "replay_data_wait_fraction": round(rt.data_wait_fraction, 6),
        "replay_steps_measured": rt.steps,
        "replay": c.replay.raw.get("replay"),
        "rounds": [round_record(r) for r in c.replay.rounds],
        "startup_s": _r(c.replay.startup_s),
        "notes": list(c.notes),
    }


def sweep_document(result: SweepResult) -> dict[str, Any]:
    """``sweep.json`` (SPEC §4), with the plan and the extras after the required keys."""
    trials = [trial_record(t) for t in result.trials]
    best = None
    if result.choice is not None:
        b = trials[result.choice.best]
        best = {k: b[k] for k in SETTING_KEYS}
        chosen = result.trials[result.choice.best].setting
        best |= {"torch_threads_main": chosen.main_threads, "torch_threads_per_worker": chosen.worker_threads}
    plan = result.plan
    dist = result.disturbance
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
        "steps": plan.steps, "warmup": plan.warmup, "windows": plan.windows,
        "min_rounds": plan.min_rounds, "max_rounds": plan.max_rounds, "round_s": plan.round_s,
        "early_stop": plan.early_stop, "max_alive": plan.max_alive,
        "time_budget_s": plan.time_budget_s,
        "usable_cores": plan.usable_cores,
        "noise_floor_fraction": NOISE_FLOOR_FRACTION,
        "worker_cpu_demand": worker_demand(result.trials),
        "cpu_bound": cpu_bound(result.trials),
        "rounds": [{"round": r.round, "order": list(r.labels), "wall_s": round(r.wall_s, 3),
                    "other_cpu_cores": _r(r.other_cores)} for r in result.rounds],
        "disturbance": None if dist is None else {
            "other_cpu_cores_min": _r(dist.other_cores_min), "other_cpu_cores_max": _r(dist.other_cores_max),
            "round_rate_cv": _r(dist.round_cv, 4), "too_disturbed": dist.too_disturbed, "text": dist.text},
        "ceiling": None if result.ceiling is None else ceiling_record(result.ceiling, trials),
        "notes": list(result.notes),
        "startup_wall_s": round(result.startup_wall_s, 3),
        "wall_s": round(result.wall_s, 3),
    }
