"""Resident memory of the server process.

glibc gives every thread that allocates its own heap arena (up to 8 per core). Under load the
server runs model calls on many request threads, and each arena keeps what those calls freed as
cache: with 32 concurrent clients the process peaked at 3.0 GB, against 1.9 GB with two arenas at
the same throughput (benchmarks/results/server.md). So ``ragtune serve`` caps the arenas before
its threads start, unless ``MALLOC_ARENA_MAX`` is set in the environment (glibc reads it itself).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

M_ARENA_MAX = -8  # glibc's mallopt parameter number (malloc.h)


def cap_malloc_arenas(arenas: int) -> bool:
    """At most ``arenas`` glibc heap arenas from now on; False where that cannot apply (not Linux,
    not glibc, ``arenas`` ≤ 0, or ``MALLOC_ARENA_MAX`` already chosen by whoever started us)."""
    if arenas <= 0 or platform.system() != "Linux" or "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    return bool(mallopt(M_ARENA_MAX, arenas))
