"""The bounds on what a damaged or hostile file can cost the loader, each with its reason.

Every bound is far beyond anything a profiler writes, so that no real trace meets one. The
loader reads them as ``limits.NAME`` at call time (tests shrink them to reach every path).
"""

from __future__ import annotations

READ_BLOCK = 4 << 20  # bytes read from the (decompressed) stream at a time


#: bytes of events decoded at once: msgspec holds a chunk's events as objects (~7 bytes of memory
#: a byte of JSON) until its columns are built; 4 MB keeps each decoding worker near 40 MB.
CHUNK_TARGET = 4 << 20


PARALLEL_MIN_BYTES = 64 << 20  # (decompressed) size from which events are decoded in parallel


#: bytes of a plain file's events one span holds (a span's columns are built, then merged, in
#: one piece: bigger spans only raise the peak memory, of a worker and of this process).
SPAN_TARGET = 32 << 20


# Limits on hostile input. Each is far beyond anything a profiler writes, so that no real
# trace meets one; each bounds what a damaged or hostile file can cost.
#: |ts| above this (µs) is out of range. 4e15 µs as epoch time is the year 2096 (traces of
#: 2026 say 1.8e15); and (ts - earliest ts) × 1000 then stays under 8e18 ns < int64's 9.2e18.
TS_LIMIT_US = 4e15


#: dur above this (µs, 7 days) is out of range: profiler windows last seconds to minutes. It
#: keeps ts + dur within int64 ns, and sums of up to 15,000 such durations too.
DUR_LIMIT_US = 7 * 86_400e6


#: An event of which this many bytes have been read without reaching its end is skipped
#: (walked over unread) and counted; smaller ones are always read. Real events are under
#: 100 kB (a long call stack in args), this is 300 times that. Memory it may take: about
#: twice this, plus two read blocks.
MAX_EVENT_BYTES = 32 << 20


#: A metadata value tracelens reads (deviceProperties, distributedInfo, ...) bigger or deeper
#: than this refuses the file: real ones are a few kB and 3 levels deep. Metadata tracelens
#: does not read is skipped unparsed, at any size or depth.
MAX_META_VALUE_BYTES = 16 << 20


MAX_META_DEPTH = 64


MAX_KEY_BYTES = 4096  # a longer top-level key is skipped and named by its first characters


MAX_EXTRA_KEYS = 100  # names of unread top-level keys kept in TraceMeta.extra_keys


MAX_BAD_EXAMPLES = 5  # LoadStats.bad_time_examples
MAX_BAD_NAMES = 256  # distinct names counted in LoadStats.bad_time_names (the rest under "")


#: Whitespace runs of this many bytes or more at the edges of a read block that holds no event
#: boundary are squeezed to one space, so whitespace between events never piles up in memory.
SQUEEZE_WS_BYTES = 64 << 10


#: A region's text that does not decode is retried piece by piece (each joined with up to 8
#: next ones, then walked as JSON); after this many pieces in a row failed, each is tried
#: alone and a failing stretch counts as one skipped event: a region of real damage has a
#: few bad events, a region of hostile junk could hold a million pieces.
MAX_PIECE_FAILURES = 1024


#: Cost charged for walking a failed piece as JSON that finds no event (see _decode_piecewise).
WALK_MISS_BYTES = 64 << 10
