"""dataselect: the Dagster-free core of the training-data selection platform.

Everything here is plain Python over Arrow, pandas and numpy, usable without Dagster:
ingest shards, embed, score, select under a budget, evaluate and report.
"""

import os

import numpy as np
import pyarrow as pa

__version__ = "0.1.0"

# Memory settings for the many short-lived worker processes of a build, unless the user set them.
#
# numpy asks the kernel for transparent huge pages on every large array (madvise). Where THP
# defragmentation is "madvise" (a common default, and this project's machines), the first touch of
# each such array waits for memory compaction: five fresh 80 MB arrays took 2.2 s instead of 0.2 s.
# (The same switch as NUMPY_MADVISE_HUGEPAGE=0, made here because numpy may be imported already.)
if os.environ.get("NUMPY_MADVISE_HUGEPAGE") is None:
    np._core.multiarray._set_madvise_hugepage(False)
# Arrow's bundled allocator (mimalloc or jemalloc) makes the first large kernels of a fresh
# process slow: scoring a 10k-record real-text shard took 3.1 s on its first call and 1.1 s on
# the next, against 0.8 s both times with the C library's malloc.
if "ARROW_DEFAULT_MEMORY_POOL" not in os.environ:
    pa.set_memory_pool(pa.system_memory_pool())
