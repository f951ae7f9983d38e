"""Where `tracelens analyze --json` spends its CPU: per-stage seconds per GB, one process, one core.

Runs the real pipeline (``jobs=1``: the same code the decoding workers run, here in this
process) with timers wrapped around the functions of each stage, each counting its own CPU
time only (time in a nested stage counts for that one):

- read: file reads (``pread``), gunzip;
- scan: the header, cutting the event array at event boundaries;
- decode: msgspec parsing the events of a region (and freeing them, at the region's end);
- columns: the decoded events to numpy columns (codes, row filter), merging regions;
- model: the Trace built from the columns (ns times);
- analysis: steps, waits, GPU activity, the per-step table;
- diagnosis, document: the rules, the JSON document;
- render: the document written as JSON text (to /dev/null).

    python bench/profile_stages.py TRACE [TRACE ...]

Prints a markdown table (CPU seconds per GB of uncompressed trace, and the total).
"""

from __future__ import annotations

import gzip
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

STAGES = ("read", "scan", "decode", "columns", "model", "analysis", "diagnosis", "document", "render")
spent: defaultdict[str, float] = defaultdict(float)
_stack: list[list[Any]] = []  # [stage, start, time spent in nested stages]


def timed(fn: Callable[..., Any], stage: str) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _stack.append([stage, time.process_time(), 0.0])
        try:
            return fn(*args, **kwargs)
        finally:
            name, start, nested = _stack.pop()
            total = time.process_time() - start
            spent[name] += total - nested
            if _stack:
                _stack[-1][2] += total

    return wrapper


class _TimedDecoder:
    def __init__(self, decoder: Any) -> None:
        self.decode = timed(decoder.decode, "decode")


def instrument() -> None:
    """Wrap the functions of each stage where the pipeline looks them up."""
    import tracelens.load as load
    import tracelens.load.columns as columns
    import tracelens.load.decode as decode
    import tracelens.load.parallel as parallel
    import tracelens.load.stream as stream

    os.pread = timed(os.pread, "read")
    os.preadv = timed(os.preadv, "read")
    stream._GunzipStream.read = timed(stream._GunzipStream.read, "read")  # type: ignore[method-assign]
    for mod, name in ((parallel, "_next_cut"), (parallel, "_last_boundary"), (parallel, "_split_stream"),
                      (stream, "_split_stream"), (load, "_parse_header")):
        setattr(mod, name, timed(getattr(mod, name), "scan"))
    fast_types = columns._fast_types
    columns._fast_types = lambda *a: (*fast_types(*a)[:2], _TimedDecoder(fast_types(*a)[2]))  # type: ignore[assignment]
    decode._chunk_decoder = _TimedDecoder(decode._chunk_decoder)  # type: ignore[assignment]
    columns.fast_decode = timed(columns.fast_decode, "columns")
    decode.fast_decode = columns.fast_decode
    decode._Columns.merge = timed(decode._Columns.merge, "columns")  # type: ignore[method-assign]
    load._build_trace = timed(load._build_trace, "model")


def profile(path: Path) -> tuple[dict[str, float], float, float]:
    """(CPU seconds per stage, total CPU seconds, wall seconds) of analyzing ``path``."""
    from tracelens.analysis import analyze_trace
    from tracelens.diagnosis import diagnose
    from tracelens.document import build_document, jsondoc
    from tracelens.ranks.engine import load_rank

    spent.clear()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    analysis = timed(analyze_trace, "analysis")(load_rank([path], jobs=1))
    diagnosis = timed(diagnose, "diagnosis")(analysis, None)
    doc = timed(build_document, "document")(analysis, diagnosis, None)
    with open(os.devnull, "w") as sink:
        timed(jsondoc.write, "render")(doc, sink)
    return dict(spent), time.process_time() - cpu0, time.perf_counter() - wall0


def size_of(path: Path) -> int:
    with path.open("rb") as f:
        compressed = f.read(2) == b"\x1f\x8b"
    if compressed:
        with gzip.open(path, "rb") as f:
            return sum(len(b) for b in iter(lambda: f.read(1 << 24), b""))
    return path.stat().st_size


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    instrument()
    rows = []
    for arg in argv:
        path = Path(arg)
        gb = size_of(path) / 1e9
        stages, cpu, wall = profile(path)
        rows.append((path.name, gb, stages, cpu, wall))
    print("CPU seconds per GB of trace, per stage (one process, one core: `jobs=1`):")
    print()
    print("| trace | " + " | ".join(STAGES) + " | other | total CPU s/GB | wall s |")
    print("|---|" + "---|" * (len(STAGES) + 3))
    for name, gb, stages, cpu, wall in rows:
        cells = " | ".join(f"{stages.get(s, 0.0) / gb:.2f}" for s in STAGES)
        other = cpu - sum(stages.values())
        print(f"| {name} | {cells} | {other / gb:.2f} | {cpu / gb:.2f} | {wall:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
