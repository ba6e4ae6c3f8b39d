"""The evaluation recipe's term counts of a whole pool, counted once and stored beside the build.

Every TF-IDF arm of the report reads its rows from the pool's term counts (see
:mod:`dataselect.evaluation`), and counting them does not depend on the selection. So the
platform counts them in a run of their own while the shards are scored (the
``evaluation_features`` asset) and the report reads them back. At 100k real-text records counting
and storing them is the largest of the report's costs (``benchmarks/results/report_cost.md``).

The stored counts are tied to the shards' raw files and to the counting settings by a
fingerprint; a reader that finds another fingerprint (or none) counts for itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from dataselect.pipeline import fingerprint
from dataselect.storage import exists, parquet_metadata, read_parquet, write_parquet
from dataselect.term_counts import TermCounts, Texts

COUNTS_FILE = "counts.parquet"  # one row per pool record: its term columns and counts
TERMS_FILE = "terms.parquet"  # the column names, alphabetical


@dataclass
class PoolTerms:
    """``CountVectorizer(ngram_range, min_df).fit_transform`` of the pool's texts, in pool row order."""

    matrix: sp.csr_matrix  # float32, sorted indices
    feature_names: pa.Array
    ngram_range: tuple[int, int]
    min_df: int
    fingerprint: str


def pool_fingerprint(shard_fingerprints: dict[str, str], ngram_range: tuple[int, int], min_df: int) -> str:
    """Which pool (its shards' raw file fingerprints, in key order) and which counting settings."""
    return fingerprint("pool-terms-v1", dict(sorted(shard_fingerprints.items())), [int(n) for n in ngram_range], int(min_df))


def count(texts: Texts, ngram_range: tuple[int, int], min_df: int, pool_fingerprint: str) -> PoolTerms:
    counter = TermCounts(texts, ngram_range, min_df)
    return PoolTerms(counter.matrix, counter.feature_names, counter.ngram_range, int(min_df), pool_fingerprint)


def write(folder: str | os.PathLike, terms: PoolTerms) -> None:
    """Two Parquet files under ``folder``, both carrying the fingerprint; the counts file is written last."""
    matrix = terms.matrix
    offsets = pa.array(matrix.indptr.astype(np.int64))
    counts = pa.table(
        {
            "terms": pa.LargeListArray.from_arrays(offsets, pa.array(matrix.indices.astype(np.int32))),
            "counts": pa.LargeListArray.from_arrays(offsets, pa.array(matrix.data.astype(np.float32))),
        }
    )
    write_parquet(f"{folder}/{TERMS_FILE}", pa.table({"term": terms.feature_names}), {"fingerprint": terms.fingerprint})
    settings = {"fingerprint": terms.fingerprint, "ngram_range": f"{terms.ngram_range[0]},{terms.ngram_range[1]}", "min_df": terms.min_df}
    # Term ids and counts without dictionary pages: at 100k records a third faster to read back.
    write_parquet(f"{folder}/{COUNTS_FILE}", counts, settings, use_dictionary=False)


def read(folder: str | os.PathLike, expected_fingerprint: str) -> PoolTerms | None:
    """The stored counts when both files carry ``expected_fingerprint``, else None."""
    counts_path, terms_path = f"{folder}/{COUNTS_FILE}", f"{folder}/{TERMS_FILE}"
    if not (exists(counts_path) and exists(terms_path)):
        return None
    settings = parquet_metadata(counts_path)
    if settings.get("fingerprint") != expected_fingerprint or parquet_metadata(terms_path).get("fingerprint") != expected_fingerprint:
        return None
    names = read_parquet(terms_path).column("term").combine_chunks()
    table = read_parquet(counts_path)
    terms, values = (table.column(name).combine_chunks() for name in ("terms", "counts"))
    indptr = terms.offsets.to_numpy().astype(np.int64)
    indices = terms.values.to_numpy().astype(np.int32)  # copies: scipy may sort or weigh them in place
    data = values.values.to_numpy().astype(np.float32, copy=True)
    matrix = sp.csr_matrix((data, indices, indptr), shape=(len(table), len(names)))
    low, high = (int(n) for n in settings["ngram_range"].split(","))
    return PoolTerms(matrix, names, (low, high), int(settings["min_df"]), expected_fingerprint)
