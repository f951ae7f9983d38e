"""Build a large trace by repeating a real trace's events with shifted times.

Each repetition shifts every ``ts`` by the source's span and renumbers ``ProfilerStep#N``, so the
result reads as one long recording (same event mix, same formatting as the profiler wrote: an
integer ``ts`` stays an integer, a fractional one keeps 3 decimals).

    python bench/make_big_trace.py SOURCE.json[.gz] OUT.json --size-mb 1000 [--gzip]
"""

from __future__ import annotations

import argparse
import gzip
import math
import re
import sys
from pathlib import Path

TS = re.compile(rb'"ts": (-?\d+(?:\.\d+)?)')
STEP = re.compile(rb'"ProfilerStep#(\d+)"')
EVENTS = re.compile(rb'"traceEvents"\s*:\s*\[')


def _shifted(token: bytes, shift: int) -> bytes:
    """A ``"ts": value`` moved by ``shift`` µs, written the way the source wrote it."""
    if b"." in token:
        return b'"ts": %.3f' % (float(token) + shift)
    return b'"ts": %d' % (int(token) + shift)


def _split(raw: bytes) -> tuple[bytes, bytes, bytes]:
    """(header up to and including '[', the events text, the closing tail from ']')."""
    m = EVENTS.search(raw)
    if m is None:
        raise SystemExit("source has no traceEvents array")
    end = raw.rindex(b"]")
    return raw[: m.end()], raw[m.end() : end].rstrip().rstrip(b","), raw[end:]


def build(source: Path, out: Path, size_mb: float, compress: bool) -> int:
    """Write ``out`` of about ``size_mb`` MB (uncompressed); return the repetitions made."""
    raw = source.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    head, events, tail = _split(raw)
    stamps = [float(x) for x in TS.findall(events)]
    span = math.ceil(max(stamps) - min(stamps)) + 1000  # µs; whole, so integer stamps stay integers
    steps = [int(x) for x in STEP.findall(events)]
    step_span = (max(steps) - min(steps) + 1) if steps else 0
    reps = max(1, round(size_mb * 1e6 / len(events)))
    sink = gzip.open(out, "wb", compresslevel=6) if compress else out.open("wb")  # noqa: SIM115
    with sink as f:
        f.write(head)
        for k in range(reps):
            shift = k * span
            text = TS.sub(lambda m, s=shift: _shifted(m.group(1), s), events)
            if step_span:
                text = STEP.sub(lambda m, k=k: b'"ProfilerStep#%d"' % (int(m.group(1)) + k * step_span), text)
            f.write(text)
            f.write(b",\n" if k < reps - 1 else b"\n")
            print(f"\rrepetition {k + 1}/{reps}", end="", file=sys.stderr)
        f.write(tail)
    print(file=sys.stderr)
    return reps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--size-mb", type=float, default=1000.0, help="uncompressed size to reach (MB)")
    ap.add_argument("--gzip", action="store_true", help="write gzip-compressed")
    a = ap.parse_args()
    reps = build(a.source, a.out, a.size_mb, a.gzip)
    print(f"{a.out}: {reps} repetitions, {a.out.stat().st_size / 1e6:.0f} MB on disk")


if __name__ == "__main__":
    main()
