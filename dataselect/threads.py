"""How many threads one process may use: every core, unless a build runs several processes at once.

Two build workers on two cores, each with OpenBLAS, OpenMP (faiss) and our own thread pools at
full width, oversubscribe the machine: spinning BLAS and OpenMP threads then wait on each other
(a 256 x 256 ``eigh`` took 1.1 s instead of 8 ms, faiss k-means 2.4 s instead of 0.2 s).
The build runner gives each run its share of the cores with :func:`limited`: the platform's own
thread pools (n-gram featurisation, label-noise folds, evaluation arms) get the share, and the
native pools one thread each, as joblib does under outer parallelism: those pools' threads would
otherwise nest inside ours (an lbfgs relevance fit took 2.7 s with two BLAS threads on a busy
2-core machine, 0.17 s with one).
"""

from __future__ import annotations

import os
from contextlib import contextmanager

_ENV = "DATASELECT_THREADS"


def cores() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def available() -> int:
    """Threads this process may use: ``$DATASELECT_THREADS`` when set (by :func:`limited`), else every core."""
    value = os.environ.get(_ENV, "").strip()
    return max(1, int(value)) if value else cores()


@contextmanager
def limited(threads: int):
    """Within the block the platform's own pools use ``threads`` threads, native pools (BLAS, OpenMP) one."""
    from threadpoolctl import threadpool_limits

    previous = os.environ.get(_ENV)
    os.environ[_ENV] = str(max(1, threads))
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        if previous is None:
            os.environ.pop(_ENV, None)
        else:
            os.environ[_ENV] = previous
