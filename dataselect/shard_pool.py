"""A pool left in its shards' Parquet files, read by rows or shard by shard, never whole.

The report of a pool too large to hold in one process (a million real-text records are 1.6 GB of
text and 1 GB of vectors) reads only what each arm and metric needs: an arm's texts, a sample's
vectors, or the labelled texts one shard at a time for the full pool's arm.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dataselect.embedding import arrow_to_vectors
from dataselect.records import TEXT
from dataselect.storage import as_path, parquet_num_rows, read_parquet


class ShardPool:
    """Row ``i`` of the pool is row ``i - starts[s]`` of shard ``s``; ``text_files`` and
    ``vector_files`` (same shards, same order, same rows) are Parquet paths or URLs."""

    def __init__(self, text_files: Sequence[str | os.PathLike], vector_files: Sequence[str | os.PathLike] | None = None):
        self.text_files = list(text_files)
        self.vector_files = None if vector_files is None else list(vector_files)
        lengths = [parquet_num_rows(path) for path in self.text_files]  # footers only
        if self.vector_files is not None:
            vector_lengths = [parquet_num_rows(path) for path in self.vector_files]
            if len(vector_lengths) != len(lengths) or vector_lengths != lengths:
                raise ValueError(f"text shards hold {lengths} rows, vector shards {vector_lengths}: not the same pool")
        self.starts = np.cumsum([0, *lengths])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def shards_of(self, rows: np.ndarray) -> Iterator[tuple[int, int, int]]:
        """(shard, lo, hi) for each shard holding some of ``rows`` (sorted): ``rows[lo:hi]`` are its."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) and (rows[0] < 0 or rows[-1] >= len(self) or np.any(np.diff(rows) <= 0)):
            raise ValueError("rows must be sorted, distinct and inside the pool")
        bounds = np.searchsorted(rows, self.starts)
        for shard in range(len(self.text_files)):
            if bounds[shard] < bounds[shard + 1]:
                yield shard, int(bounds[shard]), int(bounds[shard + 1])

    def shard_texts(self, shard: int, rows: np.ndarray) -> pa.Array:
        """The texts of pool ``rows`` (sorted, all in ``shard``)."""
        column = read_parquet(self.text_files[shard], [TEXT]).column(TEXT)
        return column.take(pa.array(np.asarray(rows, dtype=np.int64) - self.starts[shard])).combine_chunks()

    def texts(self, rows: np.ndarray) -> pa.Array:
        """The texts of ``rows`` (sorted, distinct), in row order."""
        rows = np.asarray(rows, dtype=np.int64)
        parts = [self.shard_texts(shard, rows[lo:hi]) for shard, lo, hi in self.shards_of(rows)]
        texts = pa.concat_arrays(parts) if parts else pa.array([], pa.string())
        # Arrow's allocator keeps the pages of every shard's decoded column (measured: 440 MB held for
        # an arm's 160 MB of text at 1M records, 180 MB of it given back by this).
        del parts
        pa.default_memory_pool().release_unused()
        return texts

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        """The vectors of ``rows`` (sorted, distinct), in row order, filled into one array."""
        if self.vector_files is None:
            raise ValueError("this pool was opened without its vectors")
        rows = np.asarray(rows, dtype=np.int64)
        out: np.ndarray | None = None
        for shard, lo, hi in self.shards_of(rows):
            vectors = arrow_to_vectors(read_parquet(self.vector_files[shard]))[1]
            if out is None:
                out = np.empty((len(rows), vectors.shape[1]), vectors.dtype)
            out[lo:hi] = vectors[rows[lo:hi] - self.starts[shard]]
        if out is None:  # no rows: the width from the first file's schema
            with as_path(self.vector_files[0]).open("rb") as handle:
                out = np.empty((0, pq.read_schema(handle).field("vector").type.list_size), np.float32)
        return out
