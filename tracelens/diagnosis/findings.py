"""What a diagnosis returns: findings, the recommendation, rules skipped, the main cause."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tracelens.vocab import LoaderSettings, Severity


@dataclass(frozen=True)
class Part:
    """One setting of the recommendation and the finding it comes from."""

    setting: str
    value: Any
    rule: str  # the finding's rule id
    kind: str
    reason: str  # the finding's title: the evidence behind the value


@dataclass(frozen=True)
class Recommendation:
    """Complete DataLoader settings to use next, with the reasoning in ``notes``.

    ``keep_current`` names settings whose current value the evidence does not show and which
    should stay as they are: those are None (a number appears only where the advice is to use
    it). ``expected_speedup`` is the predicted step-rate gain of applying these settings (1.0 =
    none), never above ``expected_speedup_bound``; ``expected_basis`` says where both come from.
    ``measure_with`` is the ``tracelens sweep`` command that measures what could not be estimated.
    ``parts`` names, for each setting that changes, the finding that set it.
    """

    num_workers: int | None
    pin_memory: bool | None
    persistent_workers: bool | None
    prefetch_factor: int | None
    notes: tuple[str, ...] = ()
    expected_speedup: float | None = None
    torch_threads_per_worker: int | None = None
    torch_threads_main: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    keep_current: tuple[str, ...] = ()
    expected_speedup_bound: float | None = None
    expected_basis: str | None = None
    measure_with: str | None = None
    parts: tuple[Part, ...] = ()


@dataclass(frozen=True)
class Finding:
    """One observation: which rule, the evidence that triggered it, and what to do."""

    id: str
    kind: str
    severity: Severity
    confidence: float
    title: str
    evidence: dict[str, Any] = field(default_factory=dict)
    advice: str = ""
    settings: dict[str, Any] = field(default_factory=dict)  # the settings this finding proposes
    thresholds: dict[str, float] = field(default_factory=dict)  # the thresholds it compared with


@dataclass(frozen=True)
class Skipped:
    """A rule whose precondition did not hold, and why."""

    id: str
    reason: str


@dataclass(frozen=True)
class Diagnosis:
    """The main cause, the settings to use next, and the findings behind them."""

    diagnosis: str
    recommendation: Recommendation
    findings: tuple[Finding, ...]
    skipped: tuple[Skipped, ...] = ()
    confidence: float | None = None
    settings: LoaderSettings = field(default_factory=LoaderSettings)  # the current settings as known
