"""DSIR: importance weights from hashed n-gram models (Xie et al. 2023).

"Data Selection for Language Models via Importance Resampling" (NeurIPS 2023). Each text is a
bag of hashed word unigrams and bigrams; a smoothed categorical distribution over the hash
buckets is estimated on the target texts and on a sample of the raw pool. A record's log
importance weight is ``sum_j count_j * (log p_target[j] - log p_raw[j])``, and a selection
of ``k`` records is drawn *without replacement* by Gumbel top-k on those log weights.
:func:`kl_reduction` is the paper's cheap proxy for how target-like a selection is.

Featurisation gives scikit-learn's ``HashingVectorizer`` counts (same murmurhash3 buckets),
computed with Arrow string kernels over the whole batch, so scoring is one sparse
matrix-vector product per batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import HashingVectorizer

from dataselect.scorers.base import Batch, Scorer


@dataclass
class DSIRConfig:
    """Hyper-parameters of the hashed n-gram importance estimator."""

    num_buckets: int = 10_000  # hashed feature dimension, as in the paper
    ngram_range: tuple[int, int] = (1, 2)  # word unigrams + bigrams, as in the paper
    lowercase: bool = True
    # NLTK WordPunct tokenisation, as in the authors' package: words and punctuation runs,
    # single characters included (scikit-learn's default pattern drops them).
    token_pattern: str = r"\w+|[^\w\s]+"
    smoothing: float = 1.0  # additive (Laplace) count per bucket, so unseen buckets stay finite
    # False follows the paper: long documents carry more evidence and get larger |log weight|.
    # True divides by the n-gram count, i.e. ranks by per-token log-likelihood ratio.
    length_normalize: bool = False
    seed: int = 0  # for gumbel_top_k when a caller samples with this config

    def __post_init__(self) -> None:
        # JSON round-trips turn the tuple into a list; keep configs comparable.
        self.ngram_range = tuple(self.ngram_range)


def _vectorizer(config: DSIRConfig) -> HashingVectorizer:
    return HashingVectorizer(
        n_features=config.num_buckets,
        ngram_range=config.ngram_range,
        lowercase=config.lowercase,
        token_pattern=config.token_pattern,
        alternate_sign=False,
        norm=None,
        dtype=np.float64,
    )


_DEFAULT_TOKEN_PATTERN = r"\w+|[^\w\s]+"
# Its second alternative in RE2 terms (Python's ``\w`` is a letter, a number or "_"). Spacing out
# these runs, rarer than words, makes whitespace the only separator left.
_SYMBOL_RUN = r"([^\pL\pN_\s]+)"


def _murmur_buckets(strings: list[str], num_buckets: int) -> np.ndarray:
    """Bucket of each string exactly as scikit-learn's ``FeatureHasher`` computes it."""
    from sklearn.utils import murmurhash3_32

    hashes = np.fromiter((murmurhash3_32(s, 0) for s in strings), dtype=np.int64, count=len(strings))
    # FeatureHasher maps -2**31 (whose abs overflows int32) to this bucket instead of abs(h).
    return np.where(hashes == -(2**31), (2**31 - 1 - (num_buckets - 1)) % num_buckets, np.abs(hashes) % num_buckets)


