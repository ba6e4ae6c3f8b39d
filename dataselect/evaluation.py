"""Does the selected subset train a better model than random subsets of the same size?

DataComp-style evaluation (Gadre et al. 2023, "DataComp: In search of the next generation
of multimodal datasets"): the training recipe is fixed and only the training subset varies,
so any difference in held-out accuracy is caused by the data. Arms:

- ``selected``: the platform's subset.
- ``random``: uniform subsets of the same size, one per independent seed.
- ``stratified_random``: random subsets matching the pool's label proportions, so a win of
  ``selected`` over it is not just rebalancing classes.
- ``full``: the whole pool (the ceiling a selection tries to reach with less data).

Recipes (fixed; see :class:`Config` for the numbers):

- ``"tfidf_logreg"``: word 1-2-gram TF-IDF (sublinear tf, min_df=2, at most 100k features)
  fitted on the subset, then logistic regression (C=10), trained by 3 epochs of SGD
  (``solver="sgd"``; ``"saga"`` trains it to convergence instead).
- ``"embedding_probe"``: multinomial logistic regression on the unit-norm embeddings.

Intervals are percentile bootstraps (Efron & Tibshirani 1993): over evaluation records for
one arm (1,000 resamples, seeded), and over seeds for the random arms (the bootstrap of the
mean of the per-seed accuracies: it reflects which random subset was drawn).

Speed: fitting TfidfVectorizer per arm re-tokenises the pool and the evaluation set every
time (8 s for 7.5k evaluation documents). :class:`ArmEvaluator` tokenises once into term
counts and derives each arm's TF-IDF from the counts of its rows: the same vocabulary (terms
with subset df >= min_df, the ``max_features`` most frequent), the same smoothed idf and the
same sublinear, l2-normalised weights as ``TfidfVectorizer`` fitted on the subset. Only ties
at the ``max_features`` cut-off may be broken differently (here: lower column index wins).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import scipy.sparse as sp
from joblib import Parallel, delayed
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.metrics import f1_score

from dataselect import full_pool_arm, streamed_full_arm, tfidf
from dataselect.full_pool_arm import FullPoolPredictions
from dataselect.linear import logistic_regression
from dataselect.pool_terms import PoolTerms
from dataselect.records import ID, LABEL, TEXT
from dataselect.shard_pool import ShardPool
from dataselect.term_counts import TermCounts, Texts
from dataselect.threads import available

RECIPES = ("tfidf_logreg", "embedding_probe")
# Random arms draw from numpy streams keyed by (seed, this tag), so random arm seed 0 is an
# independent stream from a selection that used default_rng(0).
_RANDOM_ARM_STREAM = 0x5E1EC7
_STRATIFIED_ARM_STREAM = 0x57A7


@dataclass
class Config:
    """The fixed recipes. Change them only between experiments, never between arms."""

    # TF-IDF: the brief's recipe; float32 halves memory, and both solvers keep float32 as is.
    min_df: int = 2
    max_features: int = 100_000
    ngram_range: tuple[int, int] = (1, 2)
    # C=10: on 2k 20 Newsgroups documents C=1 gives 0.747 test accuracy, C=10 0.776, C=30
    # 0.777 (measured), so 10 is the knee.
    C: float = 10.0
    # "sgd": the same penalised log loss (alpha = 1 / (C * n)), a fixed number of epochs (one-vs-
    # rest). At 100k real-text records 5 epochs trained the full pool in 19 s where saga took 45 s
    # (16 epochs); on the methods benchmark's dev splits its arms are as accurate (see the per-corpus
    # "evaluation recipe" tables). Epochs: the fewest at which no arm loses more than 0.01 of dev
    # accuracy against 5 (benchmarks/results/methods.md, "the report's recipe"); the full-pool fit
    # costs in proportion. "saga": multinomial, to tolerance ``tol`` (3e-3 matched 1e-3 and 1e-4
    # in accuracy on 1.1k and 5.7k docs in fewer epochs).
    solver: str = "sgd"
    epochs: int = 3
    tol: float = 3e-3
    max_iter: int = 1000
    # Embedding probe: dense and low-dimensional, so lbfgs is the fast solver there.
    probe_C: float = 10.0
    probe_solver: str = "lbfgs"
    # Percentile bootstrap.
    n_bootstrap: int = 1000
    confidence: float = 0.95
    # Arms trained at once on threads (the SGD and saga loops run without the GIL, so 2 threads roughly
    # halve the report on 2 cores); None: dataselect.threads.available().
    n_jobs: int | None = None
    # A pool read shard by shard (:mod:`dataselect.streamed_full_arm`): the full arm's vocabulary is
    # chosen on a seeded sample of this many labelled records.
    full_arm_vocabulary_sample: int = 100_000


@dataclass
class ArmResult:
    """One trained model on one subset, evaluated on the whole evaluation set."""

    arm: str
    recipe: str
    n_train: int
    accuracy: float
    accuracy_lo: float  # percentile bootstrap over evaluation records
    accuracy_hi: float
    macro_f1: float
    per_class_recall: dict[str, float]
    unseen_eval_labels: list[str]  # evaluation labels absent from training: always errors
    correct: np.ndarray = field(repr=False)  # bool per evaluation record, for paired tests
    seed: int = 0
    fit_seconds: float = 0.0
    converged: bool = True

    def to_dict(self, include_correct: bool = False, include_timing: bool = True) -> dict[str, Any]:
        out = asdict(self)
        out.pop("correct")
        if not include_timing:
            out.pop("fit_seconds")  # the one field that differs between identical runs
        if include_correct:
            out["correct"] = self.correct.astype(int).tolist()
        return out


@dataclass
class RandomArms:
    """Several random subsets (one per seed) summarised by their mean and a seed interval."""

    arm: str
    seeds: list[int]
    results: list[ArmResult]
    accuracy: float  # mean over seeds
    accuracy_lo: float  # percentile bootstrap of the mean over seeds
    accuracy_hi: float
    macro_f1: float
    n_train: int

    def to_dict(self, include_timing: bool = True) -> dict[str, Any]:
        return {
            "arm": self.arm,
            "seeds": list(self.seeds),
            "accuracy": self.accuracy,
            "accuracy_lo": self.accuracy_lo,
            "accuracy_hi": self.accuracy_hi,
            "macro_f1": self.macro_f1,
            "n_train": self.n_train,
            "per_seed": [r.to_dict(include_timing=include_timing) for r in self.results],
        }


# --------------------------------------------------------------------------- intervals
def bootstrap_accuracy_interval(
    correct: np.ndarray, n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of accuracy, resampling evaluation records.

    Resampling n binary outcomes with replacement leaves Binomial(n, accuracy) correct ones,
    so drawing that binomial is the same bootstrap distribution without an n x B index matrix.
    """
    correct = np.asarray(correct, dtype=bool)
    n = correct.size
    if n == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    resampled = rng.binomial(n, correct.mean(), size=n_resamples) / n
    return _percentiles(resampled, confidence)


