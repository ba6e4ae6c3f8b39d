"""Unique record ids across shards.

Ingest already quarantines an id repeated *inside* one shard; shards are read independently,
so an id repeated *across* shards reaches the pool twice. Ids are the key a user looks a
record up by and the key the selected set is built from, so a repeat must not be selected
twice. The rule follows the keep-first convention of exact deduplication (as in
datatrove's and NeMo Curator's exact dedup stages): in (shard, row) order the first record
with an id is kept and every later one is rejected, with a reason naming where the first
one is. Adding a later shard therefore never changes which copy an earlier shard keeps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa

from dataselect import records as cols
from dataselect.scorers.base import Batch, Scorer
from dataselect.scorers.duplicates import keep_order


class UniqueIds(Scorer):
    """``keep`` (False for every repeat of an earlier id), ``reason``, ``first_index``."""

    name: ClassVar[str] = "unique_id"
    kind: ClassVar[str] = "ids"
    stage: ClassVar[str] = "pool"

    @dataclass
    class Config:
        id_column: str = cols.ID  # the column whose values must be unique across the pool

    def score(self, batch: Batch) -> dict[str, np.ndarray]:
        n = len(batch)
        column = batch.records.column(self.config.id_column)
        if not pa.types.is_string(column.type):
            column = column.cast(pa.string())
        ids = column.to_numpy(zero_copy_only=False)  # Python str objects, so reasons read 'x' not np.str_('x')
        order = keep_order(batch)
        # Position of every row in (shard, row) order; per id, the row that comes first wins.
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n)
        codes = pd.factorize(ids)[0]
        first_rank = pd.Series(rank).groupby(codes).transform("min").to_numpy() if n else rank
        first = order[first_rank] if n else np.zeros(0, np.int64)
        keep = first == np.arange(n)
        reason = np.full(n, "", dtype=object)
        repeats = np.flatnonzero(~keep)
        names = batch.records.column_names
        if len(repeats) and cols.SHARD in names and cols.ROW in names:
            shards, rows = batch.column(cols.SHARD), batch.column(cols.ROW)
            reason[repeats] = [
                f"duplicate id {ids[i]!r} (first in shard {shards[f]} row {rows[f]})" for i, f in zip(repeats, first[repeats])
            ]
        elif len(repeats):
            reason[repeats] = [f"duplicate id {ids[i]!r} (first at batch row {f})" for i, f in zip(repeats, first[repeats])]
        return {"keep": keep, "reason": reason, "first_index": first.astype(np.int64)}
