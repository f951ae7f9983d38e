"""What an analysis returns: one rank (or the single trace) analyzed and diagnosed, or several."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tracelens.analysis import TraceAnalysis
from tracelens.diagnosis import Diagnosis
from tracelens.runjson import RunInfo
from tracelens.vocab import Severity, severity_rank


@dataclass(frozen=True)
class RankResult:
    """One rank (or the single trace) analyzed, diagnosed and turned into its document."""

    rank: int | None
    paths: tuple[str, ...]
    analysis: TraceAnalysis
    diagnosis: Diagnosis
    run: RunInfo | None  # the run.json of a ``tracelens profile`` run, when found
    document: dict[str, Any]


@dataclass(frozen=True)
class Result:
    """What ``analyze`` found at a path: one rank, or several with the slowest named."""

    path: str
    ranks: tuple[RankResult, ...]
    document: dict[str, Any]

    @property
    def is_multi_rank(self) -> bool:
        return len(self.ranks) > 1

    @property
    def slowest(self) -> RankResult:
        if not self.is_multi_rank:
            return self.ranks[0]
        return next(r for r in self.ranks if r.rank == self.document["slowest_rank"])

    def has_finding_at_least(self, severity: str) -> bool:
        """Whether the job or any rank has a finding of ``severity`` or worse (``analyze --fail-on``)."""
        floor = Severity(severity).rank
        docs = [self.document, *self.document.get("ranks", [])]
        return any(severity_rank(f["severity"]) >= floor for d in docs for f in d.get("findings", []))
