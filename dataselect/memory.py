"""Handing freed memory back to the operating system between the runs of a long-lived worker.

A build worker runs one Dagster run after another. The C library keeps the pages of freed
allocations below its mmap threshold (which rises with each large block freed, up to 32 MB) for
reuse, so after a run over a whole pool a worker went on holding gigabytes it no longer used: in a
1M-record build the worker that had run ``filtered_set`` still held 5.3 GB while the report's
worker grew past 13 GB, and the machine (23 GB, no swap) killed the report.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _malloc_trim():
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to call
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_freed_memory() -> bool:
    """Return the free pages of the C heap to the OS (glibc's ``malloc_trim(0)``, which also releases
    free pages inside the heap); False where the C library has no such call."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
