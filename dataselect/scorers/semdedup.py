"""SemDeDup: semantic deduplication in embedding space (Abbas et al. 2023, "SemDeDup:
Data-efficient learning at web-scale through semantic deduplication").

k-means splits the pool so that only records in the same cluster are compared; inside a
cluster every pair with cosine similarity above ``1 - eps`` is linked, and connected components
of those links are the duplicate groups. Pairs that k-means puts in different clusters are
missed: that is the price of avoiding an n x n comparison, and
:func:`brute_force_semantic_duplicates` is the exact reference used to measure it.

Keep rule: in each group the record that comes first in (shard, row) order is kept (batch order
when those columns are absent), preferring records that pass every ``<name>.keep`` column already
in the batch (earlier hard filters). Unlike the paper's distance-to-centroid rule, this choice does
not move when centroids move after a shard is added or refreshed, and it agrees with the
exact-duplicate rule used elsewhere in the pipeline, so re-runs reject the same records.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from dataselect.records import ID, ROW, SHARD
from dataselect.scorers.base import Batch, Scorer
from dataselect.selection.clusters import kmeans_clusters


def default_n_clusters(n: int) -> int:
    """About ``sqrt(n) / 2`` clusters, clipped to [1, 1024]: small enough that duplicates rarely
    straddle clusters, large enough that per-cluster matrices stay small."""
    return int(np.clip(round(math.sqrt(max(n, 0)) / 2), 1, 1024))


def _similar_pairs(vectors: np.ndarray, threshold: float, block_elements: int) -> tuple[np.ndarray, np.ndarray]:
    """``(i, j)`` with ``i < j`` and ``vectors[i] . vectors[j] > threshold``, computed in row blocks
    of at most ``block_elements`` similarities so a big cluster never needs its full matrix."""
    m = len(vectors)
    rows = max(1, block_elements // max(m, 1))
    firsts, seconds = [], []
    for start in range(0, m, rows):
        stop = min(start + rows, m)
        # Only columns >= start: the upper triangle holds every unordered pair once.
        similarity = vectors[start:stop] @ vectors[start:].T
        r, c = np.nonzero(similarity > threshold)
        upper = c > r
        firsts.append(r[upper] + start)
        seconds.append(c[upper] + start)
    if not firsts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(firsts).astype(np.int64), np.concatenate(seconds).astype(np.int64)


def _components(n: int, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    graph = coo_matrix((np.ones(len(first), np.int8), (first, second)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels


def brute_force_semantic_duplicates(embeddings: np.ndarray, eps: float = 0.05, block_elements: int = 1 << 24) -> np.ndarray:
    """Exact reference: connected components over all pairs with cosine ``> 1 - eps``.

    Returns int64 group labels, each equal to the smallest row index in its group, so two
    partitions can be compared label for label. O(n^2) time; for tests and benchmarks.
    """
    vectors = np.ascontiguousarray(embeddings, dtype=np.float32)
    n = len(vectors)
    if n == 0:
        return np.zeros(0, np.int64)
    first, second = _similar_pairs(vectors, 1.0 - eps, block_elements)
    labels = _components(n, first, second)
    smallest = np.full(labels.max() + 1, n, np.int64)
    np.minimum.at(smallest, labels, np.arange(n))
    return smallest[labels]


class SemanticDuplicates(Scorer):
    """Pool scorer: ``group``, ``keep``, ``reason``, ``cluster`` (plus ``cosine_to_kept``)."""

    name: ClassVar[str] = "semdedup"
    kind: ClassVar[str] = "duplicates"
    stage: ClassVar[str] = "pool"
    needs_embeddings: ClassVar[bool] = True

    @dataclass
    class Config:
        n_clusters: int | None = None  # None: default_n_clusters(n), about sqrt(n)/2 in [1, 1024]
        eps: float = 0.05  # pairs with cosine > 1 - eps are duplicates (the paper's eps)
        seed: int = 0  # k-means initialisation and sub-sampling
        niter: int = 20  # k-means iterations
        block_elements: int = 1 << 24  # similarities per matrix block (64 MiB of float32)

    def score(self, batch: Batch) -> dict[str, np.ndarray]:
        if batch.embeddings is None:
            raise ValueError("semdedup needs the pool's embeddings (Batch.embeddings is None)")
        vectors = np.ascontiguousarray(batch.embeddings, dtype=np.float32)
        n = len(vectors)
        if n != len(batch):
            raise ValueError(f"semdedup: {n} embeddings for {len(batch)} records")
        names = set(batch.records.column_names)
        ids = batch.column(ID).astype(str) if ID in names else np.arange(n).astype(str)
        # Precedence: records that pass every earlier hard filter first, then (shard, row) order;
        # the keep rule picks the smallest. Otherwise a group could keep a record that another
        # filter rejects, and the whole group would be lost.
        passes = np.ones(n, bool)
        for column in (c for c in batch.records.column_names if c.endswith(".keep")):
            keep = batch.records.column(column)
            if pa.types.is_boolean(keep.type):
                passes &= pc.fill_null(keep, True).to_numpy(zero_copy_only=False)
            else:
                values = keep.to_numpy(zero_copy_only=False)
                passes &= np.array([value is None or value != value or bool(value) for value in values], bool)
        if SHARD in names and ROW in names:
            order = np.lexsort((np.arange(n), batch.column(ROW), batch.column(SHARD).astype(str), ~passes))
        else:
            order = np.lexsort((np.arange(n), ~passes))
        precedence = np.empty(n, np.int64)
        precedence[order] = np.arange(n)

        config = self.config
        k = config.n_clusters if config.n_clusters is not None else default_n_clusters(n)
        clusters, _, _ = kmeans_clusters(vectors, k, seed=config.seed, niter=config.niter)

        # Pairs only link records of one cluster, so each cluster's components are found on its own:
        # a pool of many near-copies (tens of millions of pairs at 1M records) never holds them all at once.
        components = np.zeros(n, np.int64)
        by_cluster = np.argsort(clusters, kind="stable")
        bounds = np.flatnonzero(np.diff(clusters[by_cluster])) + 1
        numbered = 0
        for members in np.split(by_cluster, bounds) if n else []:
            i, j = _similar_pairs(vectors[members], 1.0 - config.eps, config.block_elements)
            local = _components(len(members), i, j)
            components[members] = local + numbered
            numbered += int(local.max()) + 1

        # Representative = member with the smallest precedence; group id = its batch position.
        best = np.full(components.max() + 1 if n else 0, n, np.int64)
        np.minimum.at(best, components, precedence)
        representative = order[best[components]] if n else np.zeros(0, np.int64)
        keep = representative == np.arange(n)
        # Kept records are their own representative (cosine 1); only the dropped need a product.
        cosine = np.ones(n, np.float32)
        dropped = np.flatnonzero(~keep)
        for block in (dropped[i : i + 65_536] for i in range(0, len(dropped), 65_536)):  # not two gathers of every dropped row
            cosine[block] = np.einsum("ij,ij->i", vectors[block], vectors[representative[block]])
        reason = np.array(
            [
                "" if kept else f"semantic duplicate of {ids[rep]} (cosine {cos:.2f})"
                for kept, rep, cos in zip(keep.tolist(), representative.tolist(), cosine.tolist())
            ],
            dtype=object,
        )
        return {
            "group": representative.astype(np.int64),
            "keep": keep,
            "reason": reason,
            "cluster": clusters.astype(np.int64),
            "cosine_to_kept": cosine.astype(np.float32),
        }
