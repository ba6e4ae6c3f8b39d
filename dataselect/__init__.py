"""dataselect: the Dagster-free core of the training-data selection platform.

Everything here is plain Python over Arrow, pandas and numpy, usable without Dagster:
ingest shards, embed, score, select under a budget, evaluate and report.
"""

import os

import pyarrow as pa

__version__ = "0.1.0"

# Arrow's bundled allocator (mimalloc or jemalloc) makes the first large kernels of a fresh
# process slow: scoring a 10k-record real-text shard took 3.1 s on its first call and 1.1 s on
# the next, against 0.8 s both times with the C library's malloc. Every build run is such a fresh
# worker process, so the platform asks Arrow for the system allocator unless the user chose one.
if "ARROW_DEFAULT_MEMORY_POOL" not in os.environ:
    pa.set_memory_pool(pa.system_memory_pool())
