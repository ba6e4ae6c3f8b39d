"""DSIR: importance weights from hashed n-gram models (Xie et al. 2023).

"Data Selection for Language Models via Importance Resampling" (NeurIPS 2023). Each text is a
bag of hashed word unigrams and bigrams; a smoothed categorical distribution over the hash
buckets is estimated on the target texts and on a sample of the raw pool. A record's log
importance weight is ``sum_j count_j * (log p_target[j] - log p_raw[j])``, and a selection
of ``k`` records is drawn *without replacement* by Gumbel top-k on those log weights.
:func:`kl_reduction` is the paper's cheap proxy for how target-like a selection is.

Featurisation is :mod:`dataselect.ngrams` (Arrow tokenisation, numpy n-gram hashing), and a
record's log weight is a ``bincount`` of its n-grams' per-bucket log ratios: no per-token Python
and no sparse matrix on the scoring path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from dataselect import ngrams
from dataselect.scorers.base import Batch, Scorer


@dataclass
class DSIRConfig:
    """Hyper-parameters of the hashed n-gram importance estimator."""

    num_buckets: int = 10_000  # hashed feature dimension, as in the paper
    ngram_range: tuple[int, int] = (1, 2)  # word unigrams + bigrams, as in the paper
    lowercase: bool = True
    smoothing: float = 1.0  # additive (Laplace) count per bucket, so unseen buckets stay finite
    # False follows the paper: long documents carry more evidence and get larger |log weight|.
    # True divides by the n-gram count, i.e. ranks by per-token log-likelihood ratio.
    length_normalize: bool = False
    threads: int | None = None  # featurisation threads; None: one per core

    def __post_init__(self) -> None:
        # JSON round-trips turn the tuple into a list; keep configs comparable.
        self.ngram_range = tuple(self.ngram_range)


def log_distribution_of(texts, config: DSIRConfig) -> np.ndarray:
    """The smoothed log distribution over buckets of all the n-grams of ``texts``."""
    totals = ngrams.bucket_totals(texts, config.num_buckets, config.ngram_range, config.lowercase, config.threads) + config.smoothing
    return np.log(totals) - np.log(totals.sum())


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
    return kl_reductions({"selected": selected_texts}, pool_texts, target_texts, config)["selected"]


def kl_reductions(
    subsets: dict[str, list[str]], pool_texts: list[str], target_texts: list[str], config: DSIRConfig | None = None
) -> dict[str, float]:
    """:func:`kl_reduction` of several subsets of one pool; the pool's and target's distributions are computed once."""
    config = config or DSIRConfig()
    log_target = log_distribution_of(target_texts, config)
    baseline = kl_divergence(log_target, log_distribution_of(pool_texts, config))
    return {name: baseline - kl_divergence(log_target, log_distribution_of(texts, config)) for name, texts in subsets.items()}


class DSIRImportance(Scorer):
    """Outputs ``log_weight`` and ``score`` (= log weight, optionally length-normalised)."""

    name: ClassVar[str] = "dsir"
    kind: ClassVar[str] = "relevance"
    stage: ClassVar[str] = "shard"
    needs_fit: ClassVar[bool] = True
    Config = DSIRConfig

    log_p_target_: np.ndarray
    log_p_raw_: np.ndarray

    def fit(self, pool: Batch, target: Batch) -> "DSIRImportance":
        self.log_p_target_ = log_distribution_of(target.text_array, self.config)
        self.log_p_raw_ = log_distribution_of(pool.text_array, self.config)
        return self

    def score(self, batch: Batch) -> dict[str, np.ndarray]:
        if not hasattr(self, "log_p_target_"):
            raise RuntimeError("DSIRImportance.score called before fit() or load()")
        c = self.config
        log_ratio = self.log_p_target_ - self.log_p_raw_

        def weigh(chunk) -> np.ndarray:
            rows, buckets = ngrams.ngram_buckets(chunk, c.num_buckets, c.ngram_range, c.lowercase)
            return np.stack([np.bincount(rows, weights=log_ratio[buckets], minlength=len(chunk)), np.bincount(rows, minlength=len(chunk))])

        log_weight, lengths = np.concatenate(
            [np.zeros((2, 0)), *ngrams.map_chunks(weigh, batch.tokens(c.lowercase, c.threads), c.threads)], axis=1
        )
        score = log_weight / np.maximum(lengths, 1.0) if c.length_normalize else log_weight
        return {"log_weight": log_weight, "score": score}

    def state_arrays(self) -> dict[str, np.ndarray]:
        return {"log_p_target": self.log_p_target_, "log_p_raw": self.log_p_raw_}

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.log_p_target_ = np.asarray(arrays["log_p_target"], dtype=np.float64)
        self.log_p_raw_ = np.asarray(arrays["log_p_raw"], dtype=np.float64)
