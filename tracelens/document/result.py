"""What an analysis returns, whatever the route: one rank (or the single trace) analyzed and
diagnosed, or several, with how each rank's job ended."""

from __future__ import annotations

from dataclasses import dataclass

from tracelens.analysis import TraceAnalysis
from tracelens.diagnosis import Diagnosis
from tracelens.document.schema import AnalysisDocument, Document, JobDocument, all_findings
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
    document: Document


@dataclass(frozen=True)
class RankOutcome:
    """How one rank's job ended, wherever it ran: its document, or the one-line reason it has none.

    ``detail`` is the rank's full analysis when it came back (a local process); None when only
    the document travelled (a Dask worker keeps the rest).
    """

    rank: int | None
    paths: tuple[str, ...]
    document: Document | None
    error: str | None = None
    bytes_read: int = 0  # bytes read from storage for this rank
    seconds: float = 0.0  # wall time of the job where it ran
    worker: str | None = None  # where it ran: a Dask worker address, or host:pid
    cpu_seconds: float = 0.0  # CPU time of the thread that ran it
    detail: RankResult | None = None

    @property
    def ok(self) -> bool:
        return self.document is not None


@dataclass(frozen=True)
class Result:
    """What ``analyze`` found at a location, whatever the route (this process, a local pool, Dask).

    ``document`` is always there: one rank's, or the multi-rank one with the slowest named.
    ``ranks`` holds the full per-rank analyses that came back (none when the ranks ran on a
    Dask cluster); ``outcomes`` says per job where it ran, what it read and, for a rank that
    failed, why.
    """

    path: str
    ranks: tuple[RankResult, ...]
    document: AnalysisDocument
    outcomes: tuple[RankOutcome, ...] = ()

    @property
    def is_multi_rank(self) -> bool:
        return isinstance(self.document, JobDocument)

    @property
    def slowest(self) -> RankResult | None:
        """The full analysis of the rank the document speaks for (the slowest of several); None
        when it stayed where it ran."""
        if not isinstance(self.document, JobDocument):
            return self.ranks[0] if self.ranks else None
        slowest = self.document.slowest_rank
        return next((r for r in self.ranks if r.rank == slowest), None)

    @property
    def failed(self) -> tuple[RankOutcome, ...]:
        """The jobs that gave no document (listed in the document's ``failed_ranks`` too)."""
        return tuple(o for o in self.outcomes if not o.ok)

    def has_finding_at_least(self, severity: str) -> bool:
        """Whether the job or any rank has a finding of ``severity`` or worse (``analyze --fail-on``)."""
        floor = Severity(severity).rank
        return any(severity_rank(f.severity) >= floor for f in all_findings(self.document))
