"""Where the ranks of a location are: one file, a run directory, or a directory of ranks.

A location is a local path or an fsspec URL; both are listed by
:func:`tracelens.ranks.store.list_tree` and planned by the rules here, so a directory gives the
same ranks by path and by URL. A directory of ranks holds trace files (Kineto's
``*.pt.trace.json[.gz]`` first), or run directories (``tracelens profile`` output, e.g.
``OUT/rank-<N>/``) whose run.json goes with their trace, or both.

Each rank is found one way: the rank its run.json (``RANK``) or its trace header
(``distributedInfo.rank``) declares, else a number in its name when every name has a different
one, else its order. Several trace files of one rank are one job.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from tracelens.errors import BadInputError
from tracelens.ranks.store import basename, list_tree, parts, peek_rank, read_bytes
from tracelens.runjson import decode_run_info

#: Files a run directory or a job directory holds that are not traces.
NOT_TRACES = frozenset({"run.json", "analysis.json", "sweep.json", "compare.json"})
RANK_IN_NAME = re.compile(r"(?:rank|worker)[-_]?(\d+)", re.IGNORECASE)
#: The trace of a run directory, in order of preference.
RUN_TRACES = ("trace.json.gz", "trace.json")
PEEK_THREADS = 16  # concurrent header and run.json reads while planning (remote storage waits)

_T = TypeVar("_T")


@dataclass(frozen=True)
class RankJob:
    """One rank's work: its trace file(s) and run.json by location (a path or a URL).

    ``rank`` is None for a single trace analyzed on its own (it keeps the rank it declares).
    ``decode_jobs`` is the processes decoding each file (1: in the job's own process).
    """

    rank: int | None
    paths: tuple[str, ...]
    run_json: str | None = None
    decode_jobs: int | None = 1


@dataclass(frozen=True)
class Plan:
    """A location resolved into rank jobs; ``multi_rank`` when the result is the multi-rank shape."""

    location: str  # as the documents name it
    jobs: tuple[RankJob, ...]
    multi_rank: bool


#: ``tensorboard_trace_handler``'s file name: ``<worker name>.<epoch ms>.pt.trace.json[.gz]``;
#: one process writes one such file per profiler cycle.
CYCLE_NAME = re.compile(r"^(?P<process>.+)\.\d+\.pt\.trace\.json(?:\.gz)?$")


def _process_of(name: str) -> str:
    """The process that wrote ``name``: its cycles share it (any other file is its own)."""
    m = CYCLE_NAME.match(basename(name))
    return f"{name.rpartition('/')[0]}/{m.group('process')}" if m else name


def ranks_of(names: Sequence[str], declared: Sequence[int | None]) -> list[int]:
    """Each item's rank: the one it declares, else the number in its name (``rank3``,
    ``worker_3``) when every name has one and they differ, else its process's position (the
    cycles one process's ``tensorboard_trace_handler`` wrote are one rank, not several)."""
    named = [RANK_IN_NAME.search(basename(n)) for n in names]
    use_names = all(m is not None for m in named) and len({m.group(1) for m in named if m}) > 1
    processes = [_process_of(n) for n in names]
    position = {p: i for i, p in enumerate(dict.fromkeys(processes))}
    return [d if d is not None else int(m.group(1)) if use_names and m is not None else position[p]
            for d, m, p in zip(declared, named, processes)]


def _concurrently(fn: Callable[[str], _T], items: Sequence[str]) -> list[_T]:
    if len(items) <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=min(PEEK_THREADS, len(items))) as pool:
        return list(pool.map(fn, items))


def run_json_rank(location: str) -> int | None:
    """The rank a run.json declares; None when it has none or cannot be read (the rank's job
    then reports why)."""
    try:
        return decode_run_info(read_bytes(location), location).machine.rank
    except Exception:
        return None


def _join(d: str, name: str) -> str:
    return f"{d}/{name}" if d else name


def _run_trace(d: str, names: set[str]) -> str | None:
    """The trace of the run directory ``d`` (relative; "" is the top), None when ``d`` is none."""
    if _join(d, "run.json") not in names:
        return None
    return next((_join(d, n) for n in RUN_TRACES if _join(d, n) in names), None)


def _loose_traces(names: Sequence[str], run_dirs: set[str]) -> list[str]:
    """Trace files outside the run directories (Kineto's names first), sorted by parts."""
    def in_run_dir(n: str) -> bool:
        up = n.split("/")[:-1]
        return any("/".join(up[: k + 1]) in run_dirs for k in range(len(up)))

    found = [n for n in names if n.endswith((".json", ".json.gz")) and not in_run_dir(n)]
    kineto = [n for n in found if ".pt.trace.json" in basename(n)]
    return sorted(kineto or [n for n in found if basename(n) not in NOT_TRACES], key=parts)


def plan(location: str | Path) -> Plan:
    """The rank jobs at ``location`` (raises :class:`BadInputError` when there is nothing to analyze).

    One job for a file, a run directory or a directory holding one rank; one job per rank
    otherwise, sorted by rank.
    """
    tree = list_tree(location)
    if tree.is_file:
        return Plan(tree.location, (RankJob(None, (tree.location,)),), False)
    at = dict(zip(tree.names, tree.locations))
    names = set(tree.names)
    top = _run_trace("", names)
    if top is not None:
        return Plan(tree.location, (RankJob(None, (at[top],), at["run.json"]),), False)
    run_dirs = sorted({n.rpartition("/")[0] for n in tree.names if basename(n) == "run.json"} - {""}, key=parts)
    runs = [(d, t) for d in run_dirs if (t := _run_trace(d, names)) is not None]
    jobs = _run_dir_jobs(runs, at)
    taken = {j.rank for j in jobs if j.rank is not None}
    groups = _loose_groups(_loose_traces(tree.names, {d for d, _ in runs}), at)
    spare = max(taken | set(groups), default=-1) + 1  # loose traces whose rank a run directory has
    for r, fs in sorted(groups.items()):
        if r in taken:
            r, spare = spare, spare + 1
        jobs.append(RankJob(r, tuple(fs)))
    if not jobs:
        raise BadInputError(tree.location, "the directory holds no trace files (*.json, *.json.gz) and no run directories")
    if len(jobs) == 1:
        only = jobs[0]
        return Plan(tree.location, (RankJob(only.rank if len(only.paths) > 1 else None, only.paths, only.run_json),), False)
    return Plan(tree.location, tuple(sorted(jobs, key=lambda j: j.rank or 0)), True)


def _run_dir_jobs(runs: list[tuple[str, str]], at: dict[str, str]) -> list[RankJob]:
    """One job per run directory ``(dir, its trace)``: run.json's rank, else its trace header's,
    else its name's, else its order."""
    declared = _concurrently(run_json_rank, [at[_join(d, "run.json")] for d, _ in runs])
    headers = iter(_concurrently(peek_rank, [at[t] for (_, t), r in zip(runs, declared) if r is None]))
    declared = [r if r is not None else next(headers) for r in declared]
    ranks = ranks_of([d for d, _ in runs], declared)
    return [RankJob(r, (at[t],), at[_join(d, "run.json")]) for r, (d, t) in zip(ranks, runs)]


def _loose_groups(loose: list[str], at: dict[str, str]) -> dict[int, list[str]]:
    """Trace files outside run directories by rank (their locations, in order)."""
    ranks = ranks_of(loose, _concurrently(peek_rank, [at[n] for n in loose]))
    groups: dict[int, list[str]] = {}
    for r, n in zip(ranks, loose):
        groups.setdefault(r, []).append(at[n])
    return groups
