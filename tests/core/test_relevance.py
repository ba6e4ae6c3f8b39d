"""Learned relevance: separable and overlapping Gaussian clusters (known probabilities and
calibration), save/load, and target-domain ranking on 20 Newsgroups."""

import importlib.util

import numpy as np
import pyarrow as pa
import pytest

from dataselect.scorers.base import Batch
from dataselect.scorers.relevance import EmbeddingRelevance, NgramRelevance


def embedded(vectors):
    return Batch(pa.table({"id": [str(i) for i in range(len(vectors))]}), embeddings=vectors)


def gaussian(rng, center, n, scale=1.0):
    return center + scale * rng.standard_normal((n, len(center)))


def test_target_cluster_near_one_far_clusters_near_zero():
    rng = np.random.default_rng(0)
    dim = 16
    centers = 4.0 * np.eye(dim)[:5]  # target = centers[0], pool = the other four clusters
    target = gaussian(rng, centers[0], 200, 0.5)
    pool = np.vstack([gaussian(rng, c, 250, 0.5) for c in centers[1:]])
    scorer = EmbeddingRelevance().fit(embedded(pool), embedded(target))
    near = scorer.score(embedded(gaussian(rng, centers[0], 300, 0.5)))["probability"]
    far = scorer.score(embedded(np.vstack([gaussian(rng, c, 100, 0.5) for c in centers[1:]])))["probability"]
    assert near.min() > 0.9
    assert far.max() < 0.1
    out = scorer.score(embedded(target[:5]))
    np.testing.assert_array_equal(out["score"], out["probability"])


def reliability_gaps(probability, is_target, bins=5, min_count=200):
    """|observed target fraction - mean predicted probability| per well-filled bin."""
    edges = np.quantile(probability, np.linspace(0, 1, bins + 1))
    which = np.clip(np.searchsorted(edges, probability, side="right") - 1, 0, bins - 1)
    return [abs(is_target[which == b].mean() - probability[which == b].mean()) for b in range(bins) if (which == b).sum() >= min_count]


@pytest.mark.parametrize("balanced_prior, train_target, test_target", [(False, 300, 1000), (True, 300, 3000)])
def test_probabilities_are_calibrated_when_the_prior_matches(balanced_prior, train_target, test_target):
    # Overlapping clusters (centres 1.5 apart, unit variance): the Bayes posterior is far
    # from 0/1, so a miscalibrated model shows up in the mean and in the reliability bins.
    rng = np.random.default_rng(1)
    dim = 8
    mu = np.zeros(dim)
    mu[0] = 1.5
    train_pool, train_target_x = gaussian(rng, np.zeros(dim), 900, 1.0), gaussian(rng, mu, train_target, 1.0)
    scorer = EmbeddingRelevance(balanced_prior=balanced_prior).fit(embedded(train_pool), embedded(train_target_x))
    # Held out with the prior the probabilities are meant for: training mix (25%) or 50/50.
    held_target, held_pool = gaussian(rng, mu, test_target, 1.0), gaussian(rng, np.zeros(dim), 3000, 1.0)
    probability = scorer.score(embedded(np.vstack([held_target, held_pool])))["probability"]
    is_target = np.r_[np.ones(test_target), np.zeros(3000)]
    assert abs(probability.mean() - is_target.mean()) < 0.1
    gaps = reliability_gaps(probability, is_target)
    assert len(gaps) >= 3 and max(gaps) < 0.1
    # The true posterior under this prior: the model's probabilities should track it.
    prior = is_target.mean()
    x = np.vstack([held_target, held_pool])
    log_odds = x @ mu - mu @ mu / 2 + np.log(prior / (1 - prior))
    assert np.abs(probability - 1 / (1 + np.exp(-log_odds))).mean() < 0.05


def test_save_load_roundtrip(tmp_path):
    rng = np.random.default_rng(2)
    pool, target = rng.standard_normal((100, 6)), rng.standard_normal((40, 6)) + 1.0
    scorer = EmbeddingRelevance().fit(embedded(pool), embedded(target))
    scorer.save(tmp_path / "emb")
    loaded = EmbeddingRelevance.load(tmp_path / "emb")
    np.testing.assert_array_equal(loaded.score(embedded(pool))["probability"], scorer.score(embedded(pool))["probability"])

    texts = Batch(pa.table({"text": ["rockets and orbits", "stock market news", "orbit of the moon", "prices fell"] * 5}))
    target = Batch(pa.table({"text": ["the moon orbit", "rocket launch to orbit", "space rockets"] * 3}))
    ngram = NgramRelevance(cv_folds=3).fit(texts, target)
    ngram.save(tmp_path / "ngram")
    loaded = NgramRelevance.load(tmp_path / "ngram")
    assert loaded.config == ngram.config
    np.testing.assert_array_equal(loaded.score(texts)["probability"], ngram.score(texts)["probability"])
    # The space-like texts rank above the finance ones.
    p = ngram.score(texts)["probability"]
    assert min(p[0], p[2]) > max(p[1], p[3])


def test_fit_is_deterministic():
    texts = Batch(pa.table({"text": [f"post {i} about {'space' if i % 4 == 0 else 'cars'} {i % 9}" for i in range(80)]}))
    target = Batch(pa.table({"text": [f"space post {i}" for i in range(20)]}))
    first = NgramRelevance().fit(texts, target).score(texts)["probability"]
    np.testing.assert_array_equal(first, NgramRelevance().fit(texts, target).score(texts)["probability"])


@pytest.fixture(scope="module")
def sci_task(newsgroups_records):
    train = [r for r in newsgroups_records if r["split"] == "train"]
    sci_test = [r for r in newsgroups_records if r["split"] == "test" and r["label"].startswith("sci.")]
    pool = [train[i] for i in np.random.default_rng(0).choice(len(train), 2000, replace=False)]
    target = [sci_test[i] for i in np.random.default_rng(1).choice(len(sci_test), 200, replace=False)]
    is_sci = np.array([r["label"].startswith("sci.") for r in pool])
    return [r["text"] for r in pool], [r["text"] for r in target], is_sci


def top_decile_share(score, is_sci):
    top = np.argsort(-score, kind="stable")[: len(score) // 10]
    return is_sci[top].mean()


@pytest.mark.newsgroups
def test_ngram_relevance_ranks_target_domain_first(sci_task):
    pool, target, is_sci = sci_task
    pool_batch = Batch(pa.table({"text": pool}))
    scorer = NgramRelevance().fit(pool_batch, Batch(pa.table({"text": target})))
    out = scorer.score(pool_batch)
    # The matrix-free scoring path equals the tf-idf matrix the classifier was trained on.
    np.testing.assert_allclose(
        scorer.decision_function(pool_batch), scorer.features(pool_batch) @ scorer.coef_ + scorer.intercept_, rtol=1e-10, atol=1e-10
    )
    assert is_sci.mean() < 0.25
    assert top_decile_share(out["score"], is_sci) >= 0.70


@pytest.mark.newsgroups
@pytest.mark.skipif(importlib.util.find_spec("dataselect.embedding") is None, reason="dataselect.embedding absent")
def test_embedding_relevance_ranks_target_domain_first(sci_task):
    from dataselect.embedding import StaticEmbedder

    pool, target, is_sci = sci_task
    embedder = StaticEmbedder()
    pool_batch = Batch(pa.table({"text": pool}), embeddings=embedder.embed(pool))
    target_batch = Batch(pa.table({"text": target}), embeddings=embedder.embed(target))
    out = EmbeddingRelevance().fit(pool_batch, target_batch).score(pool_batch)
    assert top_decile_share(out["score"], is_sci) >= 0.70
