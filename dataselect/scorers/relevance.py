"""Learned target relevance: a calibrated linear classifier, target (1) vs pool (0).

The classifier-filtering recipe of DataComp (Gadre et al. 2023, "DataComp: In search of the
next generation of multimodal datasets") and Data Filtering Networks (Fang et al. 2023, "Data
Filtering Networks"): train a cheap model to tell the wanted reference data from the raw pool,
then rank the pool by its predicted probability of being reference-like.

- :class:`EmbeddingRelevance` works on the row-aligned unit-norm embeddings.
- :class:`NgramRelevance` works on hashed word 1-2-gram TF-IDF (sublinear tf, l2 norm; n-grams
  from :mod:`dataselect.ngrams`), so it needs no embedding model.

Both fit an L2 logistic regression with class-balanced weights (the target is usually much
smaller than the pool sample), then calibrate it with Platt scaling (Platt 1999): a 1-D
logistic regression on *out-of-fold* decision values from stratified k-fold cross-validation,
so the calibration is not fitted on scores the model has memorised. Only arrays are kept
(coefficients, intercept, Platt a and b, and the idf vector), so save/load goes through
safetensors and inference is one matrix-vector product.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import scipy.sparse as sp
from scipy.special import expit
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.preprocessing import normalize

from dataselect import ngrams
from dataselect.scorers.base import Batch, Scorer


class _CalibratedLinearRelevance(Scorer):
    """Shared fit/score; subclasses provide :meth:`features` (and may learn feature state)."""

    kind: ClassVar[str] = "relevance"
    stage: ClassVar[str] = "shard"
    needs_fit: ClassVar[bool] = True
    library: ClassVar[str] = "scikit-learn"

    @dataclass
    class Config:
        C: float = 1.0  # inverse L2 strength of the logistic regression
        cv_folds: int = 5  # folds for the out-of-fold decision values Platt scaling is fitted on
        max_iter: int = 1000
        # True: probabilities as if target and pool were equally likely a priori, so they do not
        # depend on how large a pool sample was drawn. False: the training mix is the prior.
        balanced_prior: bool = True
        seed: int = 0  # fold shuffling

    coef_: np.ndarray
    intercept_: float
    platt_a_: float
    platt_b_: float

    def features(self, batch: Batch) -> np.ndarray | sp.spmatrix:
        raise NotImplementedError

    def classifier(self) -> LogisticRegression:
        """Class-balanced L2 logistic regression (lbfgs suits dense, low-dimensional features)."""
        return LogisticRegression(C=self.config.C, class_weight="balanced", max_iter=self.config.max_iter)

    def fit_features(self, pool: Batch, target: Batch) -> tuple:
        """Learn any feature state (e.g. idf); return the (target, pool) feature matrices."""
        return self.features(target), self.features(pool)

    def fit(self, pool: Batch, target: Batch) -> "_CalibratedLinearRelevance":
        if len(pool) == 0 or len(target) == 0:
            raise ValueError("relevance needs a non-empty pool sample and target")
        x_target, x_pool = self.fit_features(pool, target)
        stack = sp.vstack if sp.issparse(x_target) else np.vstack
        x = stack([x_target, x_pool])
        y = np.r_[np.ones(len(target), dtype=np.int64), np.zeros(len(pool), dtype=np.int64)]
        c = self.config
        classifier = self.classifier()
        folds = int(min(c.cv_folds, len(target), len(pool)))
        if folds >= 2:
            cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=c.seed)
            decision = cross_val_predict(classifier, x, y, cv=cv, method="decision_function")
        else:
            # Too few examples to cross-validate: calibrate on in-sample scores (overconfident).
            decision = classifier.fit(x, y).decision_function(x)
        classifier.fit(x, y)
        self.coef_ = classifier.coef_.ravel().astype(np.float64)
        self.intercept_ = float(classifier.intercept_[0])
        self.platt_a_, self.platt_b_ = _platt(decision, y, c.balanced_prior)
        return self

    def decision_function(self, batch: Batch) -> np.ndarray:
        if not hasattr(self, "coef_"):
            raise RuntimeError(f"{type(self).__name__}.score called before fit() or load()")
        return np.asarray(self.features(batch) @ self.coef_).ravel() + self.intercept_

    def score(self, batch: Batch) -> dict[str, np.ndarray]:
        if len(batch) == 0:
            return {"probability": np.zeros(0), "score": np.zeros(0)}
        logit = self.platt_a_ * self.decision_function(batch) + self.platt_b_
        probability = expit(logit)  # no overflow warnings for very negative logits
        return {"probability": probability, "score": probability.copy()}

    def state_arrays(self) -> dict[str, np.ndarray]:
        return {
            "coef": self.coef_,
            "intercept_platt_a_b": np.array([self.intercept_, self.platt_a_, self.platt_b_]),
        }

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.coef_ = np.asarray(arrays["coef"], dtype=np.float64)
        self.intercept_, self.platt_a_, self.platt_b_ = (float(v) for v in arrays["intercept_platt_a_b"])


def _platt(decision: np.ndarray, y: np.ndarray, balanced: bool) -> tuple[float, float]:
    """Platt scaling: P(target | d) = sigmoid(a d + b), fitted by (weighted) maximum likelihood."""
    weights = None
    if balanced:
        positives = y.mean()
        weights = np.where(y == 1, 0.5 / positives, 0.5 / (1.0 - positives))
    # Nearly unregularised: two parameters fitted on thousands of points.
    platt = LogisticRegression(C=1e6, max_iter=1000)
    platt.fit(decision.reshape(-1, 1), y, sample_weight=weights)
    return float(platt.coef_[0, 0]), float(platt.intercept_[0])


class EmbeddingRelevance(_CalibratedLinearRelevance):
    """Calibrated logistic regression on the batch's unit-norm embeddings."""

    name: ClassVar[str] = "relevance"
    needs_embeddings: ClassVar[bool] = True

    def features(self, batch: Batch) -> np.ndarray:
        if batch.embeddings is None:
            raise ValueError("EmbeddingRelevance needs Batch.embeddings")
        return np.asarray(batch.embeddings, dtype=np.float64)


