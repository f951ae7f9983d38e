"""Thousands of ranks made readable: what the rank views show, computed from per-rank documents.

Pure functions over the SPEC §3 rank objects (a job document's ``ranks``), no rendering: the spread
of data wait across ranks with the worst ranks named, and a rank × step matrix of exposed data
wait downsampled into buckets so that 4,096 ranks × thousands of steps stay a few thousand cells.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tracelens.document.schema import Document, rank_documents

MAX_ROWS = 64  # rank buckets in the matrix at most
MAX_COLS = 64  # step buckets in the matrix at most
WORST = 10  # ranks named in the distribution


@dataclass(frozen=True)
class Spread:
    """A fraction of step time (0..1) across ranks: median, 90th percentile, maximum.

    Percentiles interpolate linearly between ranks (numpy's default); all None when no rank
    has the value. ``ranks`` counts the ranks that have it.
    """

    median: float | None
    p90: float | None
    max: float | None
    ranks: int


@dataclass(frozen=True)
class RankSummary:
    """One rank's line in a worst-ranks list."""

    rank: int
    name: str  # the trace file's name (the first file's, "+N" for more)
    data_wait_fraction: float | None
    exposed_data_wait_fraction: float | None
    step_time_ms_median: float | None


@dataclass(frozen=True)
class RankDistribution:
    """How data wait is spread across the ranks, and which ranks wait most."""

    ranks: int
    data_wait: Spread
    exposed_wait: Spread
    worst: tuple[RankSummary, ...]  # the largest exposed data wait first


@dataclass(frozen=True)
class WaitMatrix:
    """Exposed data wait per step (ms) over buckets of ranks (rows) × buckets of steps (columns).

    Row i covers ranks ``rank_buckets[i]`` = (first, last) in rank order; column j covers step
    numbers ``step_buckets[j]`` = (first, last). ``mean_ms`` is the mean over the steps present
    in the cell, ``max_ms`` the largest single step (None: no step there). ``worst_rank[i]`` is
    the rank of row i with the most exposed wait in all.
    """

    rank_buckets: tuple[tuple[int, int], ...]
    step_buckets: tuple[tuple[int, int], ...]
    mean_ms: tuple[tuple[float | None, ...], ...]
    max_ms: tuple[tuple[float | None, ...], ...]
    worst_rank: tuple[int, ...]


__all__ = ["RankDistribution", "RankSummary", "Spread", "WaitMatrix", "exposed_wait_matrix", "rank_distribution",
           "rank_documents", "spread"]


def _rank_of(doc: Document, i: int) -> int:
    r = doc.rank
    return r if r is not None else i


def _name(doc: Document) -> str:
    paths = doc.source.path.split(" + ")
    first = paths[0].rstrip("/").rsplit("/", 1)[-1]
    return first + (f" +{len(paths) - 1}" if len(paths) > 1 else "")


def _finite(v: float | None) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None


def _round(x: float) -> float:
    return round(float(x), 6)


def spread(values: Sequence[float | None]) -> Spread:
    """Median, p90 and max of the values that are not None."""
    xs = np.array([v for v in values if v is not None], dtype=np.float64)
    if not len(xs):
        return Spread(None, None, None, 0)
    med, p90 = np.percentile(xs, [50, 90])
    return Spread(_round(med), _round(p90), _round(xs.max()), len(xs))


def rank_distribution(docs: Sequence[Document], worst: int = WORST) -> RankDistribution:
    """The spread of data wait and exposed data wait across ranks, and the ``worst`` ranks."""
    rows = [RankSummary(_rank_of(d, i), _name(d), _finite(d.metrics.data_wait_fraction),
                        _finite(d.metrics.exposed_data_wait_fraction), _finite(d.metrics.step_time_ms_median))
            for i, d in enumerate(docs)]
    ranked = sorted(rows, key=lambda s: (-(s.exposed_data_wait_fraction if s.exposed_data_wait_fraction is not None else -1.0), s.rank))
    return RankDistribution(
        ranks=len(rows),
        data_wait=spread([s.data_wait_fraction for s in rows]),
        exposed_wait=spread([s.exposed_data_wait_fraction for s in rows]),
        worst=tuple(ranked[:worst]),
    )


def _bucket_size(n: int, most: int) -> int:
    """Items per bucket so that ``n`` ordered items fill at most ``most`` contiguous buckets."""
    return max(1, math.ceil(n / max(1, most)))


def _spans(keys: list[int], size: int) -> tuple[tuple[int, int], ...]:
    """(first, last) key of each bucket of ``size`` consecutive keys."""
    return tuple((keys[b], keys[min(b + size, len(keys)) - 1]) for b in range(0, len(keys), size))


def exposed_wait_matrix(docs: Sequence[Document], max_rows: int = MAX_ROWS,
                        max_cols: int = MAX_COLS) -> WaitMatrix:
    """The rank × step matrix of exposed data wait (ms), at most ``max_rows`` × ``max_cols`` cells.

    Steps are matched across ranks by their number. Memory grows with the cells, not with
    ranks × steps: each rank's steps are added into its row bucket as it is read.
    """
    order = sorted(range(len(docs)), key=lambda i: _rank_of(docs[i], i))
    ranks = [_rank_of(docs[i], i) for i in order]
    steps = sorted({s.step for d in docs for s in d.per_step})
    row_size, col_size = _bucket_size(len(ranks), max_rows), _bucket_size(len(steps), max_cols)
    col_of = {step: j // col_size for j, step in enumerate(steps)}
    shape = (math.ceil(len(ranks) / row_size), math.ceil(len(steps) / col_size))
    total, count, peak = np.zeros(shape), np.zeros(shape, dtype=np.int64), np.full(shape, -np.inf)
    worst: dict[int, tuple[float, int]] = {}
    for pos, i in enumerate(order):
        row = pos // row_size
        pairs = [(col_of[s.step], w) for s in docs[i].per_step
                 if (w := _finite(s.exposed_wait_ms)) is not None]
        cols = np.array([c for c, _ in pairs], dtype=np.int64)
        values = np.array([v for _, v in pairs], dtype=np.float64)
        np.add.at(total[row], cols, values)
        np.add.at(count[row], cols, 1)
        np.maximum.at(peak[row], cols, values)
        if row not in worst or values.sum() > worst[row][0]:
            worst[row] = (float(values.sum()), ranks[pos])
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count

    def cells(a: np.ndarray) -> tuple[tuple[float | None, ...], ...]:
        return tuple(tuple(round(float(x), 4) if n else None for x, n in zip(r, k)) for r, k in zip(a, count))

    return WaitMatrix(
        rank_buckets=_spans(ranks, row_size),
        step_buckets=_spans(steps, col_size),
        mean_ms=cells(mean),
        max_ms=cells(peak),
        worst_rank=tuple(worst[r][1] for r in range(shape[0])),
    )
