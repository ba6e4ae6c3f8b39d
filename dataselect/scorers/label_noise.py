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

Two scorers split the work so that the platform's global step never reads a text:

- :class:`LabelClassifier` (shard stage, fitted) trains the fold models on a pool sample and
  writes every record's out-of-fold ``p(k | x)`` per shard. A sampled record (known by shard, row
  and content hash) is predicted by the model of its own fold, which never saw its label; any
  other record by the model of the fold its content hashes to, which never saw it at all. When the
  sample is the whole pool, every record's probabilities are those of plain cross-validation over
  the pool, bit for bit; a shard that lands later is scored without refitting (a rebuild refits).
- :class:`LabelNoise` (pool stage) reads those probabilities, sets the thresholds over the whole
  pool and flags the issues. Without the column (a library call on one table) it fits the same
  models on the batch itself, which is that cross-validation.

Features: ``"tfidf"`` (default; sublinear TF-IDF of hashed words, more accurate on topical
labels), ``"embeddings"`` (the pool's row-aligned embeddings) or ``"tfidf+embeddings"`` (both
models' out-of-fold probabilities averaged). Hashed words instead of a fitted vocabulary: the
same model (AUROC 0.9957 against 0.9956 on the 20 Newsgroups benchmark, 0.894 against 0.889 on
Amazon) at a tenth of the featurisation time.

Each fold's model is trained on at most ``max_train_per_fold`` of the other folds' records (a
seeded sample), so the fits cost the same at 100k records as at 20k. A sample of at least twice
that cap is split in two folds instead of ``n_folds``: each model still trains on the cap, and
two fits replace five (with the cap at 5k on the corrupted 20 Newsgroups pool: flipped-label
AUROC 0.9922 against 0.9923, 1.9 s against 4.7 s).

Records with a null label are kept, with NaN confidences and no suggestion; so is a record whose
label the fitted models never saw.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
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
from dataselect.records import CONTENT_HASH, LABEL, ROW, SHARD, TEXT
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


@dataclass
class ClassifierConfig:
    """How the out-of-fold models are trained: :class:`LabelClassifier`'s settings, and
    :class:`LabelNoise`'s when it fits the models itself."""

    # "tfidf" (needs a text column), "embeddings", or "tfidf+embeddings": the two models'
    # out-of-fold probabilities averaged on the same folds. The ensemble ranks Amazon's flips
    # better (benchmarks/results/methods-*.md), yet made the default it lowered the default
    # recipe's dev accuracy on both corpora (`benchmarks.methods --dev` with the evaluation's
    # 1-2-grams at C=100 / C=10: 0.923 -> 0.904 and 0.868 -> 0.849), so tfidf stays the default.
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
    seed: int = 0  # fold assignment, the training samples and the solver's row order


def _members(features: str) -> list[str]:
    """The feature sets whose out-of-fold probabilities are averaged ("tfidf+embeddings": both)."""
    members = features.split("+")
    unknown = sorted(set(members) - {"tfidf", "embeddings"})
    if unknown or len(set(members)) != len(members):
        raise ValueError(f"label_noise: unknown features {features!r} (use 'tfidf', 'embeddings' or 'tfidf+embeddings')")
    return members


def _labels(batch: Batch) -> tuple[list, np.ndarray]:
    """The batch's labels as given, and which of them are labels at all (not null, NaN or "")."""
    raw = batch.records.column(LABEL).to_pylist() if LABEL in batch.records.column_names else [None] * len(batch)
    return raw, np.array([value is not None and value == value and value != "" for value in raw], bool)


def _hash_fold(key: str, n_folds: int, seed: int) -> int:
    return (
        int.from_bytes(hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8, key=str(seed).encode()).digest(), "big")
        % n_folds
    )


def _as_json_bytes(value) -> np.ndarray:
    return np.frombuffer(json.dumps(value).encode("utf-8"), dtype=np.uint8)


def _from_json_bytes(array: np.ndarray):
    return json.loads(np.asarray(array, dtype=np.uint8).tobytes().decode("utf-8"))


class _FoldModel:
    """One fold's fitted model as stored: its coefficients over the columns the sample used (TF-IDF:
    the buckets seen in the sample, plus one zero column for every other bucket; a model's weight
    on a bucket it never saw is exactly 0), rebuilt into the estimator that trained it so that it
    predicts with the same arithmetic."""

    def __init__(self, coef: np.ndarray, intercept: np.ndarray, classes: np.ndarray, estimator):
        self.coef, self.intercept, self.classes = coef, intercept, classes
        estimator.coef_, estimator.intercept_, estimator.classes_ = coef, intercept, classes
        if not isinstance(estimator, PooledGaussianClassifier):
            estimator.n_features_in_ = coef.shape[1]  # scikit-learn checks it before predicting
        self.estimator = estimator

    def predict_proba(self, features, n_classes: int) -> np.ndarray:
        out = np.zeros((features.shape[0], n_classes))
        out[:, self.classes] = self.estimator.predict_proba(features)  # a class absent from training gets 0
        return out


