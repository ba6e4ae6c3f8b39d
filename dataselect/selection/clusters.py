"""Clustering building blocks for diversity- and coverage-aware selection.

- :func:`kmeans_clusters`: seeded faiss k-means (spherical by default, for unit-norm embeddings).
- :func:`cluster_balanced`: equal per-cluster quotas, leftover budget redistributed to clusters
  that still have records, best-scored first inside a cluster ("Diversify and Conquer",
  Zhang et al. 2024, style of cluster-balanced selection).
- :func:`coverage_centric_plan`: Coverage-centric Coreset Selection (CCS, Zheng et al. 2023,
  "Coverage-centric Coreset Selection for High Pruning Rates"): prune the hardest beta
  fraction, then spread the budget evenly over equal-width difficulty strata.
- :func:`sensitivity_plan`: clustering-based sensitivity sampling (Axiotis et al. 2024,
  "Data-Efficient Learning via Clustering-Based Sensitivity Sampling"): sample with
  probability proportional to a record's k-means cost plus its cluster's mean cost (mixed with
  a small uniform share), and return importance weights ``1 / (k p)``.

All functions return row indices into their inputs and are deterministic for a seed.
"""

from __future__ import annotations

import faiss
import numpy as np

from dataselect.selection.sampling import gumbel_top_k


