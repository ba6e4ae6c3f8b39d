"""Label-free measures of a selection, usable without a labelled evaluation set.

- Distance to the target distribution in embedding space: cosine distance between mean
  embeddings; the unbiased squared Maximum Mean Discrepancy with an RBF kernel (Gretton et
  al. 2012, "A Kernel Two-Sample Test", bandwidth by the median heuristic); the Fréchet
  distance between Gaussians fitted to each set (the FID formula of Heusel et al. 2017),
  with full covariances by default.
- Target coverage: the share of target records with a selected record within cosine distance
  r, as in Coverage-centric Coreset Selection (CCS, Zheng et al. 2023, ICLR).
- Diversity: normalised entropy of a k-means cluster histogram, and the mean pairwise cosine
  distance.
- Duplicate and junk rates from boolean flag columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import faiss
import numpy as np
import pandas as pd
from sklearn.cluster import kmeans_plusplus


@dataclass
class Config:
    # MMD costs O(n^2) memory: 2,000 per side keeps each kernel block at 16 MB (float32).
    mmd_max_samples: int = 2000
    # "full" covariance Fréchet costs O(d^3): a few ms at d=384, ~1 s at d=2048. "diagonal"
    # ignores correlations between dimensions and is O(d).
    frechet: str = "full"
    # k-means for the cluster entropy: 25 iterations is faiss's default and enough for a
    # histogram (the exact centroids do not matter, their occupancy does).
    kmeans_iterations: int = 25
    # faiss trains on a sample of at most this many points per centroid (its own default).
    kmeans_points_per_centroid: int = 256
    # k-means++ seeding runs on a smaller sample: scikit-learn's took 4-8 s on 12,800 x 384
    # points for k=50 here, and 20 points per centroid are plenty to place the seeds.
    seeding_points_per_centroid: int = 20
    # Covariances and cluster histograms are estimated on at most this many rows per set (a
    # seeded sample): at 100k x 256 the full-set covariances and assignments took ~10 s of a
    # build's report, and 20k rows estimate a 256-d covariance as well for these summaries.
    max_rows: int = 20_000


def _unit(matrix: np.ndarray) -> np.ndarray:
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return matrix / norms


def _subsample(matrix: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    if len(matrix) <= limit:
        return matrix
    return matrix[np.sort(rng.choice(len(matrix), size=limit, replace=False))]


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(squared, 0.0)


def mmd_squared(x: np.ndarray, y: np.ndarray, bandwidth: float | None = None) -> tuple[float, float]:
    """Unbiased MMD² with k(a, b) = exp(-|a-b|² / (2 h²)); h = median pairwise distance if None.

    Returns (mmd², h). Diagonal terms are left out of the within-set means (the unbiased
    U-statistic), so two samples from one distribution give values scattered around 0.
    """
    if len(x) < 2 or len(y) < 2:
        return float("nan"), float("nan")
    xx, yy, xy = _squared_distances(x, x), _squared_distances(y, y), _squared_distances(x, y)
    if bandwidth is None:
        off_diagonal = np.concatenate([xx[np.triu_indices(len(x), 1)], yy[np.triu_indices(len(y), 1)], xy.ravel()])
        median = float(np.median(off_diagonal))
        bandwidth = float(np.sqrt(median)) if median > 0 else 1.0
    gamma = 1.0 / (2.0 * bandwidth**2)
    m, n = len(x), len(y)
    k_xx = (np.exp(-gamma * xx).sum() - m) / (m * (m - 1))
    k_yy = (np.exp(-gamma * yy).sum() - n) / (n * (n - 1))
    k_xy = np.exp(-gamma * xy).mean()
    return float(k_xx + k_yy - 2.0 * k_xy), bandwidth


def frechet_distance(x: np.ndarray, y: np.ndarray, diagonal: bool = False) -> float:
    """|mu_x - mu_y|² + tr(S_x + S_y - 2 (S_x^½ S_y S_x^½)^½), Gaussians fitted to each set.

    The matrix square roots use symmetric eigendecompositions (clipping the tiny negative
    eigenvalues of rank-deficient covariances) instead of scipy.linalg.sqrtm, which returns
    complex noise when a set has fewer records than dimensions. NaN when a set has fewer than two.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) < 2 or len(y) < 2:
        return float("nan")  # a covariance needs two points; an empty or single selection has none
    mean_term = float(np.sum((x.mean(0) - y.mean(0)) ** 2))
    if diagonal:
        vx, vy = x.var(0, ddof=1), y.var(0, ddof=1)
        return mean_term + float(np.sum(vx + vy - 2.0 * np.sqrt(vx * vy)))
    cx, cy = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    values, vectors = np.linalg.eigh(cx)
    root_x = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    cross = np.linalg.eigvalsh(root_x @ cy @ root_x)
    trace_root = float(np.sum(np.sqrt(np.clip(cross, 0, None))))
    return mean_term + float(np.trace(cx) + np.trace(cy) - 2.0 * trace_root)


