"""Label-noise detection by confident learning (Northcutt, Jiang & Chuang 2021, "Confident
Learning: Estimating Uncertainty in Dataset Labels", JAIR).

1. Out-of-fold predicted probabilities ``p(k | x)`` from a cross-validated linear model (every
   record is scored by a model that never saw its label): logistic regression on TF-IDF, or
   linear discriminant analysis (a shared-covariance Gaussian per class, fitted in closed form)
   on dense embeddings.
2. Per-class thresholds ``t_k`` = mean ``p(k | x)`` over records labelled ``k`` (the expected
   self-confidence of class ``k``).
3. Confident joint: a record counts for the class ``k`` that has the highest ``p(k | x)`` among the
   classes with ``p(k | x) >= t_k``. Records that land off the diagonal (``k`` differs from the
   given label) are the issues. This is the plain "off-diagonal of the confident joint" rule
   (cleanlab's ``confident_learning`` filter), without the prune-by-noise-rate calibration.

Features: ``"tfidf"`` (default; sublinear TF-IDF of hashed words, more accurate on topical
labels), ``"embeddings"`` (the pool's row-aligned embeddings) or ``"tfidf+embeddings"`` (both
models' out-of-fold probabilities averaged). TF-IDF needs a ``text`` column
in the batch, which the caller knows to provide because ``needs_text`` is True for it. Hashed
words instead of a fitted vocabulary: the same model (AUROC 0.9957 against 0.9956 on the 20
Newsgroups benchmark, 0.894 against 0.889 on Amazon) at a tenth of the featurisation time.

Each fold's model is trained on at most ``max_train_per_fold`` of the other folds' records (a
seeded sample), so the fits cost the same at 100k records as at 20k and only the out-of-fold
predictions grow with the pool. A pool of at least twice that cap is split in two folds instead
of ``n_folds``: each model still trains on the cap, and two fits replace five (with the cap at
5k on the corrupted 20 Newsgroups pool: flipped-label AUROC 0.9922 against 0.9923, 1.9 s against 4.7 s).

Records with a null label are kept, with NaN confidences and no suggestion.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import scipy.sparse as sp
from joblib import Parallel, delayed
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.covariance import ledoit_wolf_shrinkage
from sklearn.model_selection import StratifiedKFold

from dataselect import ngrams
from dataselect.linear import logistic_regression
from dataselect.records import LABEL, TEXT
from dataselect.scorers.base import Batch, Scorer
from dataselect.threads import available


def confident_learning_issues(probabilities: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Off-diagonal confident-joint rule on integer ``labels`` (n,) and ``probabilities`` (n, c).

    Returns ``(is_issue bool (n,), confident_class int64 (n,) or -1 when no class is confident,
    thresholds float64 (c,))``.
    """
    n, n_classes = probabilities.shape
    counts = np.bincount(labels, minlength=n_classes)
    sums = np.zeros(n_classes)
    np.add.at(sums, labels, probabilities[np.arange(n), labels])
    # A class with no labelled records gets threshold 1 + tiny: it can never be "confident".
    thresholds = np.where(counts > 0, sums / np.maximum(counts, 1), 1.0 + 1e-9)
    confident = probabilities >= thresholds[None, :]
    masked = np.where(confident, probabilities, -np.inf)
    confident_class = np.where(confident.any(axis=1), masked.argmax(axis=1), -1)
    is_issue = (confident_class >= 0) & (confident_class != labels)
    return is_issue, confident_class.astype(np.int64), thresholds


_CHUNK = 16_384  # rows per n x d block: bounds the temporaries at a million records


def _row_chunks(n: int):
    return (slice(start, min(start + _CHUNK, n)) for start in range(0, n, _CHUNK))