class LabelClassifier(Scorer):
    """Shard scorer: ``proba``, each record's out-of-fold ``p(k | x)`` over the fitted classes
    (listed in the column's ``classes`` metadata), for :class:`LabelNoise` to read."""

    name: ClassVar[str] = "label_classifier"
    kind: ClassVar[str] = "label_noise"
    stage: ClassVar[str] = "shard"
    needs_fit: ClassVar[bool] = True
    library: ClassVar[str] = "scikit-learn"
    # The fold models train on up to max_train_per_fold (20k) records each: a sample with at least
    # twice that many labelled records is cut in two folds that each train on the cap (the default
    # asset sample of 5,000 would train on 4,000). A pool smaller than the sample is all of it.
    fit_sample_size: ClassVar[int] = 50_000
    Config = ClassifierConfig

    classes_: list[str]

    @property
    def needs_embeddings(self) -> bool:  # type: ignore[override]
        return "embeddings" in _members(self.config.features)

    @property
    def needs_text(self) -> bool:  # type: ignore[override]
        return "tfidf" in _members(self.config.features)

    def column_metadata(self) -> dict[str, dict[str, str]]:
        return {"proba": {"classes": json.dumps(self.classes_), "settings": json.dumps(dataclasses.asdict(self.config), sort_keys=True)}}

    # Fitting -------------------------------------------------------------------------------
    def fit(self, pool: Batch, target: Batch | None = None) -> "LabelClassifier":
        """Fold models on ``pool`` (the target plays no part: labels are the pool's own)."""
        c = self.config
        members = _members(c.features)
        raw_labels, labelled = _labels(pool)
        rows = np.flatnonzero(labelled)
        classes, encoded = np.unique(np.array([str(raw_labels[i]) for i in rows], dtype=object), return_inverse=True)
        self.classes_ = [str(name) for name in classes]
        self.models_: dict[str, list[_FoldModel]] = {}
        self.columns_: dict[str, np.ndarray] = {}  # tfidf member -> the sample's buckets, in order
        self.idf_: np.ndarray | None = None
        self.sample_ = {
            "shards": [],
            "shard": np.zeros(0, np.int32),
            "row": np.zeros(0, np.int64),
            "hash": [],
            "fold": np.zeros(0, np.int8),
        }
        self._fit_folds = np.full(len(pool), -1, np.int64)  # this fit's fold of each pool row (-1: unlabelled)
        self._fit_features: dict[str, object] = {}
        class_counts = np.bincount(encoded, minlength=len(classes)) if len(rows) else np.zeros(0, np.int64)
        # Cross-validation needs two classes and at least two records in the largest class.
        if len(classes) < 2 or class_counts.max() < 2:
            return self
        n_splits = int(min(c.n_folds, class_counts.max()))
        if c.max_train_per_fold is not None and len(rows) >= 2 * c.max_train_per_fold:
            # Every fold's model trains on the cap however many folds there are, so more folds
            # only add fits: two halves, each scored by a model of `cap` records of the other.
            n_splits = 2
        splits = list(StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=c.seed).split(np.zeros(len(rows)), encoded))
        for fold, (_, test) in enumerate(splits):
            self._fit_folds[rows[test]] = fold
        self._remember_sample(pool, rows)
        for member in members:
            features = self._member_features(pool, rows, member)
            self.models_[member] = self._fit_folds_of(member, features, encoded, splits, len(classes))
            self._fit_features[member] = features
        return self

    def _remember_sample(self, pool: Batch, rows: np.ndarray) -> None:
        """The sampled records' folds by (shard, row), with their content hash to tell a re-landed shard's other record."""
        names = pool.records.column_names
        if not {SHARD, ROW, CONTENT_HASH} <= set(names):
            return  # a table without record keys: only this fit's own rows know their folds
        shard_names = pool.records.column(SHARD).to_pylist()
        shards = sorted({shard_names[i] for i in rows})
        index = {name: i for i, name in enumerate(shards)}
        hashes = pool.records.column(CONTENT_HASH).to_pylist()
        self.sample_ = {
            "shards": shards,
            "shard": np.array([index[shard_names[i]] for i in rows], np.int32),
            "row": np.asarray(pool.column(ROW), np.int64)[rows],
            "hash": [hashes[i] for i in rows],
            "fold": self._fit_folds[rows].astype(np.int8),
        }

    def _member_features(self, batch: Batch, rows: np.ndarray, member: str):
        """``member``'s features of the batch rows ``rows``. TF-IDF weighs them by the fitted idf; while
        fitting (no idf yet) it fits the idf on them and keeps the buckets they use."""
        if member == "embeddings":
            if batch.embeddings is None:
                raise ValueError(f"label_noise with features={self.config.features!r} needs Batch.embeddings")
            vectors = np.asarray(batch.embeddings, dtype=np.float32)
            return vectors if len(rows) == len(vectors) else vectors[rows]  # no copy when all are labelled
        if TEXT not in batch.records.column_names:
            raise ValueError(f"label_noise with features={self.config.features!r} needs a 'text' column in the batch")
        texts = batch.tokens() if len(rows) == len(batch) else batch.text_array.take(rows)  # tokens shared with other scorers
        if self.idf_ is not None:
            return ngrams.hashed_tfidf(texts, self.config.hashed_buckets, idf=self.idf_)
        # The idf over the labelled sample is unsupervised: it leaks no label into the folds.
        features, self.idf_ = ngrams.hashed_idf(texts, self.config.hashed_buckets)
        self.columns_[member] = np.unique(features.indices).astype(np.int32)
        return features

    def _compact(self, features, member: str):
        """TF-IDF rows over the sample's buckets and one zero column for the rest, in the same order
        within each row (so every product adds the same terms in the same order as at full width)."""
        if member == "embeddings":
            return features
        columns = self.columns_[member]
        position = np.full(self.config.hashed_buckets, len(columns), np.int32)
        position[columns] = np.arange(len(columns), dtype=np.int32)
        return sp.csr_matrix((features.data, position[features.indices], features.indptr), shape=(features.shape[0], len(columns) + 1))

    def _estimator(self, member: str, n_train: int):
        c = self.config
        kind = c.classifier or ("lda" if member == "embeddings" else "logistic")
        if kind == "lda":
            return PooledGaussianClassifier(shrinkage="auto")
        if kind == "logistic":
            return logistic_regression(c.C, n_train, c.solver, epochs=c.epochs, tol=c.tol, max_iter=c.max_iter, seed=c.seed)
        raise ValueError(f"label_noise: unknown classifier {kind!r} (use 'logistic' or 'lda')")

    def _fit_folds_of(self, member: str, features, encoded: np.ndarray, splits: list, n_classes: int) -> list[_FoldModel]:
        """One model per fold, on the other folds' records (at most ``max_train_per_fold`` of them for
        logistic regression; LDA weighs every other-fold row, never copying them)."""
        if isinstance(self._estimator(member, 1), PooledGaussianClassifier):
            models = []
            for train, _ in splits:
                weight = np.zeros(len(encoded))
                weight[train] = 1.0
                fitted = PooledGaussianClassifier(shrinkage="auto").fit(features, encoded, sample_weight=weight)
                models.append(_FoldModel(fitted.coef_, fitted.intercept_, np.arange(n_classes), fitted))
            return models
        cap, rng = self.config.max_train_per_fold, np.random.default_rng(self.config.seed)
        trains = [np.sort(rng.choice(train, cap, replace=False)) if cap is not None and len(train) > cap else train for train, _ in splits]

        def fit(train: np.ndarray) -> _FoldModel:
            fitted = self._estimator(member, len(train)).fit(features[train], encoded[train])
            coef = (
                fitted.coef_
                if member == "embeddings"
                else np.hstack([fitted.coef_[:, self.columns_[member]], np.zeros((len(fitted.coef_), 1), fitted.coef_.dtype)])
            )
            return _FoldModel(coef, fitted.intercept_, fitted.classes_, self._estimator(member, len(train)))

        # Folds on threads, one per core: SGD and saga run without the GIL.
        return Parallel(n_jobs=available(), backend="threading")(delayed(fit)(train) for train in trains)

    # Predicting ----------------------------------------------------------------------------
    def _predict(self, batch: Batch, folds: np.ndarray, features: dict | None = None) -> np.ndarray:
        """``p(k | x)`` of the rows with a fold (>= 0) by their fold's model, averaged over the
        feature sets; NaN elsewhere. ``features``: each member's features of exactly those rows."""
        rows = np.flatnonzero(folds >= 0)
        total = np.zeros((len(rows), len(self.classes_)))
        for member, models in self.models_.items():
            member_features = self._compact(features[member] if features else self._member_features(batch, rows, member), member)
            for fold, model in enumerate(models):
                mine = np.flatnonzero(folds[rows] == fold)
                for block in _row_chunks(len(mine)):  # no copy of half a large pool's features at once
                    total[mine[block]] += model.predict_proba(member_features[mine[block]], len(self.classes_))
        out = np.full((len(batch), len(self.classes_)), np.nan)
        out[rows] = total / max(len(self.models_), 1)
        return out

    def out_of_fold(self, batch: Batch) -> np.ndarray:
        """Fit on ``batch`` and return its labelled rows' out-of-fold ``p(k | x)`` (NaN rows elsewhere)."""
        self.fit(batch)
        if not self.models_:
            return np.full((len(batch), len(self.classes_)), np.nan)
        probabilities = self._predict(batch, self._fit_folds, self._fit_features)
        self._fit_features = {}
        return probabilities

    def folds_of(self, batch: Batch) -> np.ndarray:
        """Each record's fold: a sampled record's own, else the one its content (or text) hashes to."""
        n_folds = len(next(iter(self.models_.values())))
        names = batch.records.column_names
        if CONTENT_HASH not in names and TEXT not in names:
            raise ValueError("label_classifier places a record in a fold by its content hash or text: the batch has neither")
        keys = batch.records.column(CONTENT_HASH if CONTENT_HASH in names else TEXT).to_pylist()
        folds = np.array([_hash_fold(key or "", n_folds, self.config.seed) for key in keys], np.int64)
        if {SHARD, ROW, CONTENT_HASH} <= set(names) and len(self.sample_["fold"]):
            sampled = {
                (self.sample_["shards"][s], int(r)): (h, int(f))
                for s, r, h, f in zip(self.sample_["shard"], self.sample_["row"], self.sample_["hash"], self.sample_["fold"])
            }
            for i, (shard, row) in enumerate(zip(batch.records.column(SHARD).to_pylist(), batch.records.column(ROW).to_pylist())):
                found = sampled.get((shard, row))
                if found is not None and found[0] == keys[i]:
                    folds[i] = found[1]
        return folds

    def score(self, batch: Batch) -> dict[str, np.ndarray]:
        if not hasattr(self, "classes_"):
            raise RuntimeError("LabelClassifier.score called before fit() or load()")
        if not self.models_:
            return {"proba": np.full((len(batch), max(len(self.classes_), 1)), np.nan)}
        return {"proba": self._predict(batch, self.folds_of(batch))}

    # Fitted state as safetensors arrays (no pickle) -------------------------------------------
    def state_arrays(self) -> dict[str, np.ndarray]:
        members = {member: len(models) for member, models in self.models_.items()}  # folds of each feature set
        arrays = {
            "classes_json": _as_json_bytes(self.classes_),
            "layout_json": _as_json_bytes(
                {"members": members, "sample_shards": self.sample_["shards"], "sample_hash": self.sample_["hash"]}
            ),
            "sample_shard": self.sample_["shard"],
            "sample_row": self.sample_["row"],
            "sample_fold": self.sample_["fold"],
        }
        if self.idf_ is not None:
            arrays["idf"] = self.idf_
        for member, models in self.models_.items():
            if member in self.columns_:
                arrays[f"{member}.columns"] = self.columns_[member]
            for fold, model in enumerate(models):
                for part in ("coef", "intercept", "classes"):
                    arrays[f"{member}.{fold}.{part}"] = np.asarray(getattr(model, part))
        return arrays

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.classes_ = _from_json_bytes(arrays["classes_json"])
        layout = _from_json_bytes(arrays["layout_json"])
        self.idf_ = arrays.get("idf")
        self.columns_ = {member: arrays[f"{member}.columns"] for member in layout["members"] if f"{member}.columns" in arrays}
        self.sample_ = {
            "shards": layout["sample_shards"],
            "shard": arrays["sample_shard"],
            "row": arrays["sample_row"],
            "hash": layout["sample_hash"],
            "fold": arrays["sample_fold"],
        }
        self.models_ = {
            member: [
                _FoldModel(*(arrays[f"{member}.{fold}.{part}"] for part in ("coef", "intercept", "classes")), self._estimator(member, 1))
                for fold in range(n_folds)
            ]
            for member, n_folds in layout["members"].items()
        }


