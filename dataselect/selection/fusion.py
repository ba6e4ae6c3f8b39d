"""Score fusion: many soft scores into one number per record.

Scores live on different scales (log-weights, probabilities, cosines), so each column is first
normalised, then combined as a weighted mean. Rank normalisation (the default; Borda-style rank
averaging) ignores scale and outliers and keeps only the order; z-score keeps distances, so one
extreme score can dominate.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import rankdata

NORMALIZATIONS = ("rank", "zscore")


def normalize(values: np.ndarray, normalization: str = "rank") -> np.ndarray:
    """One column normalised; NaN always ends lowest.

    - ``"rank"``: average ranks mapped to [0, 1] (``(rank - 1) / (n - 1)``) with NaN ranked below
      every number (NaNs tie with each other). A single non-NaN row maps to 1.
    - ``"zscore"``: ``(x - mean) / std`` over the non-NaN values (0 when std is 0); NaN becomes
      ``min - 1``, one standard deviation below the worst real value.
    """
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {normalization!r}; use one of {NORMALIZATIONS}")
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    missing = np.isnan(values)
    if n == 0:
        return values
    if normalization == "rank":
        if n == 1:
            return np.where(missing, 0.0, 1.0)
        ranks = rankdata(np.where(missing, -np.inf, values), method="average")
        return (ranks - 1.0) / (n - 1.0)
    if missing.all():
        return np.zeros(n)
    present = values[~missing]
    spread = present.std()
    z = (values - present.mean()) / spread if spread > 0 else np.zeros(n)
    z = np.where(missing, np.nan, z)
    return np.where(missing, np.nanmin(z) - 1.0, z)


def fuse(scores: pd.DataFrame, weights: dict[str, float], normalization: str = "rank") -> np.ndarray:
    """Weighted mean of normalised score columns: ``sum_c w_c * norm(c) / sum_c |w_c|``.

    Columns named in ``weights`` but absent from ``scores`` are ignored (see
    :func:`missing_columns` to report them). Negative weights turn "lower is better" columns
    around. With no usable column the result is all zeros.
    """
    present = {column: weight for column, weight in weights.items() if column in scores.columns and weight != 0}
    total = sum(abs(weight) for weight in present.values())
    fused = np.zeros(len(scores))
    if total == 0:
        return fused
    for column, weight in present.items():
        values = pd.to_numeric(scores[column], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        fused += weight * normalize(values, normalization)
    return fused / total


def missing_columns(scores: pd.DataFrame, weights: dict[str, float]) -> list[str]:
    """Weighted columns that the scores table does not have."""
    return [column for column in weights if column not in scores.columns]
