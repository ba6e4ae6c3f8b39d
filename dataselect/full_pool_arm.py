"""The report's full-pool arm, trained beside the selection and stored for the report.

The full pool's model is the report's costliest fit (at 100k real-text records two thirds of its
CPU), and it depends on the pool, the evaluation texts and the fixed recipe, never on the
selection. So the platform trains it from the pool's term counts (``evaluation_features``) beside
the selection (the ``evaluation_full_pool_arm`` asset) and stores its prediction for each
evaluation text. The report scores those predictions on its own evaluation records (after
``--tune``, only the held-out half), exactly as if it had trained the arm itself.

The stored predictions are tied to the pool's term counts (its shards and counting settings), the
recipe and its model settings by a fingerprint; a reader that finds another fingerprint, or an
evaluation text with no stored prediction, trains the arm itself.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import pyarrow as pa

from dataselect.pipeline import fingerprint as digest_of
from dataselect.storage import exists, parquet_metadata, read_parquet, write_parquet

PREDICTIONS_FILE = "full_pool_predictions.parquet"


def text_digests(texts: Iterable[str]) -> list[str]:
    """A key per evaluation text: the full pool's model predicts from the text alone."""
    return [hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest() for text in texts]


def fingerprint(pool_terms_fingerprint: str, recipe: str, model_settings: dict[str, Any]) -> str:
    """Which pool (its term counts' fingerprint), which recipe and which model settings."""
    return digest_of("full-pool-arm-v1", pool_terms_fingerprint, recipe, model_settings)


@dataclass
class FullPoolPredictions:
    """The full pool's model's prediction for each evaluation text, by :func:`text_digests`."""

    fingerprint: str
    predictions: dict[str, str | None]
    fit_seconds: float
    converged: bool

    def for_texts(self, texts: Iterable[str]) -> np.ndarray | None:
        """Predictions for ``texts`` in order, or None when any of them was not predicted."""
        keys = text_digests(texts)
        if any(key not in self.predictions for key in keys):
            return None
        return np.array([self.predictions[key] for key in keys], dtype=object)


def write(folder: str | os.PathLike, stored: FullPoolPredictions) -> None:
    table = pa.table(
        {
            "text_digest": pa.array(list(stored.predictions), pa.string()),
            "prediction": pa.array(list(stored.predictions.values()), pa.string()),
        }
    )
    settings = {"fingerprint": stored.fingerprint, "fit_seconds": f"{stored.fit_seconds:.3f}", "converged": str(stored.converged)}
    write_parquet(f"{folder}/{PREDICTIONS_FILE}", table, settings)


def read(folder: str | os.PathLike) -> FullPoolPredictions | None:
    """The stored predictions, if any; the evaluator that uses them checks their fingerprint."""
    path = f"{folder}/{PREDICTIONS_FILE}"
    if not exists(path):
        return None
    settings = parquet_metadata(path)
    table = read_parquet(path)
    predictions = dict(zip(table.column("text_digest").to_pylist(), table.column("prediction").to_pylist()))
    return FullPoolPredictions(settings["fingerprint"], predictions, float(settings["fit_seconds"]), settings["converged"] == "True")
