"""One rank through the pipeline: its trace file(s) loaded, analyzed, diagnosed (with its
run.json when there is one) and turned into its document."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from tracelens.analysis import ROWS_READ, analyze_trace, needs_every_row
from tracelens.diagnosis import diagnose
from tracelens.document import build_document
from tracelens.load import Progress, load_trace
from tracelens.locate import RankSource
from tracelens.model import Trace, concat_traces
from tracelens.results import RankResult
from tracelens.runjson import RunInfo, read_run_info


def analyze_files(paths: list[Path], run: RunInfo | None = None, rank: int | None = None,
                  jobs: int | None = None, progress: Progress | None = None) -> RankResult:
    """Analyze one rank held in one or more trace files (``jobs``: decoding processes per file)."""
    analysis = analyze_trace(load_rank(paths, jobs, progress))
    if rank is not None and analysis.rank is None:
        analysis = replace(analysis, rank=rank)
    diagnosis = diagnose(analysis, run)
    doc = build_document(analysis, diagnosis, run)
    return RankResult(analysis.rank, tuple(str(p) for p in paths), analysis, diagnosis, run, doc)


def load_rank(paths: list[Path], jobs: int | None = None, progress: Progress | None = None) -> Trace:
    """The rows of one rank's trace files that the analysis reads (all rows when it needs them)."""
    trace = concat_traces([load_trace(p, jobs=jobs, progress=progress, rows=ROWS_READ) for p in paths])
    if needs_every_row(trace):
        del trace
        trace = concat_traces([load_trace(p, jobs=jobs, progress=progress) for p in paths])
    return trace


def analyze_source(source: RankSource, jobs: int | None = None, progress: Progress | None = None) -> RankResult:
    """Analyze one rank as located (its traces and run.json)."""
    run = read_run_info(source.run_json) if source.run_json is not None else None
    return analyze_files(list(source.paths), run=run, rank=source.rank, jobs=jobs, progress=progress)
