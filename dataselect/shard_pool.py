"""A pool left in its shards' Parquet files, read by rows, shard by shard or column by column, never whole.

The report of a pool too large to hold in one process (a million real-text records are 1.6 GB of
text and 1 GB of vectors) reads only what each arm and metric needs: an arm's texts, a sample's
vectors, or the labelled texts one shard at a time for the full pool's arm. The selection reads
the shards' wide score columns (MinHash signatures, label probabilities) one at a time, while the
scorer that needs each runs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import numpy as np
import pyarrow as pa

from dataselect.embedding import arrow_to_vectors
from dataselect.memory import release_freed_memory
from dataselect.records import TEXT
from dataselect.storage import parquet_num_rows, parquet_schema, read_parquet


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
        # The C heap keeps the pages of every shard's decoded column (measured: 440 MB held for an
        # arm's 160 MB of text at 1M records; 180 MB of it came back).
        del parts
        release_freed_memory()
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
            out = np.empty((0, parquet_schema(self.vector_files[0]).field("vector").type.list_size), np.float32)
        return out


class ShardColumns:
    """Columns ``names`` of consecutive shard files, each read whole (all shards, in order) when asked for;
    a shard without one gives nulls, as a permissive concatenation of the shards would. ``names`` None:
    every list column (a vector per record) of any file."""

    def __init__(self, files: Sequence[str | os.PathLike], names: Sequence[str] | None = None):
        self.files = list(files)
        self.schemas = [parquet_schema(path) for path in self.files]
        if names is None:
            lists = (f.name for schema in self.schemas for f in schema if pa.types.is_list(f.type) or pa.types.is_fixed_size_list(f.type))
            names = dict.fromkeys(lists)
        self.names = list(names)

    def field(self, name: str) -> pa.Field:
        """The first shard's field: its type and metadata (e.g. the settings a column was made with)."""
        return next(schema.field(name) for schema in self.schemas if name in schema.names)

    def read(self, name: str) -> pa.ChunkedArray:
        if name not in self.names:
            raise KeyError(f"{name!r} is not among the stored columns {self.names}")
        field, chunks = self.field(name), []
        for path, schema in zip(self.files, self.schemas):
            if name in schema.names:
                chunks.extend(read_parquet(path, [name]).column(name).cast(field.type).chunks)
            else:
                chunks.append(pa.nulls(parquet_num_rows(path), field.type))
        return pa.chunked_array(chunks, field.type)

    def matrix(self, name: str, dtype: np.dtype) -> np.ndarray:
        """A fixed-size list column as an (n, width) ``dtype`` array, each file's part copied in as it is read."""
        field = self.field(name)
        if not pa.types.is_fixed_size_list(field.type):
            raise TypeError(f"{name!r} is {field.type}, not a fixed-size list")
        lengths = [parquet_num_rows(path) for path in self.files]
        out, at = np.empty((sum(lengths), field.type.list_size), dtype), 0
        for path, schema, length in zip(self.files, self.schemas, lengths):
            if name not in schema.names:
                raise ValueError(f"{path} has no {name!r} column")
            values = read_parquet(path, [name]).column(name).combine_chunks().flatten().to_numpy(zero_copy_only=False)
            out[at : at + length] = values.reshape(length, field.type.list_size)
            at += length
        return out
