"""The public entry points behind the CLI: analyze a file, a run directory or a directory of ranks."""

from __future__ import annotations

import os
import re
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from tracelens.analysis import TraceAnalysis, analyze_trace
from tracelens.diagnosis import diagnose
from tracelens.document import build_document, build_multirank_document
from tracelens.errors import BadInputError
from tracelens.load import Progress, load_trace, read_header
from tracelens.model import concat_traces
from tracelens.results import RankResult, Result
from tracelens.runjson import RunInfo, read_run_info

RUN_FILES = ("trace.json.gz", "run.json")
NOT_TRACES = {"run.json", "analysis.json", "sweep.json", "compare.json"}
_RANK_IN_NAME = re.compile(r"(?:rank|worker)[-_]?(\d+)", re.IGNORECASE)


def analyze_files(paths: list[Path], run: RunInfo | None = None, rank: int | None = None,
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
    try:
        header = read_header(path)
    except BadInputError:
        return None
    info = header.get("distributedInfo")
    if isinstance(info, dict) and isinstance(info.get("rank"), int):
        return int(info["rank"])
    return None


def group_by_rank(files: list[Path]) -> dict[int, list[Path]]:
    """Rank of each file: distributedInfo.rank, else a number in its name (or in the name of its
    run directory: ``rank-3/trace.json.gz``), else its order."""
    ranks: dict[int, list[Path]] = {}
    declared = [_peek_rank(f) for f in files]
    named = [_RANK_IN_NAME.search(f.name) or (_RANK_IN_NAME.search(f.parent.name) if _is_run_dir(f.parent) else None)
             for f in files]
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


def _run_of(files: list[Path]) -> Path | None:
    """The run.json beside a rank's single trace in a ``tracelens profile`` run directory."""
    return files[0].parent / "run.json" if len(files) == 1 and _is_run_dir(files[0].parent) else None


def _analyze_rank_job(args: tuple[list[str], int, int | None, str | None]) -> RankResult:
    paths, rank, jobs, run_json = args
    run = read_run_info(run_json) if run_json is not None else None
    return analyze_files([Path(p) for p in paths], run=run, rank=rank, jobs=jobs)


def analyze_path(path: str | Path, jobs: int | None = None, progress: Progress | None = None) -> Result:
    """Analyze a trace file, a ``tracelens profile`` run directory, or a directory of traces.

    ``progress(done, total)`` is called now and then while a single file is read (bytes).
    """
    p = Path(path)
    if not p.exists():
        raise BadInputError(p, "no such file or directory")
    if p.is_file():
        r = analyze_files([p], progress=progress)
        return Result(str(p), (r,), r.document)
    if _is_run_dir(p):
        trace = p / "trace.json.gz" if (p / "trace.json.gz").is_file() else p / "trace.json"
        run = read_run_info(p / "run.json")
        r = analyze_files([trace], run=run)
        return Result(str(p), (r,), r.document)
    files = _trace_files(p)
    if not files:
        raise BadInputError(p, "the directory holds no trace files (*.json, *.json.gz)")
    groups = group_by_rank(files)
    if len(groups) == 1:
        (rank, paths), = groups.items()
        run_json = _run_of(paths)
        r = analyze_files(paths, run=read_run_info(run_json) if run_json else None,
                          rank=rank if len(files) > 1 or run_json else None)
        return Result(str(p), (r,), r.document)
    items = sorted(groups.items())
    workers = jobs or min(len(items), os.cpu_count() or 1)
    # Ranks in parallel processes already use the cores: each decodes its file in one process.
    per_file_jobs = 1 if workers > 1 else None
    job_args = [([str(f) for f in fs], rank, per_file_jobs, str(_run_of(fs) or "") or None)
                for rank, fs in items]
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(_analyze_rank_job, job_args))
    else:
        results = [_analyze_rank_job(a) for a in job_args]
    doc = build_multirank_document([r.document for r in results], str(p))
    return Result(str(p), tuple(results), doc)

