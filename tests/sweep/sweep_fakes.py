"""Fake sweep trials: processes that answer the scheduler from a rate table, deterministically."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tracelens.sweep import Setting


def loader_of(setting: Setting, own_workers: int = 0) -> dict[str, Any]:
    w = own_workers if setting.num_workers is None else setting.num_workers
    applied = {} if setting.num_workers is None or w == own_workers else {"num_workers": {"from": own_workers, "to": w}}
    return {"id": 0, "num_workers": w, "pin_memory": bool(setting.pin_memory), "persistent_workers": False,
            "prefetch_factor": 2 if w else None, "batch_size": 64, "overrides_applied": applied}


@dataclass
class FakeWorld:
    """The machine the fakes run on: each setting's rate, a load factor per round (the rates
    are divided by it), what each trial is asked, and how many are alive."""

    rates: Callable[[Setting], float]
    load: Callable[[int], float] = lambda r: 1.0
    wait_fraction: Callable[[Setting], float] = lambda s: 0.1
    demand: Callable[[Setting], float | None] = lambda s: None
    own_workers: int = 0
    steps: int = 20
    end_after: dict[str, int] = field(default_factory=dict)  # label -> rounds before the script ends
    partial: dict[str, int] = field(default_factory=dict)  # label -> steps of the round the end cuts short
    fail_before_ready: dict[str, str] = field(default_factory=dict)  # label -> the script's error
    fail_after: dict[str, tuple[int, str]] = field(default_factory=dict)  # label -> (rounds, error): a crash
    calls: list[tuple[int, str]] = field(default_factory=list)  # (round, label) in the order measured
    alive: int = 0
    max_alive_seen: int = 0
    launched: list[str] = field(default_factory=list)

    def launch(self, setting: Setting, k: int) -> FakeTrial:
        self.alive += 1
        self.max_alive_seen = max(self.max_alive_seen, self.alive)
        self.launched.append(setting.label())
        return FakeTrial(self, setting)


@dataclass
class FakeTrial:
    world: FakeWorld
    setting: Setting
    rounds: int = 0
    ended: bool = False
    cut: dict[str, Any] | None = None

    @property
    def label(self) -> str:
        return self.setting.label()

    def wait_ready(self, timeout_s: float) -> dict[str, Any] | None:
        if self.label in self.world.fail_before_ready:
            self.ended = True
            return None
        return {"event": "ready", "loader": loader_of(self.setting, self.world.own_workers),
                "loader_choice": "training", "warmup": 5}

    def measure(self, grant: dict[str, Any], timeout_s: float) -> dict[str, Any] | None:
        self.world.calls.append((grant["round"], self.label))
        crash = self.world.fail_after.get(self.label)
        if crash is not None and self.rounds >= crash[0]:
            self.ended = True
            return None
        if self.rounds >= self.world.end_after.get(self.label, 10**9):
            self.ended = True
            self.cut = self._round(grant, self.world.partial.get(self.label, 0))
            return None
        self.rounds += 1
        return self._round(grant, max(grant["min_steps"], self.world.steps))

    def _round(self, grant: dict[str, Any], n: int) -> dict[str, Any]:
        setting = self.setting.resolved(self.world.own_workers)  # the script's own loader, as built
        rate = self.world.rates(setting) / self.world.load(grant["round"])
        step = int(1e9 / rate)
        wait = int(step * self.world.wait_fraction(setting))
        return {"event": "round", "round": grant["round"], "loader_id": 0, "step_ns": [step] * n,
                "wait_ns": [wait] * n, "discarded": grant["discard"],
                "contention": {"cpu_per_s": 1.0, "run_queue_delay_per_s": 0.1,
                               "worker_demand": self.world.demand(self.setting)}}

    def stop(self) -> dict[str, Any]:
        self.world.alive -= 1
        error = self.world.fail_before_ready.get(self.label)
        if error:
            return {"exit_status": 1, "stop_reason": "error", "script_error": error, "loader": None,
                    "unusable": "no loader fed a backward pass or drew its warm-up of batches (the most: 0)"}
        crash = self.world.fail_after.get(self.label)
        if crash is not None and self.ended:  # the trial's own record: rounds measured, then the error
            return {"exit_status": 1, "stop_reason": "error", "script_error": crash[1],
                    "loader": loader_of(self.setting, self.world.own_workers), "loader_choice": "training",
                    "unusable": None if self.rounds else "no loader fed a backward pass or drew its warm-up of "
                    "batches (the most: 3)"}
        return {"exit_status": 0, "stop_reason": "finished" if self.ended else "steps_measured",
                "loader": loader_of(self.setting, self.world.own_workers), "loader_choice": "training",
                "worker_cpu_fraction": 0.9 if self.setting.num_workers else None, "partial_round": self.cut,
                "replay": {"batches": 16, "max_batches": 16, "copied_on_serve": False} if self.setting.replay else None}

    def cpu_ns(self) -> int | None:
        return None

    def memory_bytes(self) -> int | None:
        return None


def table(rates: dict[str, float]) -> Callable[[Setting], float]:
    """Rates by label (``replay`` for the ceiling trial)."""
    return lambda s: rates[s.label()]