class LabelNoise(Scorer):
    """Pool scorer: ``self_confidence``, ``suggested_label``, ``is_issue``, ``keep``, ``reason``, ``score``."""

    name: ClassVar[str] = "label_noise"
    kind: ClassVar[str] = "label_noise"
    library: ClassVar[str] = "scikit-learn"
    stage: ClassVar[str] = "pool"

    @dataclass
    class Config(ClassifierConfig):
        # Also drop records whose given label gets less than this out-of-fold probability
        # (0: confident learning alone). A stronger filter trades clean records for fewer flips.
        min_self_confidence: float = 0.0
        # Also drop records whose given label is not the model's most probable class (cleanlab's
        # "predicted_neq_given"). With two classes it is p(given) < 0.5; with many it spares the
        # clean records a fixed cut drops: on 20 Newsgroups it drops 9.5% of the clean target records
        # vs 27% for p(given) < 0.5, and 99.8% vs 100% of the flips. Chosen on the dev splits.
        require_top_label: bool = True
        # The out-of-fold probabilities, as the label_classifier shard scorer writes them. A batch
        # without this column (or with None here) has the models fitted on it, by the settings above.
        proba_column: str | None = "label_classifier.proba"

    @property
    def needs_embeddings(self) -> bool:  # type: ignore[override]
        return "embeddings" in _members(self.config.features)

    @property
    def needs_text(self) -> bool:
        return "tfidf" in _members(self.config.features)

    def needs_text_given(self, columns) -> bool:
        return self.needs_text and not self._reads_column(columns)

    def _reads_column(self, columns) -> bool:
        return self.config.proba_column is not None and self.config.proba_column in columns

    def _probabilities(self, batch: Batch) -> tuple[list[str], np.ndarray]:
        """The classes and every record's out-of-fold ``p(k | x)`` over them (NaN rows: not predicted)."""
        settings = {f.name: getattr(self.config, f.name) for f in dataclasses.fields(ClassifierConfig)}
        if self._reads_column(batch.column_names):
            field = batch.field(self.config.proba_column)
            written = json.loads((field.metadata or {}).get(b"settings", b"{}"))
            if not written:
                raise ValueError(f"{self.config.proba_column} carries no classifier settings: score the shards with label_classifier")
            if written != json.loads(json.dumps(settings)):
                differ = sorted(k for k in settings if written.get(k) != settings[k])
                raise ValueError(
                    f"label_noise is set to {', '.join(f'{k}={settings[k]!r}' for k in differ)}, but the shards' "
                    f"{self.config.proba_column} was fitted with {', '.join(f'{k}={written.get(k)!r}' for k in differ)}: give "
                    "label_classifier the same settings (its fit options), or set proba_column=None to fit the models here"
                )
            classes = json.loads((field.metadata or {}).get(b"classes", b"[]"))
            column = batch.column_array(self.config.proba_column).combine_chunks()
            values = column.flatten().to_numpy(zero_copy_only=False).astype(np.float64)
            return classes, values.reshape(len(batch), column.type.list_size)[:, : len(classes)]
        classifier = LabelClassifier(ClassifierConfig(**settings))
        probabilities = classifier.out_of_fold(batch)
        return classifier.classes_, probabilities

    def score(self, batch: Batch) -> dict[str, np.ndarray]:
        n = len(batch)
        raw_labels, labelled = _labels(batch)
        self_confidence = np.full(n, np.nan)
        suggested = np.full(n, None, dtype=object)
        is_issue = np.zeros(n, bool)
        reason = np.full(n, "", dtype=object)

        names, probabilities = self._probabilities(batch)
        classes = np.array(names, dtype=object)
        position = {name: i for i, name in enumerate(names)}
        given = np.array([position.get(str(label), -1) if known else -1 for label, known in zip(raw_labels, labelled)], np.int64)
        # Judged: labelled with a class the models know, and predicted.
        rows = np.flatnonzero((given >= 0) & ~np.isnan(probabilities).any(axis=1)) if len(names) >= 2 else np.zeros(0, np.int64)
        if len(rows):
            probabilities, encoded = probabilities[rows], given[rows]
            flagged, confident_class, _ = confident_learning_issues(probabilities, encoded)
            given_p = probabilities[np.arange(len(rows)), encoded]
            argmax = probabilities.argmax(axis=1)
            # For issues, suggest the confident class that put the record off the diagonal.
            suggestion = np.where(flagged, confident_class, argmax)
            self_confidence[rows] = given_p
            suggested[rows] = classes[suggestion]
            is_issue[rows] = flagged
            suggested_p = probabilities[np.arange(len(rows)), suggestion]
            for position_ in np.flatnonzero(flagged):
                reason[rows[position_]] = (
                    f"label '{classes[encoded[position_]]}' likely wrong: p={given_p[position_]:.2f}, "
                    f"model suggests '{classes[suggestion[position_]]}' (p={suggested_p[position_]:.2f})"
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