def _vectorised_counts(texts: list[str], config: DSIRConfig) -> sp.csr_matrix:
    """``HashingVectorizer`` counts without its per-document Python analyzer.

    Tokens come from Arrow's RE2 kernels (space out every symbol run, split on whitespace: the
    pieces are exactly the matches of ``\w+|[^\w\s]+``), n-grams are element-wise joins of shifted
    token arrays, and only the *distinct* n-grams of the batch are hashed, with scikit-learn's own
    murmurhash3, so the buckets and the counts are scikit-learn's.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(texts)
    array = pc.fill_null(pa.array(texts, pa.string()), "")
    if config.lowercase:
        array = pc.utf8_lower(array)
    spaced = pc.utf8_trim_whitespace(pc.replace_substring_regex(array, _SYMBOL_RUN, r" \1 "))
    token_lists = pc.utf8_split_whitespace(spaced)
    tokens = pc.list_flatten(token_lists)
    parents = np.array(pc.list_parent_indices(token_lists), dtype=np.int64)
    present = pc.greater(pc.binary_length(tokens), 0)  # an empty text splits into one empty token
    tokens, parents = tokens.filter(present), parents[present.to_numpy(zero_copy_only=False)]
    rows, buckets = [], []
    low, high = config.ngram_range
    for size in range(low, high + 1):
        if len(tokens) < size:
            break
        count = len(tokens) - size + 1
        # An n-gram starting at i is real when its first and last tokens share a text.
        same_text = parents[: count] == parents[size - 1 :]
        parts = [tokens.slice(offset, count) for offset in range(size)]
        grams = parts[0] if size == 1 else pc.binary_join_element_wise(*parts, " ")
        grams = grams.filter(pa.array(same_text))
        encoded = pc.dictionary_encode(grams)
        distinct_buckets = _murmur_buckets(encoded.dictionary.to_pylist(), config.num_buckets)
        rows.append(parents[: count][same_text])
        buckets.append(distinct_buckets[encoded.indices.to_numpy()])
    row = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    column = np.concatenate(buckets) if buckets else np.zeros(0, np.int64)
    counts = sp.csr_matrix((np.ones(len(row)), (row, column)), shape=(n, config.num_buckets), dtype=np.float64)
    counts.sum_duplicates()
    return counts


def hashed_counts(texts: list[str], config: DSIRConfig, chunk_size: int = 20_000) -> sp.csr_matrix:
    """(n, num_buckets) n-gram counts per text, equal to scikit-learn's ``HashingVectorizer``.

    With the default token pattern the counts are computed by :func:`_vectorised_counts` (about
    10x faster), in chunks of ``chunk_size`` texts to bound memory; another pattern goes through
    ``HashingVectorizer`` itself.
    """
    if len(texts) == 0:  # HashingVectorizer cannot transform an empty list
        return sp.csr_matrix((0, config.num_buckets), dtype=np.float64)
    texts = ["" if t is None else t for t in texts]
    if config.token_pattern != _DEFAULT_TOKEN_PATTERN:
        return _vectorizer(config).transform(texts).tocsr()
    return sp.vstack([_vectorised_counts(texts[i : i + chunk_size], config) for i in range(0, len(texts), chunk_size)]).tocsr()


def log_distribution(counts: sp.spmatrix, smoothing: float) -> np.ndarray:
    """Smoothed log categorical distribution over buckets from summed counts."""
    totals = np.asarray(counts.sum(axis=0)).ravel() + smoothing
    return np.log(totals) - np.log(totals.sum())


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


def kl_divergence(log_p: np.ndarray, log_q: np.ndarray) -> float:
    """KL(p‖q) for two log distributions over the same buckets."""
    return float(np.dot(np.exp(log_p), log_p - log_q))


def kl_reduction(
    selected_texts: list[str],
    pool_texts: list[str],
    target_texts: list[str],
    config: DSIRConfig | None = None,
) -> float:
    """KL(target‖pool) − KL(target‖selected) on smoothed hashed n-gram distributions.

    Positive when the selection's n-gram distribution is closer to the target than the pool's.
    A small selection has a sparser, hence more smoothed, distribution, which biases its KL
    upwards; compare against a random subset of the same size when the selection is small.
    """
    config = config or DSIRConfig()

    def log_dist(texts: list[str]) -> np.ndarray:
        return log_distribution(hashed_counts(texts, config), config.smoothing)

    log_target = log_dist(target_texts)
    return kl_divergence(log_target, log_dist(pool_texts)) - kl_divergence(log_target, log_dist(selected_texts))


class DSIRImportance(Scorer):
    """Outputs ``log_weight`` and ``score`` (= log weight, optionally length-normalised)."""

    name: ClassVar[str] = "dsir"
    stage: ClassVar[str] = "shard"
    needs_fit: ClassVar[bool] = True
    Config = DSIRConfig

    log_p_target_: np.ndarray
    log_p_raw_: np.ndarray

    def fit(self, pool: Batch, target: Batch) -> "DSIRImportance":
        self.log_p_target_ = log_distribution(hashed_counts(target.texts, self.config), self.config.smoothing)
        self.log_p_raw_ = log_distribution(hashed_counts(pool.texts, self.config), self.config.smoothing)
        return self

    def score(self, batch: Batch) -> dict[str, np.ndarray]:
        if not hasattr(self, "log_p_target_"):
            raise RuntimeError("DSIRImportance.score called before fit() or load()")
        counts = hashed_counts(batch.texts, self.config)
        log_weight = counts @ (self.log_p_target_ - self.log_p_raw_)
        score = log_weight
        if self.config.length_normalize:
            score = log_weight / np.maximum(np.asarray(counts.sum(axis=1)).ravel(), 1.0)
        return {"log_weight": log_weight, "score": score}

    def state_arrays(self) -> dict[str, np.ndarray]:
        return {"log_p_target": self.log_p_target_, "log_p_raw": self.log_p_raw_}

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.log_p_target_ = np.asarray(arrays["log_p_target"], dtype=np.float64)
        self.log_p_raw_ = np.asarray(arrays["log_p_raw"], dtype=np.float64)
