"""Where the traces of a local path are: one file, a run directory, or a directory of ranks.

A directory of ranks holds trace files (Kineto's ``*.pt.trace.json[.gz]`` first), or run
directories (``tracelens profile`` output, e.g. ``OUT/rank-<N>/``) whose run.json goes with their
trace, or both. A file's rank is the one its run.json or trace header declares, else a number in
its name, else its order. Special files are named for what they are.
"""

from __future__ import annotations

import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tracelens.errors import BadInputError
from tracelens.load import read_header

#: Files a run directory or a job directory holds that are not traces.
NOT_TRACES = frozenset({"run.json", "analysis.json", "sweep.json", "compare.json"})
RANK_IN_NAME = re.compile(r"(?:rank|worker)[-_]?(\d+)", re.IGNORECASE)
RUN_TRACES = ("trace.json.gz", "trace.json")
_SPECIAL = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
            (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


@dataclass(frozen=True)
class RankSource:
    """One rank's trace file(s), and the run.json that goes with them (None: a bare trace).

    ``rank`` is None for a single trace analyzed on its own (it keeps the rank it declares).
    """

    rank: int | None
    paths: tuple[Path, ...]
    run_json: Path | None = None


@dataclass(frozen=True)
class Located:
    """A path resolved into ranks; ``multi_rank`` when the result is the multi-rank shape."""

    location: str
    sources: tuple[RankSource, ...]
    multi_rank: bool


def check_readable_kind(p: Path) -> None:
    """Refuse a path that does not exist or is no regular file or directory, naming what it is."""
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        raise BadInputError(p, "no such file or directory") from None
    except OSError as exc:
        raise BadInputError(p, f"cannot be read: {exc.strerror or exc}") from None
    for test, what in _SPECIAL:
        if test(mode):
            raise BadInputError(p, f"is {what}, not a trace file: save the trace to a file and analyze that")


def is_run_dir(p: Path) -> bool:
    """A ``tracelens profile`` run directory: run.json beside its trace."""
    return (p / "run.json").is_file() and any((p / n).is_file() for n in RUN_TRACES)


def run_trace(run_dir: Path) -> Path:
    """The trace file of a run directory."""
    return next(run_dir / n for n in RUN_TRACES if (run_dir / n).is_file())


def trace_files(d: Path, skip: Iterable[Path] = ()) -> list[Path]:
    """Trace files under ``d`` (Kineto's names first), outside the directories in ``skip``."""
    skipped = tuple(skip)
    found = [f for f in d.rglob("*") if f.is_file() and f.name.endswith((".json", ".json.gz"))
             and not any(s in f.parents for s in skipped)]
    kineto = [f for f in found if ".pt.trace.json" in f.name]
    return sorted(kineto or [f for f in found if f.name not in NOT_TRACES])


def peek_rank(path: Path) -> int | None:
    """The rank a trace declares (``distributedInfo.rank``), read from its header only."""
    try:
        info = read_header(path).get("distributedInfo")
    except BadInputError:
        return None
    if isinstance(info, dict) and isinstance(info.get("rank"), int):
        return int(info["rank"])
    return None


def group_by_rank(files: list[Path]) -> dict[int, list[Path]]:
    """Rank of each file: distributedInfo.rank, else a number in its name, else its order."""
    ranks: dict[int, list[Path]] = {}
    declared = [peek_rank(f) for f in files]
    named = [RANK_IN_NAME.search(f.name) for f in files]
    use_names = all(m is not None for m in named) and len({m.group(1) for m in named if m}) > 1
    for i, f in enumerate(files):
        r = declared[i]
        if r is None and use_names:
            r = int(named[i].group(1))  # type: ignore[union-attr]
        ranks.setdefault(i if r is None else r, []).append(f)
    return ranks


def _run_dir_rank(run_dir: Path, order: int) -> int:
    """A rank run directory's rank: run.json's RANK, else its trace's header, else its name, else order."""
    from tracelens.runjson import read_run_info

    with_rank = read_run_info(run_dir).machine.rank
    if with_rank is not None:
        return with_rank
    declared = peek_rank(run_trace(run_dir))
    if declared is not None:
        return declared
    named = RANK_IN_NAME.search(run_dir.name)
    return int(named.group(1)) if named else order


def locate(path: str | Path) -> Located:
    """The ranks at ``path`` (raises :class:`BadInputError` when there is nothing to analyze)."""
    p = Path(path)
    check_readable_kind(p)
    if p.is_file():
        return Located(str(p), (RankSource(None, (p,)),), False)
    if is_run_dir(p):
        return Located(str(p), (RankSource(None, (run_trace(p),), p / "run.json"),), False)
    run_dirs = sorted(d.parent for d in p.rglob("run.json") if is_run_dir(d.parent))
    sources = [RankSource(_run_dir_rank(d, i), (run_trace(d),), d / "run.json") for i, d in enumerate(run_dirs)]
    loose = trace_files(p, skip=run_dirs)
    groups = group_by_rank(loose) if loose else {}
    taken = {s.rank for s in sources if s.rank is not None}
    spare = max(taken | set(groups), default=-1) + 1  # loose traces whose rank a run directory has
    for r, fs in sorted(groups.items()):
        if r in taken:
            r, spare = spare, spare + 1
        sources.append(RankSource(r, tuple(fs)))
    if not sources:
        raise BadInputError(p, "the directory holds no trace files (*.json, *.json.gz) and no run directories")
    if len(sources) == 1:
        only = sources[0]
        return Located(str(p), (RankSource(only.rank if len(only.paths) > 1 else None, only.paths, only.run_json),), False)
    return Located(str(p), tuple(sorted(sources, key=lambda s: s.rank or 0)), True)