def kmeans_clusters(
    embeddings: np.ndarray,
    n_clusters: int,
    seed: int = 0,
    niter: int = 20,
    spherical: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """faiss k-means. Returns ``(labels int64 (n,), centroids float32 (k, d), distances float32 (n,))``.

    ``distances`` is the Euclidean distance of each row to its own centroid. ``n_clusters`` is
    clipped to ``[1, n]``. With ``spherical`` the centroids are re-normalised each iteration, so
    nearest centroid by L2 is also nearest by cosine for unit-norm rows.
    """
    data = np.ascontiguousarray(embeddings, dtype=np.float32)
    n, dim = data.shape
    if n == 0:
        return np.zeros(0, np.int64), np.zeros((0, dim), np.float32), np.zeros(0, np.float32)
    k = int(min(max(1, n_clusters), n))
    if k == 1:
        # faiss refuses k=1 on tiny inputs in some versions; the answer is just the mean.
        centroid = data.mean(axis=0, keepdims=True)
        if spherical:
            centroid /= max(float(np.linalg.norm(centroid)), 1e-12)
        labels = np.zeros(n, np.int64)
    else:
        # min_points_per_centroid=1 silences faiss's "too few points" warning: small pools are
        # legitimate here. Sub-sampling above max_points_per_centroid is seeded, so still deterministic.
        kmeans = faiss.Kmeans(dim, k, niter=niter, seed=seed, spherical=spherical, verbose=False, min_points_per_centroid=1)
        kmeans.train(data)
        centroid = kmeans.centroids.astype(np.float32)
        _, assigned = kmeans.index.search(data, 1)
        labels = assigned[:, 0].astype(np.int64)
    # In row chunks: a single ``data - centroid[labels]`` is two n x d temporaries (2 GB at 1M).
    blocks = [slice(i, i + 65_536) for i in range(0, n, 65_536)]
    distances = np.concatenate([np.linalg.norm(data[b] - centroid[labels[b]], axis=1) for b in blocks]).astype(np.float32)
    return labels, centroid.astype(np.float32), distances


def rank_within_clusters(scores: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    """0-based rank of each row inside its cluster by score (descending; NaN last; ties by index)."""
    scores = np.asarray(scores, dtype=np.float64)
    clusters = np.asarray(clusters)
    n = len(scores)
    safe_scores = np.where(np.isnan(scores), -np.inf, scores)
    order = np.lexsort((np.arange(n), -safe_scores, clusters))
    sorted_clusters = clusters[order]
    starts = np.r_[0, np.flatnonzero(sorted_clusters[1:] != sorted_clusters[:-1]) + 1] if n else np.zeros(0, np.int64)
    run_lengths = np.diff(np.r_[starts, n])
    ranks = np.empty(n, np.int64)
    ranks[order] = np.arange(n) - np.repeat(starts, run_lengths)
    return ranks


def cluster_balanced(scores: np.ndarray, clusters: np.ndarray, k: int) -> np.ndarray:
    """Indices of ``k`` rows: equal per-cluster quotas, best score first inside each cluster.

    Equivalent to round-robin over clusters: every cluster gives its best record, then its
    second best, ... Clusters that run out drop out, so their unused quota goes to the others.
    When the budget ends part-way through a round, the round's best-scored records win.
    Ties are broken by row index. Returned indices are in selection order.
    """
    scores = np.asarray(scores, dtype=np.float64)
    n = len(scores)
    k = int(min(max(k, 0), n))
    if k == 0:
        return np.zeros(0, np.int64)
    safe_scores = np.where(np.isnan(scores), -np.inf, scores)
    rounds = rank_within_clusters(scores, clusters)
    selection_order = np.lexsort((np.arange(n), -safe_scores, rounds))
    return selection_order[:k].astype(np.int64)


def coverage_centric_plan(
    difficulty: np.ndarray, k: int, beta: float = 0.1, n_strata: int = 50, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CCS: ``k`` rows covering the difficulty range (higher = harder), with the workings that
    explain each decision: ``(indices, pruned bool (n,), stratum int64 (n,))``, stratum -1 when pruned.

    1. Drop the hardest ``floor(beta * n)`` rows (hard examples are often mislabelled), but never
       so many that fewer than ``k`` remain.
    2. Cut the remaining difficulty range into ``n_strata`` equal-width strata.
    3. Visit strata from the smallest to the largest (equal sizes in seeded random order); each
       takes ``min(size, budget left // strata left)`` rows at random (seeded), so small strata
       are kept whole and the rest of the budget is spread evenly over the larger ones.
    NaN difficulty counts as the hardest. Returned indices are sorted.
    """
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    if n_strata < 1:
        raise ValueError(f"n_strata must be >= 1, got {n_strata}")
    difficulty = np.asarray(difficulty, dtype=np.float64)
    n = len(difficulty)
    k = int(min(max(k, 0), n))
    pruned = np.zeros(n, bool)
    stratum_of = np.full(n, -1, np.int64)
    if k == 0:
        return np.zeros(0, np.int64), pruned, stratum_of
    rng = np.random.default_rng(seed)
    safe = np.where(np.isnan(difficulty), np.inf, difficulty)
    n_pruned = min(int(np.floor(beta * n + 1e-9)), n - k)
    # Sort on (difficulty, index) so the pruned set is deterministic under ties.
    easiest_first = np.lexsort((np.arange(n), safe))
    pruned[easiest_first[n - n_pruned :]] = True
    kept = np.flatnonzero(~pruned)
    values = safe[kept]
    finite = np.isfinite(values)
    low, high = (values[finite].min(), values[finite].max()) if finite.any() else (0.0, 0.0)
    width = (high - low) / n_strata
    if width > 0:
        position = (np.where(finite, values, high) - low) / width
        strata = np.clip(np.floor(position), 0, n_strata - 1).astype(np.int64)
    else:
        strata = np.zeros(len(kept), np.int64)
    stratum_of[kept] = strata
    stratum_ids, sizes = np.unique(strata, return_counts=True)
    chosen: list[np.ndarray] = []
    budget = k
    # Smallest stratum first. Equal sizes are visited in a seeded random order: a fixed order
    # (by stratum id) would hand a small budget's leftovers always to the same end of the range.
    for visited, stratum in enumerate(stratum_ids[np.lexsort((rng.permutation(len(stratum_ids)), sizes))]):
        members = kept[strata == stratum]
        take = min(len(members), budget // (len(stratum_ids) - visited))
        if take:
            chosen.append(rng.choice(members, size=take, replace=False))
        budget -= take
    indices = np.sort(np.concatenate(chosen)).astype(np.int64) if chosen else np.zeros(0, np.int64)
    return indices, pruned, stratum_of


def sensitivity_probabilities(distances: np.ndarray, clusters: np.ndarray, power: float = 2.0, uniform_mix: float = 0.1) -> np.ndarray:
    """Sampling probabilities ``p(x) = (1 - a) s(x) / sum s + a / n`` with
    ``s(x) = d(x)^power + mean_{y in cluster(x)} d(y)^power`` and ``a = uniform_mix``.

    The first term of ``s`` favours records the clustering explains badly; the second gives every
    cluster mass in proportion to its total cost, spread evenly over its members. With
    ``power=2`` the cost is the k-means objective. The uniform share ``a`` is defensive importance
    sampling (Hesterberg 1995): it keeps zero-cost clusters (e.g. exact duplicates) reachable and
    bounds the importance weights ``1 / (k p)`` by ``n / (a k)``. When every cost is zero the
    distribution is uniform.
    """
    if not 0.0 <= uniform_mix <= 1.0:
        raise ValueError(f"uniform_mix must be in [0, 1], got {uniform_mix}")
    cost = np.asarray(distances, dtype=np.float64) ** power
    n = len(cost)
    uniform = np.full(n, 1.0 / max(n, 1))
    _, inverse, counts = np.unique(np.asarray(clusters), return_inverse=True, return_counts=True)
    sensitivity = cost + (np.bincount(inverse, weights=cost) / counts)[inverse]
    total = sensitivity.sum()
    if not total > 0:
        return uniform
    return (1.0 - uniform_mix) * sensitivity / total + uniform_mix * uniform


def sensitivity_plan(
    embeddings: np.ndarray,
    k: int,
    n_clusters: int,
    seed: int = 0,
    power: float = 2.0,
    niter: int = 20,
    uniform_mix: float = 0.1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Clustering-based sensitivity sampling of ``k`` distinct rows, with its workings:
    ``(indices, weights, probabilities (n,), clusters (n,))``.

    k-means on the embeddings, then :func:`sensitivity_probabilities`. Rows are drawn without
    replacement (Gumbel top-k on ``log p``, which equals sequential sampling proportional to
    ``p``), since a training subset should not repeat records. ``weights = 1 / (k p)`` are the
    importance weights that make the weighted subset mean an unbiased estimate of the pool mean
    (exactly so for the with-replacement scheme). Indices are sorted.
    """
    n = len(embeddings)
    k = int(min(max(k, 0), n))
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0), np.zeros(0, np.int64)
    labels, _, distances = kmeans_clusters(embeddings, n_clusters, seed=seed, niter=niter)
    probabilities = sensitivity_probabilities(distances, labels, power=power, uniform_mix=uniform_mix)
    with np.errstate(divide="ignore"):  # p = 0 only when uniform_mix = 0: log -inf, drawn last
        indices = gumbel_top_k(np.log(probabilities), k, seed)
    indices = np.sort(indices)
    return indices, 1.0 / (max(k, 1) * probabilities[indices]), probabilities, labels
