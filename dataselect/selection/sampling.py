"""Weighted sampling without replacement, shared by the gumbel_top_k and sensitivity policies."""

from __future__ import annotations

import numpy as np


def gumbel_top_k(log_weights: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Indices of ``k`` records sampled without replacement with probability ∝ exp(log weight).

    Gumbel top-k trick (Kool et al. 2019), as used by DSIR: perturb each log weight with
    independent Gumbel(0, 1) noise and keep the k largest, in draw order. Deterministic for a
    seed; NaN counts as -inf, and ties (e.g. -inf weights) are broken by index (stable sort).
    """
    log_weights = np.asarray(log_weights, dtype=np.float64)
    k = int(min(max(k, 0), len(log_weights)))
    keys = np.where(np.isnan(log_weights), -np.inf, log_weights) + np.random.default_rng(seed).gumbel(size=len(log_weights))
    return np.argsort(-keys, kind="stable")[:k].astype(np.int64)
