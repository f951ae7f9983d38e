"""The diagnosis (SPEC §3). Minimal version: healthy / input_bound / undetermined from the trace.

The full rule engine replaces this module's internals; its public surface is :func:`diagnose`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tracelens.analysis import TraceAnalysis

EXPOSED_WAIT_THRESHOLD = 0.05  # TensorBoard plugin and XProf "moderately input-bound" both use 5 %


@dataclass(frozen=True)
class Recommendation:
    """Complete DataLoader settings to use next."""

    num_workers: int
    pin_memory: bool
    persistent_workers: bool
    prefetch_factor: int | None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Finding:
    """One observation with its evidence."""

    id: str
    kind: str
    severity: str  # "high" | "medium" | "low" | "info"
    confidence: float
    title: str
    evidence: dict[str, Any] = field(default_factory=dict)
    advice: str = ""


@dataclass(frozen=True)
class Diagnosis:
    """The main cause, the settings to use next, and the findings behind them."""

    diagnosis: str
    recommendation: Recommendation
    findings: tuple[Finding, ...]


@dataclass(frozen=True)
class LoaderSettings:
    """DataLoader settings as known (None = unknown)."""

    num_workers: int | None = None
    pin_memory: bool | None = None
    persistent_workers: bool | None = None
    prefetch_factor: int | None = None


def known_settings(analysis: TraceAnalysis, run: Any = None) -> LoaderSettings:
    """Settings from run.json when present, else what the iterator kind implies."""
    loader = getattr(run, "main_loader", None) if run is not None else None
    if loader is not None:
        return LoaderSettings(
            num_workers=loader.num_workers,
            pin_memory=loader.pin_memory,
            persistent_workers=loader.persistent_workers,
            prefetch_factor=loader.prefetch_factor,
        )
    if analysis.iterator == "single_process":
        return LoaderSettings(num_workers=0, persistent_workers=False, prefetch_factor=None)
    return LoaderSettings()


def diagnose(analysis: TraceAnalysis, run: Any = None) -> Diagnosis:
    """Name the main loader-related cause of lost throughput and the settings to use next."""
    s = known_settings(analysis, run)
    rec = Recommendation(
        num_workers=s.num_workers if s.num_workers is not None else 0,
        pin_memory=bool(s.pin_memory),
        persistent_workers=bool(s.persistent_workers),
        prefetch_factor=s.prefetch_factor,
        notes=("settings repeated from the trace: the rule engine is not enabled",),
    )
    exposed = analysis.exposed_data_wait_fraction
    if exposed is None or analysis.next_calls == 0:
        return Diagnosis("undetermined", rec, ())
    if exposed < EXPOSED_WAIT_THRESHOLD:
        return Diagnosis("healthy", rec, ())
    return Diagnosis("input_bound", rec, ())
