"""Several ranks of one job: the rank whose loader holds the others at the collectives.

In synchronous data-parallel training every rank waits at each collective for the slowest. A
rank that waits longer for data arrives last, so the others spend that time inside the
collective: their collective time grows by what the straggler's data wait adds. Such a rank
holds the whole job, and the ranks waiting for it are not input-bound themselves.
Pure functions over each rank's step times, ms per step unless a name says otherwise.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from tracelens.diagnosis import sizing
from tracelens.diagnosis.findings import Finding
from tracelens.diagnosis.thresholds import threshold
from tracelens.vocab import Severity


@dataclass(frozen=True)
class JobRule:
    """A rule over every rank of a job (listed beside the per-rank rules)."""

    id: str
    kind: str
    severity: str
    title: str
    precondition: str
    thresholds: tuple[str, ...]


JOB_RULE = JobRule("TL401", "rank_straggler", "high", "One rank's loader holds the other ranks at the collectives",
                   "two or more ranks with collective communication in their traces",
                   ("straggler_wait_fraction", "straggler_absorbed_fraction"))


@dataclass(frozen=True)
class RankTimes:
    """One rank's mean step, exposed data wait and time in collectives (ms per step)."""

    rank: int
    step_ms: float
    wait_ms: float
    collective_ms: float | None

    @classmethod
    def measured(cls, rank: int | None, step_ms_total: float | None, steps: int,
                 exposed_fraction: float | None, collective_ms: float | None) -> RankTimes | None:
        """From a rank's totals: its measured steps' summed duration (ms), their count, its exposed
        data wait fraction and collective ms per step (None without measured steps)."""
        if not step_ms_total or not steps or exposed_fraction is None:
            return None
        step = float(step_ms_total) / int(steps)
        return cls(rank or 0, step, step * float(exposed_fraction), collective_ms)


@dataclass(frozen=True)
class Straggler:
    """The rank whose loader holds the others: its ``rank_straggler`` finding, and for each rank
    whose own data wait the wait for it hides, that rank's info finding (by rank)."""

    rank: int
    finding: Finding
    waiting: dict[int, Finding]


def find_straggler(times: Sequence[RankTimes]) -> Straggler | None:
    """The straggler of a job's ranks, or None when no rank holds the others."""
    times = list(times)
    if len(times) < 2 or sum(t.collective_ms is not None for t in times) < 2:
        return None
    slow = max(times, key=lambda t: t.wait_ms)
    others = [t for t in times if t is not slow]
    others_wait = statistics.median(t.wait_ms for t in others)
    others_coll = statistics.median(t.collective_ms or 0.0 for t in others)
    extra_wait = slow.wait_ms - others_wait
    caused = others_coll - (slow.collective_ms or 0.0)
    step = statistics.median(t.step_ms for t in times)
    if extra_wait < threshold("straggler_wait_fraction") * step or caused < threshold("straggler_absorbed_fraction") * extra_wait:
        return None
    share = extra_wait / step
    ceiling = sizing.speedup_ceiling(share)
    finding = Finding(
        id=JOB_RULE.id, kind=JOB_RULE.kind,
        severity=Severity.HIGH if share >= threshold("exposed_wait_high_fraction") else Severity.MEDIUM,
        confidence=0.8,
        title=(f"Rank {slow.rank}'s loader holds the other {len(others)} rank(s): it waits {slow.wait_ms:.1f} ms "
               f"per step for data ({extra_wait:.1f} ms more than the others), and they wait {caused:.1f} ms "
               "per step for it at the collectives"),
        evidence={"rank": slow.rank, "data_wait_ms_per_step": round(slow.wait_ms, 4),
                  "others_data_wait_ms_per_step": round(others_wait, 4),
                  "collective_wait_caused_ms_per_step": round(caused, 4),
                  "straggler_collective_ms_per_step": round(slow.collective_ms or 0.0, 4),
                  "step_ms": round(step, 4), "job_speedup_ceiling": round(ceiling, 4)},
        advice=(f"Fix rank {slow.rank}'s loader first (its findings follow): every rank steps at its pace, so "
                f"removing its extra wait makes the whole job up to {ceiling:.2f}x faster. The other ranks' "
                "time in collectives is waiting for it, not input-boundness of their own. If every rank runs "
                "the same DataLoader, look for what differs on that rank: its data shard, its storage, its "
                "node's load, or a transform that depends on the rank."),
        thresholds={n: threshold(n) for n in JOB_RULE.thresholds},
    )
    return Straggler(slow.rank, finding, _waiting_ranks(times, slow))


def _waiting_ranks(times: Sequence[RankTimes], slow: RankTimes) -> dict[int, Finding]:
    """An info finding for each rank whose own data wait the straggler's collective wait hides:
    faster loading there would not speed up the job."""
    slow_coll = round(slow.collective_ms or 0.0, 4)
    out: dict[int, Finding] = {}
    for t in times:
        if t.rank == slow.rank or t.collective_ms is None:
            continue
        absorbed = t.collective_ms - slow_coll
        if absorbed <= 0 or t.wait_ms > absorbed:
            continue
        out[t.rank] = Finding(
            id=JOB_RULE.id, kind=JOB_RULE.kind, severity=Severity.INFO, confidence=0.8,
            title=(f"Waits {absorbed:.1f} ms per step for rank {slow.rank} at the collectives, longer than its "
                   f"own data wait ({t.wait_ms:.1f} ms)"),
            evidence={"rank": t.rank, "waits_for_rank": slow.rank, "collective_wait_ms_per_step": round(absorbed, 4),
                      "data_wait_ms_per_step": round(t.wait_ms, 4)},
            advice=(f"This rank's data wait is hidden behind the wait for rank {slow.rank}: faster loading here "
                    f"would only lengthen that wait, so it is not input-bound in this job. Fix rank {slow.rank} first."),
        )
    return out