def bootstrap_mean_interval(
    values: Sequence[float], n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (e.g. per-seed accuracies)."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(n_resamples, values.size))].mean(axis=1)
    return _percentiles(means, confidence)


def paired_difference_interval(
    correct_a: np.ndarray, correct_b: np.ndarray, n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """Accuracy(a) - accuracy(b) on the same evaluation records, with a paired bootstrap.

    Each record's difference is -1, 0 or +1, so a resample is a multinomial draw over those
    three outcomes (same distribution as resampling records, without the index matrix).
    """
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape or a.size == 0:
        raise ValueError("paired comparison needs two non-empty vectors over the same records")
    n = a.size
    shares = np.array([np.sum(a & ~b), np.sum(~a & b)], dtype=float) / n
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, [shares[0], shares[1], 1.0 - shares.sum()], size=n_resamples)
    differences = (counts[:, 0] - counts[:, 1]) / n
    lo, hi = _percentiles(differences, confidence)
    return float(shares[0] - shares[1]), lo, hi


def _percentiles(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2.0 * 100.0
    lo, hi = np.percentile(samples, [tail, 100.0 - tail])
    return float(lo), float(hi)


# --------------------------------------------------------------------------- features
class _TermCounts:
    """Term counts of the training pool and the evaluation texts, tokenised once.

    The vocabulary keeps only terms seen in >= min_df pool documents: a term rarer than that
    in the pool is rarer in every subset, so no subset vectorizer could keep it.
    """

    def __init__(self, pool_texts: Texts | None, eval_texts: Sequence[str], config: Config, pool_terms: PoolTerms | None = None):
        """``pool_terms``: the pool's counts counted beforehand (:mod:`dataselect.pool_terms`), with the
        recipe's n-gram range and min_df (the pool's texts may then be None); None counts them here."""
        if pool_terms is None:
            if pool_texts is None:
                raise ValueError("the TF-IDF recipe needs the pool's texts or their term counts")
            # CountVectorizer's matrix, 3x faster (see dataselect.term_counts): min_df as in the recipe.
            counter = TermCounts(pool_texts, tuple(config.ngram_range), config.min_df)
            self.pool, names, self.counted_range = counter.matrix, counter.feature_names, counter.ngram_range
            self.eval = counter.transform(eval_texts)
        else:
            if (tuple(pool_terms.ngram_range), pool_terms.min_df) != (tuple(config.ngram_range), config.min_df):
                raise ValueError(f"pool terms counted with {pool_terms.ngram_range}, min_df {pool_terms.min_df}: not this recipe's")
            if pool_texts is not None and pool_terms.matrix.shape[0] != len(pool_texts):
                raise ValueError(f"pool terms have {pool_terms.matrix.shape[0]} rows for a pool of {len(pool_texts)}")
            self.pool, names, self.counted_range = pool_terms.matrix, pool_terms.feature_names, tuple(pool_terms.ngram_range)
            self.eval = tfidf.counts_on(names, eval_texts, self.counted_range)
        self._names = names

    def tfidf(self, rows: np.ndarray, config: Config) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """TF-IDF of the subset ``rows`` (sorted, distinct) and of the evaluation set, as if
        ``config``'s vectorizer were fitted on the subset (its min_df is at least the counted one)."""
        # The whole pool (the full arm) is read as it is: a row copy of it would double the peak.
        subset = self.pool if len(rows) == self.pool.shape[0] else self.pool[rows]
        # Rows hold each term once, so counting column indices gives document frequency.
        document_frequency = np.bincount(subset.indices, minlength=subset.shape[1])
        keep = tfidf.kept_columns(subset, document_frequency, config.min_df, config.max_features, self._in_range(config.ngram_range))
        idf = tfidf.smoothed_idf(len(rows), document_frequency[keep])
        return tfidf.weigh(subset, keep, idf), tfidf.weigh(self.eval, keep, idf)

    def _in_range(self, ngram_range: tuple[int, int]) -> np.ndarray | bool:
        """Columns of the wanted orders: counting 1-2-grams once serves a unigram recipe too."""
        low, high = ngram_range
        if (low, high) == self.counted_range:
            return True
        if not self.counted_range[0] <= low <= high <= self.counted_range[1]:
            raise ValueError(f"ngram_range {ngram_range} is outside the counted range {self.counted_range}")
        return (self.order >= low) & (self.order <= high)

    @functools.cached_property
    def order(self) -> np.ndarray:
        """Words per column, so a narrower n-gram range reads a subset of these columns (counted
        only then: over a large pool's million names it costs a fraction of a second)."""
        return (pc.count_substring(self._names, " ").to_numpy(zero_copy_only=False) + 1).astype(np.int8)


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return matrix / norms


# --------------------------------------------------------------------------- one arm
def _labels_as_strings(labels: Iterable[Any]) -> np.ndarray:
    """Labels as str, with missing ones as None (so 'nan' never becomes a class)."""
    return np.array([None if pd.isna(v) else str(v) for v in labels], dtype=object)


def _fit_predict(
    recipe: str,
    train_features: Any,
    train_labels: np.ndarray,
    eval_features: Any,
    n_eval: int,
    seed: int,
    config: Config,
) -> tuple[np.ndarray, bool]:
    classes = np.unique(train_labels) if len(train_labels) else np.array([], dtype=object)
    if classes.size == 0:
        return np.full(n_eval, None, dtype=object), True
    if classes.size == 1 or train_features.shape[1] == 0:
        # sklearn refuses a one-class logistic regression (its optimum is that class anyway)
        # and a zero-feature one, whose optimum is the intercept: the most frequent class.
        values, counts = np.unique(train_labels, return_counts=True)
        return np.full(n_eval, values[np.argmax(counts)], dtype=object), True
    if recipe == "tfidf_logreg":
        model = _linear_model(config, len(train_labels), seed)
    else:
        model = LogisticRegression(C=config.probe_C, solver=config.probe_solver, max_iter=config.max_iter, random_state=seed)
    model.fit(train_features, train_labels)
    # Read from n_iter_ rather than by catching ConvergenceWarning: warning filters are
    # process-global and arms may train on several threads. A fixed number of SGD epochs is the
    # recipe itself, with no tolerance to converge to.
    converged = isinstance(model, SGDClassifier) or bool(np.all(model.n_iter_ < model.max_iter))
    return model.predict(eval_features), converged


def _linear_model(config: Config, n_train: int, seed: int) -> LogisticRegression | SGDClassifier:
    """The TF-IDF recipe's classifier (see :func:`dataselect.linear.logistic_regression`)."""
    # Threads over its classes too: when the last arm left is the full pool's, it still uses every core.
    n_jobs = config.n_jobs or available()
    return logistic_regression(
        config.C, n_train, config.solver, epochs=config.epochs, tol=config.tol, max_iter=config.max_iter, seed=seed, n_jobs=n_jobs
    )


def _score(
    arm: str,
    recipe: str,
    predictions: np.ndarray,
    eval_labels: np.ndarray,
    train_labels: np.ndarray,
    seed: int,
    seconds: float,
    converged: bool,
    config: Config,
) -> ArmResult:
    correct = predictions == eval_labels
    correct = np.asarray(correct, dtype=bool)
    seen = set(train_labels.tolist())
    eval_classes = sorted(set(eval_labels.tolist()))
    recall = {label: float(correct[eval_labels == label].mean()) for label in eval_classes}
    # Macro-F1 over the evaluation classes: an unseen class contributes F1 = 0.
    predicted = np.where(predictions == None, "<none>", predictions).astype(str)  # noqa: E711
    macro_f1 = f1_score(eval_labels.astype(str), predicted, labels=eval_classes, average="macro", zero_division=0)
    lo, hi = bootstrap_accuracy_interval(correct, config.n_bootstrap, config.confidence, seed)
    return ArmResult(
        arm=arm,
        recipe=recipe,
        n_train=len(train_labels),
        accuracy=float(correct.mean()) if correct.size else float("nan"),
        accuracy_lo=lo,
        accuracy_hi=hi,
        macro_f1=float(macro_f1),
        per_class_recall=recall,
        unseen_eval_labels=[label for label in eval_classes if label not in seen],
        correct=correct,
        seed=seed,
        fit_seconds=seconds,
        converged=converged,
    )


def _check_recipe(recipe: str, has_embeddings: bool) -> None:
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose one of {RECIPES}")
    if recipe == "embedding_probe" and not has_embeddings:
        raise ValueError("recipe 'embedding_probe' needs train and eval embeddings")


# --------------------------------------------------------------------------- many arms
class ArmEvaluator:
    """Holds one pool and one evaluation set featurised once; trains arms on row subsets.

    Build one per report and call :meth:`evaluate_arms`, :meth:`budget_sweep` and
    :meth:`ablation` on it, so tokenisation and the full-pool model are paid for once.
    ``pool_terms`` (TF-IDF recipe) are the pool's term counts counted beforehand, row-aligned with ``pool``
    (which then needs no text column);
    ``full_pool``: the full pool's predictions trained beforehand from them (:mod:`dataselect.full_pool_arm`),
    used for the full arm when their fingerprint is this evaluator's and they cover every evaluation text.
    ``shards`` (TF-IDF recipe, a ``pool`` without its text column): the pool's texts left in its shards,
    for a pool too large to hold: each arm counts its own texts (the same features as from the pool's
    counts), and the full arm is trained shard by shard (:mod:`dataselect.streamed_full_arm`).
    """

    def __init__(
        self,
        pool: pd.DataFrame,
        eval_set: pd.DataFrame,
        recipe: str = "tfidf_logreg",
        pool_embeddings: np.ndarray | None = None,
        eval_embeddings: np.ndarray | None = None,
        config: Config | None = None,
        pool_terms: PoolTerms | None = None,
        full_pool: FullPoolPredictions | None = None,
        shards: ShardPool | None = None,
    ):
        self.config = config or Config()
        self.recipe = recipe
        _check_recipe(recipe, pool_embeddings is not None and eval_embeddings is not None)
        self.pool_ids = pool[ID].astype(str).to_numpy()
        if len(set(self.pool_ids.tolist())) != len(self.pool_ids):
            raise ValueError("pool ids must be unique")
        self._row_of = pd.Index(self.pool_ids)
        self.pool_labels = _labels_as_strings(pool[LABEL]) if LABEL in pool else np.full(len(pool), None, dtype=object)
        self.eval_labels = _labels_as_strings(eval_set[LABEL])
        if any(label is None for label in self.eval_labels):
            raise ValueError("every evaluation record needs a label")
        started = time.perf_counter()
        self._counts, self._shards = None, None
        if recipe == "tfidf_logreg" and TEXT not in pool and shards is not None:
            if len(shards) != len(pool) or pool_terms is not None:
                raise ValueError(f"a pool read from its shards needs {len(pool)} shard rows (it has {len(shards)}) and no pool terms")
            self._shards = shards
        elif recipe == "tfidf_logreg":
            if pool_terms is not None and pool_terms.matrix.shape[0] != len(pool):
                raise ValueError(f"pool terms have {pool_terms.matrix.shape[0]} rows for a pool of {len(pool)}")
            texts = pool[TEXT] if TEXT in pool else None  # counted beforehand, the texts are not needed
            self._counts = _TermCounts(texts, eval_set[TEXT].tolist(), self.config, pool_terms)
        else:
            if len(pool_embeddings) != len(pool) or len(eval_embeddings) != len(eval_set):
                raise ValueError("embeddings must be row-aligned with pool and eval_set")
            self._pool_embeddings = _unit_rows(pool_embeddings)
            self._eval_embeddings = _unit_rows(eval_embeddings)
        self.featurise_seconds = time.perf_counter() - started
        self._pool_terms_fingerprint = pool_terms.fingerprint if pool_terms is not None else None
        self._eval_texts = eval_set[TEXT].tolist()
        self._full_pool = full_pool
        # Same rows + same seed = same model: the sweep, the headline arms and the ablation
        # often ask for the same subset (the full pool always), so fit it once.
        self._results: dict[tuple[str, int], ArmResult] = {}

    @property
    def n_pool(self) -> int:
        return len(self.pool_ids)

    def with_model(self, **model_options: Any) -> "ArmEvaluator":
        """The same featurised pool and evaluation set under other model hyper-parameters (e.g.
        ``C=1.0``, or ``ngram_range=(1, 1)`` within the counted range), with its own model cache:
        choosing them on a dev set featurises once."""
        other = copy.copy(self)
        other.config = dataclasses.replace(self.config, **model_options)
        other._results = {}
        return other

    def rows_of(self, ids: Iterable[str]) -> np.ndarray:
        ids = [str(i) for i in ids]
        rows = self._row_of.get_indexer(ids)
        if (rows < 0).any():
            missing = [i for i, r in zip(ids, rows) if r < 0]
            raise KeyError(f"{len(missing)} selected ids are not in the pool, e.g. {missing[:3]}")
        if len(np.unique(rows)) != len(rows):
            raise ValueError("selected ids contain duplicates")
        return np.sort(rows)

    def train_rows(self, rows: np.ndarray, arm: str, seed: int = 0) -> ArmResult:
        """Train the recipe on pool ``rows`` (unlabelled rows are dropped) and evaluate."""
        rows = np.asarray(rows, dtype=np.int64)
        key = (hashlib.blake2b(rows.tobytes(), digest_size=16).hexdigest(), int(seed))
        if key not in self._results:
            self._results[key] = self._train_rows(rows, seed)
        return dataclasses.replace(self._results[key], arm=arm)

    def _train_rows(self, rows: np.ndarray, seed: int) -> ArmResult:
        whole_pool = seed == 0 and rows.size == self.n_pool and np.array_equal(rows, np.arange(self.n_pool))
        stored = self._stored_full_pool() if whole_pool else None
        rows, labels = self._labelled(rows)
        predictions, seconds, converged = stored if stored is not None else self._fit_predict_rows(rows, labels, seed, whole_pool)
        return _score("", self.recipe, predictions, self.eval_labels, labels, seed, seconds, converged, self.config)

    def _labelled(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``rows`` without the unlabelled ones, and their labels."""
        rows = rows[np.array([label is not None for label in self.pool_labels[rows]], dtype=bool)]
        return rows, self.pool_labels[rows].astype(str) if rows.size else np.array([], dtype=object)

    def _fit_predict_rows(
        self, rows: np.ndarray, labels: np.ndarray, seed: int, whole_pool: bool = False
    ) -> tuple[np.ndarray, float, bool]:
        """Predictions on the evaluation set of the recipe trained on labelled ``rows`` (``whole_pool``:
        every labelled row of the pool), seconds, converged."""
        started = time.perf_counter()
        if rows.size == 0 or len(np.unique(labels)) < 2:
            train_x = eval_x = None
        elif self._shards is not None and whole_pool:
            vocabulary_sample = self.config.full_arm_vocabulary_sample
            predictions = streamed_full_arm.fit_predict(self._shards, rows, labels, self._eval_texts, self.config, seed, vocabulary_sample)
            return predictions, time.perf_counter() - started, True
        elif self._shards is not None:  # the arm's own counts: what the pool's counts' rows would give
            counts = _TermCounts(self._shards.texts(rows), self._eval_texts, self.config)
            train_x, eval_x = counts.tfidf(np.arange(len(rows)), self.config)
        elif self.recipe == "tfidf_logreg":
            train_x, eval_x = self._counts.tfidf(rows, self.config)
        else:
            train_x, eval_x = self._pool_embeddings[rows], self._eval_embeddings
        predictions, converged = _fit_predict(self.recipe, train_x, labels, eval_x, len(self.eval_labels), seed, self.config)
        return predictions, time.perf_counter() - started, converged

    # ---- the full pool's arm, trained ahead of the report
    def full_pool_fingerprint(self) -> str | None:
        """What stored full-pool predictions must carry to stand for this evaluator's full arm
        (None: the pool's terms were counted here, so there is nothing to tie them to)."""
        if self._pool_terms_fingerprint is None or self.recipe != "tfidf_logreg":
            return None
        # Threads and the bootstrap do not change the model.
        unused = ("n_jobs", "n_bootstrap", "confidence", "full_arm_vocabulary_sample")
        settings = {k: v for k, v in asdict(self.config).items() if k not in unused}
        return full_pool_arm.fingerprint(self._pool_terms_fingerprint, self.recipe, settings)

    def predict_full_pool(self) -> FullPoolPredictions:
        """Train the full arm (every labelled row, seed 0) and keep its prediction per evaluation text."""
        if self.full_pool_fingerprint() is None:
            raise ValueError("full-pool predictions are stored only for the TF-IDF recipe on pool terms counted beforehand")
        rows, labels = self._labelled(np.arange(self.n_pool))
        predictions, seconds, converged = self._fit_predict_rows(rows, labels, 0)
        by_text = dict(zip(full_pool_arm.text_digests(self._eval_texts), predictions.tolist()))
        return FullPoolPredictions(self.full_pool_fingerprint(), by_text, seconds, converged)

    def has_stored_full_pool(self) -> bool:
        """Whether the full arm is scored from stored predictions rather than trained."""
        return self._stored_full_pool() is not None

    def _stored_full_pool(self) -> tuple[np.ndarray, float, bool] | None:
        stored = self._full_pool
        if stored is None or stored.fingerprint != self.full_pool_fingerprint():
            return None
        predictions = stored.for_texts(self._eval_texts)
        return None if predictions is None else (predictions, stored.fit_seconds, stored.converged)

    # ---- random subsets
    def random_rows(self, k: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng([seed, _RANDOM_ARM_STREAM])
        return np.sort(rng.choice(self.n_pool, size=min(k, self.n_pool), replace=False))

    def stratified_rows(self, k: int, seed: int) -> np.ndarray:
        """k rows drawn within labels, each label getting its pool share (largest remainder)."""
        rng = np.random.default_rng([seed, _STRATIFIED_ARM_STREAM])
        strata = np.array(["\x00unlabelled" if v is None else v for v in self.pool_labels], dtype=object).astype(str)
        names, inverse, counts = np.unique(strata, return_inverse=True, return_counts=True)
        k = min(k, self.n_pool)
        quota = counts * (k / self.n_pool)
        allocation = np.floor(quota).astype(int)
        shortfall = k - allocation.sum()
        # Largest remainders first; equal remainders go to the larger stratum, then by name.
        order = np.lexsort((np.arange(names.size), -counts, -(quota - allocation)))
        allocation[order[:shortfall]] += 1
        chosen = [
            rng.choice(np.flatnonzero(inverse == s), size=allocation[s], replace=False) for s in range(names.size) if allocation[s] > 0
        ]
        return np.sort(np.concatenate(chosen)) if chosen else np.array([], dtype=np.int64)

    def train_many(self, tasks: Sequence[tuple[str, np.ndarray, int]]) -> list[ArmResult]:
        """(arm, rows, seed) tasks, on ``config.n_jobs`` threads (SGD and saga fits release the GIL)."""
        # A pool read from its shards counts each arm's texts: one arm at a time bounds the memory
        # (the counting and the fit use every core themselves).
        n_jobs = 1 if self._shards is not None else self.config.n_jobs or available()
        if n_jobs == 1 or len(tasks) < 2:
            return [self.train_rows(rows, arm, seed) for arm, rows, seed in tasks]
        # Largest subsets first (fit time grows with rows): the full pool's fit, which alone can
        # take as long as all the arms of 10% together, then runs beside them rather than after.
        order = sorted(range(len(tasks)), key=lambda i: -len(tasks[i][1]))
        results = Parallel(n_jobs=n_jobs, prefer="threads")(delayed(self.train_rows)(tasks[i][1], tasks[i][0], tasks[i][2]) for i in order)
        by_task = dict(zip(order, results))
        return [by_task[i] for i in range(len(tasks))]

    def _seed_summary(self, arm: str, seeds: Sequence[int], results: list[ArmResult]) -> RandomArms:
        accuracies = [r.accuracy for r in results]
        lo, hi = bootstrap_mean_interval(accuracies, self.config.n_bootstrap, self.config.confidence, seed=int(np.sum(seeds)))
        return RandomArms(
            arm=arm,
            seeds=[int(s) for s in seeds],
            results=results,
            accuracy=float(np.mean(accuracies)),
            accuracy_lo=lo,
            accuracy_hi=hi,
            macro_f1=float(np.mean([r.macro_f1 for r in results])),
            n_train=int(round(np.mean([r.n_train for r in results]))),
        )

    def full(self) -> ArmResult:
        return self.train_rows(np.arange(self.n_pool), arm="full", seed=0)

    # ---- the three analyses
    def evaluate_arms(
        self,
        selected_ids: Sequence[str],
        random_seeds: Sequence[int] = (0, 1, 2, 3, 4),
        stratified: bool = True,
        include_full: bool = True,
        selection_seed: int | None = None,
        stratified_seeds: Sequence[int] | None = None,
    ) -> dict[str, ArmResult | RandomArms]:
        """Arms ``selected``, ``random``, ``stratified_random`` (labelled pools) and ``full``.

        Random arms use ``random_seeds`` (streams independent of any selection seed;
        ``selection_seed``, when given, must not be among them); ``stratified_seeds`` defaults
        to ``random_seeds``.
        """
        stratified_seeds = random_seeds if stratified_seeds is None else stratified_seeds
        if len(random_seeds) == 0:
            raise ValueError("the random arm needs at least one seed")
        if selection_seed is not None and selection_seed in set(random_seeds) | set(stratified_seeds):
            # Streams are separated anyway; refusing keeps the intent obvious in configs.
            raise ValueError(f"random arm seeds {tuple(random_seeds)} must differ from the selection seed")
        rows = self.rows_of(selected_ids)
        k = len(rows)
        if not (stratified and any(label is not None for label in self.pool_labels)):
            stratified_seeds = ()
        tasks = [("selected", rows, 0)]
        tasks += [("random", self.random_rows(k, s), s) for s in random_seeds]
        tasks += [("stratified_random", self.stratified_rows(k, s), s) for s in stratified_seeds]
        if include_full:
            tasks.append(("full", np.arange(self.n_pool), 0))
        results = self.train_many(tasks)
        arms: dict[str, ArmResult | RandomArms] = {"selected": results[0]}
        arms["random"] = self._seed_summary("random", random_seeds, [r for r in results if r.arm == "random"])
        if stratified_seeds:
            stratified_results = [r for r in results if r.arm == "stratified_random"]
            arms["stratified_random"] = self._seed_summary("stratified_random", stratified_seeds, stratified_results)
        if include_full:
            arms["full"] = results[-1]
        return arms

    def budget_sweep(
        self,
        select_fn: Callable[[float], list[str]],
        budgets: Sequence[float] = (0.025, 0.05, 0.1, 0.2, 0.5),
        random_seeds: Sequence[int] = (0, 1, 2, 3, 4),
        stratified: bool = True,
        include_full: bool = True,
        stratified_seeds: Sequence[int] | None = (0, 1),
    ) -> pd.DataFrame:
        """Accuracy per budget and arm: columns :data:`SWEEP_COLUMNS`.

        ``select_fn(budget)`` returns the platform's ids at that budget (the selection counts it).
        Random arm rows carry the mean over seeds and its seed interval; the full pool is one row
        (budget 1.0). The stratified arm uses 2 seeds by default (``None``: the random seeds): it
        is the secondary baseline, and 5 seeds of it at every budget cost a quarter of the sweep.
        """
        rows: list[dict[str, Any]] = []
        for budget in budgets:
            # The selection owns the budget -> k conversion; every arm is the size it selected.
            selected = select_fn(budget)
            arms = self.evaluate_arms(selected, random_seeds, stratified, include_full=False, stratified_seeds=stratified_seeds)
            for name, result in arms.items():
                rows.append(_sweep_row(budget, len(selected), name, result))
        if include_full:
            rows.append(_sweep_row(1.0, self.n_pool, "full", self.full()))
        return pd.DataFrame(rows, columns=SWEEP_COLUMNS)

    def ablation(self, full_selected_ids: Sequence[str], select_fn_without: dict[str, Callable[[], list[str]]]) -> pd.DataFrame:
        """Selection rebuilt with each scorer left out: columns :data:`ABLATION_COLUMNS`.

        The first row (``left_out="(none)"``) is the full selection; deltas are against it, so a
        negative ``delta_accuracy`` means the left-out scorer was helping.
        """
        reference_ids = set(map(str, full_selected_ids))
        selections = {name: set(map(str, select())) for name, select in select_fn_without.items()}
        tasks = [("selected", self.rows_of(reference_ids), 0)]
        tasks += [(f"without {name}", self.rows_of(ids), 0) for name, ids in selections.items()]
        reference, *results = self.train_many(tasks)
        records = [_ablation_row("(none)", reference, reference, 1.0)]
        for (name, ids), result in zip(selections.items(), results):
            overlap = len(reference_ids & ids) / max(1, len(reference_ids | ids))
            records.append(_ablation_row(name, result, reference, overlap))
        return pd.DataFrame(records, columns=ABLATION_COLUMNS)


SWEEP_COLUMNS = ["budget", "k", "arm", "accuracy", "accuracy_lo", "accuracy_hi", "macro_f1", "n_train"]
ABLATION_COLUMNS = [
    "left_out", "n_selected", "accuracy", "accuracy_lo", "accuracy_hi", "macro_f1",
    "delta_accuracy", "delta_macro_f1", "jaccard_with_full_selection",
]  # fmt: skip


def _sweep_row(budget: float, k: int, arm: str, result: ArmResult | RandomArms) -> dict[str, Any]:
    return {
        "budget": float(budget),
        "k": int(k),
        "arm": arm,
        "accuracy": result.accuracy,
        "accuracy_lo": result.accuracy_lo,
        "accuracy_hi": result.accuracy_hi,
        "macro_f1": result.macro_f1,
        "n_train": int(result.n_train),
    }


def _ablation_row(name: str, result: ArmResult, reference: ArmResult, jaccard: float) -> dict[str, Any]:
    return {
        "left_out": name,
        "n_selected": result.n_train,
        "accuracy": result.accuracy,
        "accuracy_lo": result.accuracy_lo,
        "accuracy_hi": result.accuracy_hi,
        "macro_f1": result.macro_f1,
        "delta_accuracy": result.accuracy - reference.accuracy,
        "delta_macro_f1": result.macro_f1 - reference.macro_f1,
        "jaccard_with_full_selection": jaccard,
    }


def headline_rows(arms: dict[str, ArmResult | RandomArms]) -> list[dict[str, Any]]:
    """One row per arm (arm, accuracy, accuracy_lo, accuracy_hi, macro_f1, n_train, interval)."""
    rows = []
    for name, result in arms.items():
        rows.append(
            {
                "arm": name,
                "accuracy": result.accuracy,
                "accuracy_lo": result.accuracy_lo,
                "accuracy_hi": result.accuracy_hi,
                "macro_f1": result.macro_f1,
                "n_train": int(result.n_train),
                "interval": "bootstrap over seeds" if isinstance(result, RandomArms) else "bootstrap over eval records",
            }
        )
    return rows


def verdict(arms: dict[str, ArmResult | RandomArms], config: Config | None = None) -> dict[str, Any]:
    """Does the selection beat random subsets and the full pool, with intervals?

    - ``beats_random``: the selected accuracy is above the random arms' 95% interval.
    - ``beats_full`` / ``loses_to_full``: the paired bootstrap interval of selected minus full
      (same evaluation records) lies wholly above / below zero; otherwise it is a tie.
    ``sentence`` says it in words for the report's headline.
    """
    config = config or Config()
    selected, random_arms = arms["selected"], arms["random"]
    out: dict[str, Any] = {
        "beats_random": bool(selected.accuracy > random_arms.accuracy_hi),
        "selected_accuracy": selected.accuracy,
        "random_interval": [random_arms.accuracy_lo, random_arms.accuracy_hi],
    }
    words = [
        f"The selection ({selected.accuracy:.3f}) {'beats' if out['beats_random'] else 'does not beat'} random subsets of the "
        f"same size (95% interval {random_arms.accuracy_lo:.3f}–{random_arms.accuracy_hi:.3f})"
    ]
    full = arms.get("full")
    if full is None:
        out.update(beats_full=None, loses_to_full=None)
        words.append("the full pool was not trained")
    else:
        difference, lo, hi = paired_difference_interval(selected.correct, full.correct, config.n_bootstrap, config.confidence)
        out.update(
            beats_full=bool(lo > 0),
            loses_to_full=bool(hi < 0),
            full_accuracy=full.accuracy,
            full_difference=difference,
            full_difference_interval=[lo, hi],
        )
        relation = "beats" if lo > 0 else "loses to" if hi < 0 else "ties with"
        words.append(f"{relation} the full pool ({full.accuracy:.3f}; difference {difference:+.3f}, 95% interval {lo:+.3f} to {hi:+.3f})")
    out["sentence"] = " and ".join(words) + "."
    return out


def compare_builds(
    previous_ids: Iterable[str],
    current_ids: Iterable[str],
    previous_metrics: dict[str, Any],
    current_metrics: dict[str, Any],
    sample_size: int = 20,
) -> dict[str, Any]:
    """What changed between two selection builds: records added/removed/kept, metric deltas.

    Metrics are compared where both builds have a number under the same key (nested dicts are
    flattened with dots).
    """
    previous, current = set(map(str, previous_ids)), set(map(str, current_ids))
    added, removed, kept = current - previous, previous - current, previous & current
    before, after = _flatten_numbers(previous_metrics), _flatten_numbers(current_metrics)
    deltas = {
        key: {"previous": before[key], "current": after[key], "delta": after[key] - before[key]}
        for key in sorted(before.keys() & after.keys())
    }
    return {
        "n_previous": len(previous),
        "n_current": len(current),
        "n_added": len(added),
        "n_removed": len(removed),
        "n_kept": len(kept),
        "jaccard": len(kept) / len(previous | current) if previous | current else 1.0,
        "added_sample": sorted(added)[:sample_size],
        "removed_sample": sorted(removed)[:sample_size],
        "metric_deltas": deltas,
    }


def _flatten_numbers(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten_numbers(value, f"{name}."))
        elif isinstance(value, (bool, np.bool_)):
            continue
        elif isinstance(value, (int, float, np.integer, np.floating)) and np.isfinite(value):
            flat[name] = float(value)
    return flat
