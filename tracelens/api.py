"""The public entry points behind the CLI: analyze a file, a run directory or a directory of ranks."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tracelens.analysis import TraceAnalysis, analyze_trace
from tracelens.document import build_document, build_multirank_document
from tracelens.errors import BadInputError
from tracelens.load import Progress, load_trace
from tracelens.model import concat_traces
from tracelens.rules import Diagnosis, diagnose

RUN_FILES = ("trace.json.gz", "run.json")
NOT_TRACES = {"run.json", "analysis.json", "sweep.json", "compare.json"}
_RANK_IN_NAME = re.compile(r"(?:rank|worker)[-_]?(\d+)", re.IGNORECASE)


@dataclass(frozen=True)
class RankResult:
    """One rank (or the single trace) analyzed, diagnosed and turned into its document."""

    rank: int | None
    paths: tuple[str, ...]
    analysis: TraceAnalysis
    diagnosis: Diagnosis
    run: Any  # tracelens.runinfo.RunInfo when a run.json was found
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


def load_run_info(run_json: Path) -> Any:
    """run.json of a ``tracelens profile`` run, through the typed reader."""
    from tracelens.runinfo import read_run_info

    return read_run_info(run_json)


def analyze_files(paths: list[Path], run: Any = None, rank: int | None = None,
                  jobs: int | None = None, progress: Progress | None = None) -> RankResult:
    """Analyze one rank held in one or more trace files (``jobs``: decoding processes per file)."""
    traces = [load_trace(p, jobs=jobs, progress=progress) for p in paths]
    analysis = analyze_trace(concat_traces(traces))
    if rank is not None and analysis.rank is None:
        analysis = _with_rank(analysis, rank)
    diagnosis = diagnose(analysis, run)
    doc = build_document(analysis, diagnosis, run)
    return RankResult(analysis.rank, tuple(str(p) for p in paths), analysis, diagnosis, run, doc)


def _with_rank(a: TraceAnalysis, rank: int) -> TraceAnalysis:
    from dataclasses import replace

    return replace(a, rank=rank)


def _is_run_dir(p: Path) -> bool:
    return (p / "run.json").is_file() and any((p / n).is_file() for n in ("trace.json.gz", "trace.json"))


def _trace_files(d: Path) -> list[Path]:
    found = [f for f in d.rglob("*") if f.is_file() and f.name.endswith((".json", ".json.gz"))]
    kineto = [f for f in found if ".pt.trace.json" in f.name]
    files = kineto or [f for f in found if f.name not in NOT_TRACES]
    return sorted(files)


def _peek_rank(path: Path) -> int | None:
    """The rank a file declares (distributedInfo), read from its header only."""
    from tracelens.load import _parse_header, _Reader

    r = _Reader(path)
    try:
        _, header = _parse_header(r)
    except BadInputError:
        return None
    finally:
        r.close()
    info = header.get("distributedInfo")
    if isinstance(info, dict) and isinstance(info.get("rank"), int):
        return int(info["rank"])
    return None


def group_by_rank(files: list[Path]) -> dict[int, list[Path]]:
    """Rank of each file: distributedInfo.rank, else a number in its name, else its order."""
    ranks: dict[int, list[Path]] = {}
    declared = [_peek_rank(f) for f in files]
    named = [_RANK_IN_NAME.search(f.name) for f in files]
    use_names = all(m is not None for m in named) and len({m.group(1) for m in named if m}) > 1
    for i, f in enumerate(files):
        r = declared[i]
        if r is None and use_names:
            r = int(named[i].group(1))  # type: ignore[union-attr]
        if r is None:
            r = i
        ranks.setdefault(r, []).append(f)
    if len(ranks) == len(files) and all(d is None for d in declared) and not use_names and len(files) > 1:
        pass  # file order: every file its own rank
    return ranks


def _analyze_rank_job(args: tuple[list[str], int, int | None]) -> RankResult:
    paths, rank, jobs = args
    return analyze_files([Path(p) for p in paths], rank=rank, jobs=jobs)


def analyze_path(path: str | Path, jobs: int | None = None, progress: Progress | None = None,
                 scheduler: str | None = None,
                 on_ranks: Callable[[int, int, int], None] | None = None) -> Result:
    """Analyze a trace file, a ``tracelens profile`` run directory, or a directory of traces.

    ``progress(done, total)`` is called now and then while a single file is read (bytes).
    With a Dask ``scheduler`` address, or a URL ``path``, the ranks are analyzed by
    :func:`tracelens.jobs.analyze_location` (``on_ranks(done, total, bytes_read)`` as they finish).
    """
    from tracelens.storage import is_url

    if scheduler or is_url(path):
        from tracelens.jobs import analyze_location

        return analyze_location(path, scheduler=scheduler, jobs=jobs, on_progress=on_ranks)
    p = Path(path)
    if not p.exists():
        raise BadInputError(p, "no such file or directory")
    if p.is_file():
        r = analyze_files([p], progress=progress)
        return Result(str(p), (r,), r.document)
    if _is_run_dir(p):
        trace = p / "trace.json.gz" if (p / "trace.json.gz").is_file() else p / "trace.json"
        run = load_run_info(p / "run.json")
        r = analyze_files([trace], run=run)
        return Result(str(p), (r,), r.document)
    files = _trace_files(p)
    if not files:
        raise BadInputError(p, "the directory holds no trace files (*.json, *.json.gz)")
    groups = group_by_rank(files)
    if len(groups) == 1:
        (rank, paths), = groups.items()
        r = analyze_files(paths, rank=rank if len(files) > 1 else None)
        return Result(str(p), (r,), r.document)
    items = sorted(groups.items())
    workers = jobs or min(len(items), os.cpu_count() or 1)
    # Ranks in parallel processes already use the cores: each decodes its file in one process.
    per_file_jobs = 1 if workers > 1 else None
    job_args = [([str(f) for f in fs], rank, per_file_jobs) for rank, fs in items]
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(_analyze_rank_job, job_args))
    else:
        results = [_analyze_rank_job(a) for a in job_args]
    doc = build_multirank_document([r.document for r in results], str(p))
    return Result(str(p), tuple(results), doc)


def write_run_outputs(run_dir: str | Path) -> Result:
    """Analyze a run directory and write its ``analysis.json`` and ``report.html``."""
    d = Path(run_dir)
    result = analyze_path(d)
    (d / "analysis.json").write_text(json.dumps(result.document, indent=2) + "\n")
    try:
        from tracelens.report import write_report
    except ImportError:
        return result
    write_report(result, d / "report.html")
    return result
