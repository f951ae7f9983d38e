"""One rank through the pipeline: its trace file(s) loaded, analyzed, diagnosed (with its
run.json when there is one) and turned into its document."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from tracelens.analysis import analyze_trace
from tracelens.diagnosis import diagnose
from tracelens.document.build import build_document
from tracelens.document.result import RankResult
from tracelens.load import Progress, load_trace
from tracelens.model import concat_traces
from tracelens.ranks.plan import RankSource
from tracelens.runjson import RunInfo, read_run_info


def analyze_files(paths: list[Path], run: RunInfo | None = None, rank: int | None = None,
                  jobs: int | None = None, progress: Progress | None = None) -> RankResult:
    """Analyze one rank held in one or more trace files (``jobs``: decoding processes per file)."""
    traces = [load_trace(p, jobs=jobs, progress=progress) for p in paths]
    analysis = analyze_trace(concat_traces(traces))
    if rank is not None and analysis.rank is None:
        analysis = replace(analysis, rank=rank)
    diagnosis = diagnose(analysis, run)
    doc = build_document(analysis, diagnosis, run)
    return RankResult(analysis.rank, tuple(str(p) for p in paths), analysis, diagnosis, run, doc)


def analyze_source(source: RankSource, jobs: int | None = None, progress: Progress | None = None) -> RankResult:
    """Analyze one rank as located (its traces and run.json)."""
    run = read_run_info(source.run_json) if source.run_json is not None else None
    return analyze_files(list(source.paths), run=run, rank=source.rank, jobs=jobs, progress=progress)