def embedding_distance(selected_emb: np.ndarray, target_emb: np.ndarray, seed: int = 0, config: Config | None = None) -> dict[str, Any]:
    """How far the selection sits from the target in (unit-norm) embedding space.

    Keys: ``mean_cosine_distance`` (1 - cos of the two mean vectors), ``mmd2`` and
    ``mmd_bandwidth`` (on at most ``mmd_max_samples`` per side, seeded), ``frechet`` and
    ``frechet_variant`` ("full" or "diagonal"). All are 0 for identical sets (MMD² up to its
    unbiased-estimator noise).
    """
    config = config or Config()
    selected, target = _unit(selected_emb), _unit(target_emb)
    mean_s, mean_t = selected.mean(0), target.mean(0)
    denominator = float(np.linalg.norm(mean_s) * np.linalg.norm(mean_t)) or 1.0
    rng = np.random.default_rng(seed)
    mmd2, bandwidth = mmd_squared(_subsample(selected, config.mmd_max_samples, rng), _subsample(target, config.mmd_max_samples, rng))
    return {
        "mean_cosine_distance": float(1.0 - mean_s @ mean_t / denominator),
        "mmd2": mmd2,
        "mmd_bandwidth": bandwidth,
        "frechet": frechet_distance(
            _subsample(selected, config.max_rows, rng), _subsample(target, config.max_rows, rng), diagonal=config.frechet == "diagonal"
        ),
        "frechet_variant": config.frechet,
        "n_selected": int(len(selected)),
        "n_target": int(len(target)),
    }


def target_coverage(
    selected_emb: np.ndarray, target_emb: np.ndarray, radii: Sequence[float] = (0.2, 0.3, 0.4, 0.5, 0.6)
) -> dict[float, float]:
    """radius -> share of target records whose nearest selected record is within cosine distance radius."""
    if len(target_emb) == 0:
        return {float(r): float("nan") for r in radii}
    if len(selected_emb) == 0:
        return {float(r): 0.0 for r in radii}
    selected, target = _unit(selected_emb), _unit(target_emb)
    index = faiss.IndexFlatIP(selected.shape[1])
    index.add(selected)
    similarity, _ = index.search(target, 1)
    nearest_distance = 1.0 - similarity[:, 0]
    # A hair of tolerance so float32 rounding does not uncover a target sitting exactly at r.
    return {float(r): float(np.mean(nearest_distance <= r + 1e-6)) for r in radii}


def mean_pairwise_cosine_distance(embeddings: np.ndarray) -> float:
    """Exact mean of 1 - cos over all pairs i != j, in O(n d) instead of sampling pairs.

    For unit vectors, sum_{i != j} x_i . x_j = |sum_i x_i|² - n.
    """
    unit = _unit(embeddings).astype(np.float64)
    n = len(unit)
    if n < 2:
        return float("nan")
    total = unit.sum(0)
    return float(1.0 - (total @ total - n) / (n * (n - 1)))


def diversity(embeddings: np.ndarray, n_clusters: int = 50, seed: int = 0, config: Config | None = None) -> dict[str, Any]:
    """Cluster entropy (k-means, entropy of occupancy / log k, 1 = evenly spread) and mean pairwise distance."""
    config = config or Config()
    unit = _unit(embeddings)
    n = len(unit)
    k = int(min(n_clusters, n))
    if k < 2:
        entropy = 0.0
    else:
        # faiss seeds k-means with random points, which on 8 separated clusters merged two and
        # split another; k-means++ seeding (Arthur & Vassilvitskii 2007) from scikit-learn
        # avoids that. Euclidean k-means on unit vectors partitions by cosine too
        # (|a-b|² = 2 - 2 cos) and ran 25-50x faster here than faiss's spherical mode.
        rng = np.random.default_rng(seed)
        sample = _subsample(unit, k * config.kmeans_points_per_centroid, rng)
        seeding_sample = _subsample(sample, k * config.seeding_points_per_centroid, rng)
        initial, _ = kmeans_plusplus(seeding_sample, k, random_state=seed)
        kmeans = faiss.Kmeans(unit.shape[1], k, niter=config.kmeans_iterations, seed=seed,
                              min_points_per_centroid=1, max_points_per_centroid=config.kmeans_points_per_centroid)  # fmt: skip
        kmeans.train(sample, init_centroids=np.ascontiguousarray(initial, dtype=np.float32))
        assigned = _subsample(unit, config.max_rows, rng)
        _, assignment = kmeans.index.search(assigned, 1)
        shares = np.bincount(assignment[:, 0], minlength=k) / len(assigned)
        shares = shares[shares > 0]
        entropy = float(-(shares * np.log(shares)).sum() / np.log(k))
    return {
        "cluster_entropy": entropy,
        "n_clusters": k,
        "mean_pairwise_cosine_distance": mean_pairwise_cosine_distance(unit),
        "n": int(n),
    }


def rates(
    flags: pd.DataFrame,
    duplicate_columns: Sequence[str] | None = None,
    junk_columns: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Share of selected records flagged as duplicate / junk, given one boolean column per flag.

    ``duplicate_rate`` is the share with any duplicate flag set, ``junk_rate`` any junk flag;
    ``<column>_rate`` is reported for every flag column. By default a column whose name
    contains "dup" is a duplicate flag and every other boolean column is a junk flag.
    """
    boolean = [c for c in flags.columns if pd.api.types.is_bool_dtype(flags[c])]
    if duplicate_columns is None:
        duplicate_columns = [c for c in boolean if "dup" in str(c).lower()]
    if junk_columns is None:
        junk_columns = [c for c in boolean if c not in set(duplicate_columns)]
    n = len(flags)

    def share(columns: Sequence[str]) -> float:
        if n == 0 or not columns:
            return 0.0 if n else float("nan")
        return float(flags[list(columns)].fillna(False).astype(bool).any(axis=1).mean())

    out: dict[str, Any] = {"n": int(n), "duplicate_rate": share(duplicate_columns), "junk_rate": share(junk_columns)}
    for column in list(duplicate_columns) + list(junk_columns):
        out[f"{column}_rate"] = share([column])
    return out
