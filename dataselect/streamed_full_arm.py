"""The report's full-pool arm for a pool too large to hold in memory: its recipe, trained shard by shard.

In memory the full arm is the TF-IDF recipe fitted on every labelled pool record and trained by
``epochs`` passes of SGD (:mod:`dataselect.evaluation`); at a million real-text records its term
counts alone are 2.8 GB. Here the process holds one shard's counts at a time:

- vocabulary: the recipe's columns (terms in at least ``min_df`` documents, the ``max_features``
  most frequent) chosen on a seeded sample of ``vocabulary_sample`` labelled records. This is the
  one approximation: at ten times the sample, a term near the frequency cut-off may fall on the
  other side of it;
- idf: the document frequency of those columns over every labelled record, counted shard by
  shard; each record's counts go to one of about n / 10k seeded random parts in a scratch folder;
- SGD: the same objective (log loss, alpha = 1 / (C * n)) and learning-rate schedule, as
  ``epochs`` passes of ``partial_fit`` over the parts in a seeded order and each part's rows in a
  seeded order (``fit`` shuffles all rows at once in each pass; a part is a random sample of the
  pool, where a shard may hold one domain or one label).
"""

from __future__ import annotations

import os
import tempfile
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from dataselect import tfidf
from dataselect.linear import logistic_regression
from dataselect.shard_pool import ShardPool
from dataselect.term_counts import TermCounts
from dataselect.threads import available

if TYPE_CHECKING:
    from dataselect.evaluation import Config

_STREAM = 0xF011  # numpy stream of the vocabulary sample and the pass orders, keyed by the arm's seed


def fit_predict(
    pool: ShardPool,
    rows: np.ndarray,
    labels: np.ndarray,
    eval_texts: Sequence[str],
    config: "Config",
    seed: int,
    vocabulary_sample: int,
) -> np.ndarray:
    """Predictions on ``eval_texts`` of the recipe trained on pool ``rows`` (sorted, labelled) with ``labels``."""
    if config.solver != "sgd":
        raise ValueError(f"the full arm of a pool read shard by shard trains by SGD, not {config.solver!r}")
    rng = np.random.default_rng([seed, _STREAM])
    sample = np.sort(rng.choice(rows, size=min(len(rows), vocabulary_sample), replace=False))
    counted = TermCounts(pool.texts(sample), config.ngram_range, config.min_df)
    in_sample = np.bincount(counted.matrix.indices, minlength=counted.matrix.shape[1])
    keep = tfidf.kept_columns(counted.matrix, in_sample, config.min_df, config.max_features)
    columns, every_column = counted.feature_names.take(pa.array(keep)), np.arange(len(keep))
    del counted
    model = logistic_regression(
        config.C, len(rows), "sgd", epochs=1, tol=config.tol, max_iter=1, seed=seed, n_jobs=config.n_jobs or available()
    ).set_params(shuffle=False)  # the rows come in this function's seeded order
    classes, codes = np.unique(labels, return_inverse=True)
    # Each labelled row goes to a seeded random part: shards may each hold one domain or one label,
    # and SGD passing over them one after another would drift towards the last.
    part_of = rng.integers(0, max(1, -(-len(rows) // _PART_ROWS)), size=len(rows))
    with tempfile.TemporaryDirectory(prefix="dataselect-full-arm-") as scratch:
        parts = _Parts(scratch)
        document_frequency = np.zeros(len(keep), np.int64)
        for shard, lo, hi in pool.shards_of(rows):
            counts = tfidf.counts_on(columns, pool.shard_texts(shard, rows[lo:hi]), config.ngram_range)
            document_frequency += np.bincount(counts.indices, minlength=len(keep))
            parts.append(counts, codes[lo:hi], part_of[lo:hi])
        idf = tfidf.smoothed_idf(len(rows), document_frequency)
        for _ in range(config.epochs):
            for part in rng.permutation(parts.names):
                counts, part_codes = parts.read(part, len(keep))
                order = rng.permutation(len(part_codes))
                model.partial_fit(tfidf.weigh(counts[order], every_column, idf), classes[part_codes[order]], classes=classes)
    return model.predict(tfidf.weigh(tfidf.counts_on(columns, eval_texts, config.ngram_range), every_column, idf))


_PART_ROWS = 10_000  # labelled rows per part of the passes, on average


class _Parts:
    """Rows of term counts appended to numbered parts in a scratch folder, each part read back as one matrix."""

    _FIELDS = {"nonzeros": np.int32, "indices": np.int32, "counts": np.float32, "codes": np.int64}

    def __init__(self, folder: str):
        self.folder, self.names = folder, []

    def append(self, counts: sp.csr_matrix, codes: np.ndarray, part_of: np.ndarray) -> None:
        """Row ``i`` of ``counts`` (label code ``codes[i]``) to the end of part ``part_of[i]``."""
        order = np.argsort(part_of, kind="stable")
        counts, codes, part_of = counts[order], codes[order], part_of[order]
        bounds = np.flatnonzero(np.r_[True, part_of[1:] != part_of[:-1], True])
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            block, name = counts[lo:hi], int(part_of[lo])
            if name not in self.names:
                self.names.append(name)
            values = {"nonzeros": np.diff(block.indptr), "indices": block.indices, "counts": block.data, "codes": codes[lo:hi]}
            for field, dtype in self._FIELDS.items():
                with open(os.path.join(self.folder, f"{name}.{field}"), "ab") as handle:
                    handle.write(np.ascontiguousarray(values[field], dtype=dtype).tobytes())

    def read(self, name: int, n_columns: int) -> tuple[sp.csr_matrix, np.ndarray]:
        values = {field: np.fromfile(os.path.join(self.folder, f"{name}.{field}"), dtype) for field, dtype in self._FIELDS.items()}
        indptr = np.r_[0, np.cumsum(values["nonzeros"], dtype=np.int64)]
        matrix = sp.csr_matrix((values["counts"], values["indices"], indptr), shape=(len(indptr) - 1, n_columns))
        return matrix, values["codes"]
