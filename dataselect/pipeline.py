"""The selection pipeline as plain functions over Arrow tables: what each Dagster asset calls.

Per shard: ``score_shard`` runs every shard-stage scorer on one shard's records (and its
embeddings). Globally: ``pool_sample`` draws the bounded fit sample, ``score_pool`` runs
the pool-stage scorers (duplicates across shards, clusters, label noise) on compact columns,
and ``dataselect.selection.decide`` turns it all into one decision per raw record.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from dataselect import decontamination
from dataselect import records as cols
from dataselect.scorers import SCORERS
from dataselect.scorers.base import Batch, Scorer, StoredColumns, prefixed

# Columns every scores table carries besides the scorer outputs.
KEY_COLUMNS = [cols.ID, cols.SHARD, cols.ROW, cols.CONTENT_HASH, cols.LABEL]


def fingerprint(*parts: object) -> str:
    """A stable sha256 of JSON-serialisable parts (configs, shard hashes)."""
    payload = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(payload).hexdigest()


def records_fingerprint(records: pa.Table) -> str:
    """Identity of a shard's content: its ids and content hashes in order."""
    digest = hashlib.sha256()
    for name in (cols.ID, cols.CONTENT_HASH):
        for value in records.column(name).to_pylist():
            digest.update(value.encode())
            digest.update(b"\x00")
    return digest.hexdigest()


def make_scorers(names: Sequence[str], configs: dict[str, dict] | None = None) -> list[Scorer]:
    configs = configs or {}
    unknown = [n for n in names if n not in SCORERS]
    if unknown:
        raise ValueError(f"unknown scorer(s) {unknown}; known: {sorted(SCORERS)}")
    return [SCORERS[n](SCORERS[n].Config(**configs.get(n, {}))) for n in names]


def _as_arrow_column(values) -> pa.Array:
    array = np.asarray(values) if not isinstance(values, list) else values
    if isinstance(array, np.ndarray) and array.ndim == 2:
        flat = pa.array(array.reshape(-1))
        return pa.FixedSizeListArray.from_arrays(flat, array.shape[1])
    return pa.array(array)


def score_shard(
    records: pa.Table,
    embeddings: np.ndarray | None,
    scorers: Iterable[Scorer],
    evaluation: decontamination.EvaluationNgrams | None = None,
) -> pa.Table:
    """Key columns of ``records`` plus every scorer's prefixed output columns; with ``evaluation``,
    the ``decontamination.*`` columns too, found on the tokens the n-gram scorers cut."""
    batch = Batch(records, embeddings)
    table = records.select([c for c in KEY_COLUMNS if c in records.column_names])
    for scorer in scorers:
        if scorer.needs_embeddings and embeddings is None:
            raise ValueError(f"scorer {scorer.name!r} needs embeddings")
        metadata = prefixed(scorer.name, scorer.column_metadata())
        for name, values in prefixed(scorer.name, scorer.score(batch)).items():
            column = _as_arrow_column(values)
            table = table.append_column(pa.field(name, column.type, metadata=metadata.get(name)), column)
    if evaluation is not None:
        for name, values in prefixed(decontamination.NAME, evaluation.contamination(batch.tokens())).items():
            table = table.append_column(name, _as_arrow_column(values))
    return table


def score_pool(
    scores: pa.Table,
    embeddings: np.ndarray | None,
    scorers: Iterable[Scorer],
    texts: pa.Array | Sequence[str | None] | None = None,
    stored: StoredColumns | None = None,
) -> pd.DataFrame:
    """Run pool-stage scorers over the concatenated per-record scores of every shard (``stored``: more
    of their columns, left in the shards' files until a scorer reads them)."""
    table = scores
    if texts is not None:
        table = table.append_column(cols.TEXT, texts if isinstance(texts, pa.Array) else pa.array(texts, pa.string()))
    batch = Batch(table, embeddings, stored)
    frame = scores.drop_columns([c for c in scores.column_names if _is_vector_column(scores, c)]).to_pandas()
    for scorer in scorers:
        if scorer.needs_embeddings and embeddings is None:
            raise ValueError(f"scorer {scorer.name!r} needs embeddings")
        for name, values in prefixed(scorer.name, scorer.score(batch)).items():
            frame[name] = values
    return frame


def _is_vector_column(table: pa.Table, name: str) -> bool:
    return pa.types.is_fixed_size_list(table.schema.field(name).type) or pa.types.is_list(table.schema.field(name).type)


def sample_mask(content_hashes: Sequence[str], fraction: float, seed: int) -> np.ndarray:
    """Deterministic Bernoulli sample keyed on content, so it is stable as shards come and go."""
    if fraction >= 1.0:
        return np.ones(len(content_hashes), bool)
    salt = str(seed).encode()
    # 53-bit draws so the comparison with the fraction is exact in float64.
    draws = np.array(
        [int.from_bytes(hashlib.blake2b(h.encode(), digest_size=7, key=salt).digest(), "big") >> 3 for h in content_hashes],
        dtype=np.uint64,
    )
    return draws < np.uint64(int(max(fraction, 0.0) * 2**53))


def pool_sample(shards: Iterable[tuple[pa.Table, np.ndarray | None]], total_records: int, size: int, seed: int) -> Batch:
    """A bounded, content-keyed sample of the pool for fitting scorers (never all the text)."""
    fraction = 1.0 if total_records <= size else size / total_records
    tables, vectors = [], []
    for records, embeddings in shards:
        mask = sample_mask(records.column(cols.CONTENT_HASH).to_pylist(), fraction, seed)
        tables.append(records.filter(pa.array(mask)))
        if embeddings is not None:
            vectors.append(embeddings[mask])
    table = pa.concat_tables(tables, promote_options="permissive") if tables else pa.table({cols.ID: [], cols.TEXT: []})
    return Batch(table, np.concatenate(vectors) if vectors else None)