class PooledGaussianClassifier(ClassifierMixin, BaseEstimator):
    """Linear discriminant analysis: one Gaussian per class with a shared, shrunk covariance.

    The model of scikit-learn's ``LinearDiscriminantAnalysis(solver="lsqr")`` (equal to it when
    ``shrinkage=0``), fitted with two matrix products instead of per-class loops, so a 5-fold
    fit on 100k x 256 embeddings takes about a second. ``shrinkage="auto"`` shrinks the pooled
    covariance towards a scaled identity by the Ledoit-Wolf estimate, which keeps it invertible
    when a pool is small next to the embedding dimension. ``sample_weight`` lets
    :meth:`out_of_fold_proba` fit each fold on the full array with 0/1 weights, never copying
    the training rows (800 MB per fold for a million 256-d embeddings).
    """

    def __init__(self, shrinkage: float | str = "auto"):
        self.shrinkage = shrinkage

    def fit(self, x: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> "PooledGaussianClassifier":
        # float32 for the n x d products (half the time), in row chunks so no n x d temporary is
        # made; the d x d algebra is float64.
        x = np.asarray(x, dtype=np.float32)
        weight = np.ones(len(x)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        self.classes_, encoded = np.unique(y, return_inverse=True)
        k, total = len(self.classes_), weight.sum()
        counts = np.bincount(encoded, weights=weight, minlength=k)
        sums = np.zeros((k, x.shape[1]))
        for rows in _row_chunks(len(x)):
            width = rows.stop - rows.start
            one_hot = sp.csr_matrix((weight[rows].astype(np.float32), (encoded[rows], np.arange(width))), shape=(k, width))
            sums += one_hot @ x[rows]
        present = counts > 0  # a class may have no training rows in a fold: it gets probability 0
        means = np.where(present[:, None], sums / np.maximum(counts, 1e-300)[:, None], 0.0)
        means32 = means.astype(np.float32)
        covariance = np.zeros((x.shape[1], x.shape[1]))
        for rows in _row_chunks(len(x)):
            centered = (x[rows] - means32[encoded[rows]]) * np.sqrt(weight[rows], dtype=np.float32)[:, None]
            covariance += centered.T @ centered
        covariance /= total
        if self.shrinkage == "auto":
            # A scalar estimate: 50k evenly spaced training rows pin it down as well as all of them.
            training = np.flatnonzero(weight > 0)
            sample = training[:: max(1, len(training) // 50_000)]
            shrinkage = ledoit_wolf_shrinkage(x[sample] - means32[encoded[sample]], assume_centered=True)
        else:
            shrinkage = float(self.shrinkage)
        mu = np.trace(covariance) / covariance.shape[0]
        covariance = (1.0 - shrinkage) * covariance + shrinkage * mu * np.eye(covariance.shape[0])
        self.coef_ = np.linalg.lstsq(covariance, means.T, rcond=None)[0].T
        log_prior = np.log(np.where(present, counts, 1.0) / total)
        self.intercept_ = np.where(present, -0.5 * np.einsum("kd,kd->k", means, self.coef_) + log_prior, -np.inf)
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return softmax(np.asarray(x, dtype=np.float32) @ self.coef_.T.astype(np.float32) + self.intercept_, axis=1)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.classes_[self.predict_proba(x).argmax(axis=1)]

    def out_of_fold_proba(self, x: np.ndarray, y: np.ndarray, folds) -> np.ndarray:
        """``cross_val_predict(self, x, y, cv=folds, method="predict_proba")`` without row copies."""
        probabilities = np.zeros((len(y), len(np.unique(y))))
        for train, test in folds.split(np.zeros(len(y)), y):
            weight = np.zeros(len(y))
            weight[train] = 1.0
            self.fit(x, y, sample_weight=weight)
            for block in _row_chunks(len(test)):
                probabilities[test[block]] = self.predict_proba(x[test[block]])
        return probabilities


def label_noise_keep(
    is_issue: np.ndarray, self_confidence: np.ndarray, min_self_confidence: float, top_is_given: np.ndarray | None = None
) -> np.ndarray:
    """The filter rule: not a confident-learning issue and, where the record was scored, a given
    label with at least ``min_self_confidence`` out-of-fold probability and, when ``top_is_given``
    is passed, the model's most probable class."""
    confidence = np.asarray(self_confidence, dtype=np.float64)
    doubtful = np.isfinite(confidence) & (confidence < min_self_confidence)
    if top_is_given is not None:
        doubtful |= np.isfinite(confidence) & ~np.asarray(top_is_given, bool)
    return ~np.asarray(is_issue, bool) & ~doubtful


class LabelNoise(Scorer):
    """Pool scorer: ``self_confidence``, ``suggested_label``, ``is_issue``, ``keep``, ``reason``, ``score``."""

    name: ClassVar[str] = "label_noise"
    kind: ClassVar[str] = "label_noise"
    library: ClassVar[str] = "scikit-learn"
    stage: ClassVar[str] = "pool"

    @dataclass
    class Config:
        # "tfidf" (needs a text column), "embeddings", or "tfidf+embeddings": the two models'
        # out-of-fold probabilities averaged on the same folds. The ensemble ranks Amazon's flips
        # better (benchmarks/results/methods-*.md), yet made the default it lowered the default
        # recipe's dev accuracy on both corpora (`benchmarks.methods --dev` with the evaluation's
        # 1-2-grams at C=100 / C=10: 0.923 -> 0.904 and 0.868 -> 0.849), so tfidf stays the default.
        # Embeddings alone scale to pools whose text won't fit in memory.
        features: str = "tfidf"
        # "logistic" or "lda"; None picks by features: logistic regression for tfidf (LDA would need
        # a vocabulary-sized dense covariance), LDA (PooledGaussianClassifier) for embeddings (on the
        # benchmark: AUROC 0.980 vs 0.981 for logistic regression, 1.8 s vs 19 s for 13k records).
        classifier: str | None = None
        n_folds: int = 5  # cross-validation folds for out-of-fold probabilities
        # Logistic regression only:
        C: float = 10.0  # inverse L2 strength; weak regularisation suits unit-norm/tf-idf rows
        # A LogisticRegression solver ("saga" is ~10x faster than lbfgs on sparse tf-idf), or "sgd":
        # a fixed number of SGD epochs on the same penalised log loss (alpha = 1 / (C * n)), in a
        # third of saga's fit time at 100k records. saga stays the default: with sgd the methods
        # benchmark's flipped-label AUROC fell from 0.894 to 0.883 on the Amazon pool (0.996 both
        # on 20 Newsgroups), outside the 0.01 a faster form may lose; on dense embeddings under
        # classifier="logistic" 5 SGD epochs reach 0.924 against 0.964 (3k newsgroups).
        solver: str = "saga"
        epochs: int = 5  # sgd
        max_iter: int = 200  # other solvers' epochs/iterations
        tol: float = 1e-2  # their stopping tolerance: probabilities only need to rank (AUROC unchanged vs 1e-3)
        hashed_buckets: int = 2**18  # tfidf: hashed word buckets (few collisions at a pool's vocabulary)
        # Training records per fold's model (a seeded sample of the other folds); None: all of them.
        max_train_per_fold: int | None = 20_000
        seed: int = 0  # fold assignment and the solver's row order
        # Also drop records whose given label gets less than this out-of-fold probability
        # (0: confident learning alone). A stronger filter trades clean records for fewer flips.
        min_self_confidence: float = 0.0
        # Also drop records whose given label is not the model's most probable class (cleanlab's
        # "predicted_neq_given"). With two classes it is p(given) < 0.5; with many it spares the
        # clean records a fixed cut drops: on 20 Newsgroups it drops 9.5% of the clean target records
        # vs 27% for p(given) < 0.5, and 99.8% vs 100% of the flips. Chosen on the dev splits.
        require_top_label: bool = True

    @property
    def _members(self) -> list[str]:
        """The feature sets whose out-of-fold probabilities are averaged ("tfidf+embeddings": both)."""
        members = self.config.features.split("+")
        unknown = sorted(set(members) - {"tfidf", "embeddings"})
        if unknown or len(set(members)) != len(members):
            raise ValueError(f"label_noise: unknown features {self.config.features!r} (use 'tfidf', 'embeddings' or 'tfidf+embeddings')")
        return members

    @property
    def needs_embeddings(self) -> bool:  # type: ignore[override]
        return "embeddings" in self._members

    @property
    def needs_text(self) -> bool:
        return "tfidf" in self._members

    def _features(self, batch: Batch, rows: np.ndarray, member: str):
        if member == "embeddings":
            if batch.embeddings is None:
                raise ValueError(f"label_noise with features={self.config.features!r} needs Batch.embeddings")
            vectors = np.asarray(batch.embeddings, dtype=np.float32)
            return vectors if len(rows) == len(vectors) else vectors[rows]  # no copy when all are labelled
        if TEXT not in batch.records.column_names:
            raise ValueError(f"label_noise with features={self.config.features!r} needs a 'text' column in the batch")
        texts = batch.text_array if len(rows) == len(batch) else batch.text_array.take(rows)
        # The idf over all rows is unsupervised: it leaks no label into the folds.
        return ngrams.hashed_tfidf(texts, self.config.hashed_buckets)

    def _classifier(self, member: str, n_train: int):
        c = self.config
        kind = c.classifier or ("lda" if member == "embeddings" else "logistic")
        if kind == "lda":
            return PooledGaussianClassifier(shrinkage="auto")
        if kind == "logistic":
            return logistic_regression(c.C, n_train, c.solver, epochs=c.epochs, tol=c.tol, max_iter=c.max_iter, seed=c.seed)
        raise ValueError(f"label_noise: unknown classifier {kind!r} (use 'logistic' or 'lda')")

    def _probabilities(self, batch: Batch, rows: np.ndarray, encoded: np.ndarray, folds, n_classes: int) -> np.ndarray:
        """Out-of-fold ``p(k | x)`` of each feature set's model on the same folds, averaged."""
        members = self._members
        total = np.zeros((len(rows), n_classes))
        for member in members:
            model, features = self._classifier(member, len(rows)), self._features(batch, rows, member)
            if isinstance(model, PooledGaussianClassifier):
                total += model.out_of_fold_proba(features, encoded, folds)
            else:  # one model per fold, its penalty scaled to the fold's training rows
                total += self._out_of_fold(member, features, encoded, folds, n_classes)
            del features
        return total / len(members)

    def _out_of_fold(self, member: str, features, encoded: np.ndarray, folds, n_classes: int) -> np.ndarray:
        """Out-of-fold ``p(k | x)``; each fold's model sees at most ``max_train_per_fold`` records."""
        cap = self.config.max_train_per_fold
        rng = np.random.default_rng(self.config.seed)
        splits = []
        for train, test in folds.split(np.zeros(len(encoded)), encoded):
            if cap is not None and len(train) > cap:
                train = np.sort(rng.choice(train, cap, replace=False))
            splits.append((train, test))

        def fold(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            fitted = self._classifier(member, len(train)).fit(features[train], encoded[train])
            out = np.zeros((len(test), n_classes))
            for block in _row_chunks(len(test)):  # no copy of half a large pool's features at once
                out[block, fitted.classes_] = fitted.predict_proba(features[test[block]])  # a class absent from training gets 0
            return test, out

        probabilities = np.zeros((len(encoded), n_classes))
        # Folds on threads, one per core: SGD and saga run without the GIL.
        for test, out in Parallel(n_jobs=available(), backend="threading")(delayed(fold)(train, test) for train, test in splits):
            probabilities[test] = out
        return probabilities

    def score(self, batch: Batch) -> dict[str, np.ndarray]:
        n = len(batch)
        raw_labels = batch.records.column(LABEL).to_pylist()
        labelled = np.array([value is not None and value == value and value != "" for value in raw_labels], bool)
        self_confidence = np.full(n, np.nan)
        suggested = np.full(n, None, dtype=object)
        is_issue = np.zeros(n, bool)
        reason = np.full(n, "", dtype=object)

        rows = np.flatnonzero(labelled)
        classes, encoded = np.unique(np.array([str(raw_labels[i]) for i in rows], dtype=object), return_inverse=True)
        class_counts = np.bincount(encoded, minlength=len(classes)) if len(rows) else np.zeros(0, np.int64)
        # Cross-validation needs two classes and at least two records in the largest class.
        if len(classes) >= 2 and class_counts.max() >= 2:
            n_splits = int(min(self.config.n_folds, class_counts.max()))
            cap = self.config.max_train_per_fold
            if cap is not None and len(rows) >= 2 * cap:
                # Every fold's model trains on `cap` records however many folds there are, so more
                # folds only add fits: two halves, each scored by a model of `cap` records of the other.
                n_splits = 2
            folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=self.config.seed)
            probabilities = self._probabilities(batch, rows, encoded, folds, len(classes))
            flagged, confident_class, _ = confident_learning_issues(probabilities, encoded)
            given_p = probabilities[np.arange(len(rows)), encoded]
            argmax = probabilities.argmax(axis=1)
            # For issues, suggest the confident class that put the record off the diagonal.
            suggestion = np.where(flagged, confident_class, argmax)
            self_confidence[rows] = given_p
            suggested[rows] = classes[suggestion]
            is_issue[rows] = flagged
            suggested_p = probabilities[np.arange(len(rows)), suggestion]
            for position in np.flatnonzero(flagged):
                reason[rows[position]] = (
                    f"label '{classes[encoded[position]]}' likely wrong: p={given_p[position]:.2f}, "
                    f"model suggests '{classes[suggestion[position]]}' (p={suggested_p[position]:.2f})"
                )
        top_is_given = np.asarray([s == str(label) for s, label in zip(suggested, raw_labels)], bool)
        keep = label_noise_keep(
            is_issue, self_confidence, self.config.min_self_confidence, top_is_given if self.config.require_top_label else None
        )
        for i in np.flatnonzero(~keep & ~is_issue):
            reason[i] = (
                f"label '{raw_labels[i]}' doubtful: p={self_confidence[i]:.2f} < min_self_confidence {self.config.min_self_confidence:.2f}"
                if self_confidence[i] < self.config.min_self_confidence
                else f"label '{raw_labels[i]}' doubtful: the model prefers '{suggested[i]}' (p(given)={self_confidence[i]:.2f})"
            )
        return {
            "self_confidence": self_confidence,
            "suggested_label": suggested,
            "is_issue": is_issue,
            "keep": keep,
            "reason": reason,
            "score": self_confidence.copy(),
        }
