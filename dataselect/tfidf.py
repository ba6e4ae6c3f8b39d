"""``TfidfVectorizer``'s weights computed from term counts, for every TF-IDF arm of the report.

An arm's vectorizer keeps the terms seen in at least ``min_df`` of its documents (the
``max_features`` most frequent of them), weighs counts by sublinear tf times smoothed idf and
l2-normalises each row. Given the arm's term counts (:mod:`dataselect.term_counts`), the
functions here give the same matrices without tokenising again.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp
from sklearn.preprocessing import normalize

from dataselect.term_counts import TermCounts, Texts

WEIGH_ROWS = 65_536  # rows weighed at a time


def kept_columns(
    counts: sp.csr_matrix, document_frequency: np.ndarray, min_df: int, max_features: int | None, allowed: np.ndarray | bool = True
) -> np.ndarray:
    """The vectorizer's columns (sorted): ``allowed`` ones with ``document_frequency >= min_df``, the
    ``max_features`` with the largest total count in ``counts`` (ties: lower column first)."""
    keep = np.flatnonzero((document_frequency >= min_df) & allowed)
    if max_features is not None and keep.size > max_features:
        term_frequency = column_sums(counts, counts.shape[1])[keep]
        top = np.lexsort((keep, -term_frequency))[:max_features]
        keep = np.sort(keep[top])
    return keep


def smoothed_idf(n_documents: int, document_frequency: np.ndarray) -> np.ndarray:
    return (np.log((1.0 + n_documents) / (1.0 + document_frequency)) + 1.0).astype(np.float32)


def weigh(counts: sp.csr_matrix, keep: np.ndarray, idf: np.ndarray) -> sp.csr_matrix:
    """Sublinear tf times idf of the ``keep`` columns (sorted), l2-normalised rows, float32.

    Every step is row by row, so blocks of rows are weighed alone into one preallocated
    matrix: a large arm (the full pool) holds its counts and the result, not also the column
    selection's and the weighting's temporaries of the whole pool."""
    if not len(keep) or counts.shape[0] <= WEIGH_ROWS:
        return weigh_rows(counts, keep, idf)
    is_kept = np.zeros(counts.shape[1], bool)
    is_kept[keep] = True
    nonzeros = int(np.count_nonzero(is_kept[counts.indices]))
    data, indices = np.empty(nonzeros, np.float32), np.empty(nonzeros, np.int32)
    indptr = np.zeros(counts.shape[0] + 1, np.int64)
    for start in range(0, counts.shape[0], WEIGH_ROWS):
        stop = min(start + WEIGH_ROWS, counts.shape[0])
        block = weigh_rows(counts[start:stop], keep, idf)
        at = indptr[start]
        data[at : at + block.nnz], indices[at : at + block.nnz] = block.data, block.indices
        indptr[start + 1 : stop + 1] = at + block.indptr[1:]
    return sp.csr_matrix((data, indices, indptr), shape=(counts.shape[0], len(keep)))


def weigh_rows(counts: sp.csr_matrix, keep: np.ndarray, idf: np.ndarray) -> sp.csr_matrix:
    weighted = counts[:, keep].tocsr().astype(np.float32, copy=False)
    np.log(weighted.data, out=weighted.data)
    weighted.data += 1.0  # sublinear tf
    weighted.data *= idf[weighted.indices]
    return normalize(weighted, norm="l2", copy=False) if weighted.shape[1] else weighted


def column_sums(counts: sp.csr_matrix, n_terms: int, block: int = 1 << 24) -> np.ndarray:
    """Each column's total count, ``bincount(indices, weights=data)`` in blocks: bincount makes its
    weights float64, a 2.8 GB copy for the full pool at 1M records. The counts are whole numbers,
    so the float64 sums are exact in any order."""
    totals = np.zeros(n_terms)
    for start in range(0, counts.nnz, block):
        totals += np.bincount(counts.indices[start : start + block], weights=counts.data[start : start + block], minlength=n_terms)
    return totals


def counts_on(columns: pa.Array, texts: Texts, ngram_range: tuple[int, int]) -> sp.csr_matrix:
    """``CountVectorizer(vocabulary=columns).transform(texts)`` for alphabetical ``columns``: the
    texts' own counts, their terms looked up among the columns (terms not there are dropped)."""
    own = TermCounts(texts, ngram_range, min_df=1)
    column_of = pc.fill_null(pc.index_in(own.feature_names, value_set=columns), -1).to_numpy(zero_copy_only=False)
    counts = own.matrix.tocoo()
    found = column_of[counts.col] >= 0
    rows, cols = counts.row[found], column_of[counts.col[found]]
    matrix = sp.csr_matrix((counts.data[found], (rows, cols)), shape=(counts.shape[0], len(columns)), dtype=np.float32)
    matrix.sort_indices()
    return matrix