class NgramRelevance(_CalibratedLinearRelevance):
    """Calibrated logistic regression on hashed word n-gram TF-IDF (no embeddings needed)."""

    name: ClassVar[str] = "ngram_relevance"

    @dataclass
    class Config(_CalibratedLinearRelevance.Config):
        C: float = 1.0
        num_features: int = 2**18  # hashed dimension: few collisions for a pool-sized vocabulary
        ngram_range: tuple[int, int] = (1, 2)
        threads: int | None = None  # featurisation threads; None: one per core

        def __post_init__(self) -> None:
            self.ngram_range = tuple(self.ngram_range)

    idf_: np.ndarray

    def classifier(self) -> LogisticRegression:
        # Far more features than examples: liblinear's dual coordinate descent is ~10x faster
        # than lbfgs here. Its shuffling is seeded, so fits are reproducible.
        return LogisticRegression(
            C=self.config.C,
            class_weight="balanced",
            solver="liblinear",
            dual=True,
            max_iter=self.config.max_iter,
            random_state=self.config.seed,
        )

    def _counts(self, batch: Batch) -> sp.csr_matrix:
        counts = ngrams.hashed_counts(batch.text_array, self.config.num_features, self.config.ngram_range, threads=self.config.threads)
        counts.data = 1.0 + np.log(counts.data)  # sublinear tf: repeated words add little evidence
        return counts

    def decision_function(self, batch: Batch) -> np.ndarray:
        """``features(batch) @ coef_ + intercept_`` from the distinct (text, n-gram) counts, with
        no sparse matrix: sublinear tf-idf weights, then per-text dot product and l2 norm."""
        if not hasattr(self, "idf_"):
            raise RuntimeError("NgramRelevance.score called before fit() or load()")
        width = self.config.num_features

        def decision_of(chunk) -> np.ndarray:
            rows, buckets, counts = ngrams.distinct_counts(*ngrams.ngram_buckets(chunk, width, self.config.ngram_range), width)
            weight = (1.0 + np.log(counts)) * self.idf_[buckets]
            norm = np.sqrt(np.bincount(rows, weight * weight, minlength=len(chunk)))
            dot = np.bincount(rows, weight * self.coef_[buckets], minlength=len(chunk))
            return np.divide(dot, norm, out=np.zeros(len(chunk)), where=norm > 0) + self.intercept_

        return np.concatenate(
            [np.zeros(0), *ngrams.map_chunks(decision_of, batch.tokens(threads=self.config.threads), self.config.threads)]
        )

    def fit_features(self, pool: Batch, target: Batch) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        counts = sp.vstack([self._counts(target), self._counts(pool)]).tocsr()
        self.idf_ = ngrams.smoothed_idf(counts)  # over target and pool sample together
        weighted = self._weight(counts)
        return weighted[: len(target)], weighted[len(target) :]

    def _weight(self, counts: sp.csr_matrix) -> sp.csr_matrix:
        return normalize(counts @ sp.diags(self.idf_), norm="l2").tocsr()

    def features(self, batch: Batch) -> sp.csr_matrix:
        if not hasattr(self, "idf_"):
            raise RuntimeError("NgramRelevance.score called before fit() or load()")
        return self._weight(self._counts(batch))

    def state_arrays(self) -> dict[str, np.ndarray]:
        return {**super().state_arrays(), "idf": self.idf_}

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        super().load_state_arrays(arrays)
        self.idf_ = np.asarray(arrays["idf"], dtype=np.float64)
