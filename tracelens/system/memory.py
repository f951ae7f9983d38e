"""Freed memory given back to the OS at once (glibc), so that a process's peak RSS is what it holds.

glibc serves a block of at least ``M_MMAP_THRESHOLD`` bytes (128 KiB at start) with its own
mapping, unmapped when freed. But the first such block freed raises the threshold to its size
(up to 32 MiB): from then on, arrays of a few MB to 32 MB come from the heap, which gives memory
back only from its top. The analysis frees one column of a million steps (8 MB) after another
while it builds the next, so that heap kept hundreds of MB nobody used (3 million steps: 480
instead of 330 MB after loading). Setting the threshold fixes it where it is: every block of
:data:`MMAP_THRESHOLD_BYTES` or more is mapped, and returned when freed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)
#: Blocks this big or bigger are mapped on their own (page faults on first touch, at most one
#: in 64 pages more than from the heap).
MMAP_THRESHOLD_BYTES = 256 << 10


def return_freed_memory() -> bool:
    """Ask glibc to map big blocks on their own, for the rest of the process (forked children
    inherit it); whether it could (False off Linux, or on another C library)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
