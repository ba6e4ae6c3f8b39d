"""Texts tokenised once and read by several featurisers: the same features as from the texts."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from dataselect import ngrams
from dataselect.scorers import base
from dataselect.scorers.base import Batch
from dataselect.scorers.dsir import DSIRImportance
from dataselect.scorers.label_noise import LabelClassifier
from dataselect.scorers.relevance import NgramRelevance

TRICKY = ["", "   ", "a..b,,c!?d e", "x_y 3.14 ... ¿qué? 東京 tower--test", "  lead  ", "One\ttab\nnew line", None, "solo"]


@pytest.fixture(scope="module")
def texts(newsgroups_records) -> pa.Array:
    # Long enough for many slices of map_chunks, with non-ASCII and null texts among them.
    return pa.array(
        [r["text"] for r in newsgroups_records[:1500]] + TRICKY + [r["text"] for r in newsgroups_records[1500:1700]], pa.string()
    )


@pytest.mark.newsgroups
def test_featurisers_read_tokens_as_they_read_texts(texts):
    tokens = ngrams.tokenize(texts, threads=2)
    assert len(tokens) == len(texts) and len(tokens.slices) > 5
    for num_buckets, ngram_range in ((10_000, (1, 2)), (997, (1, 3))):
        from_texts = ngrams.hashed_counts(texts, num_buckets, ngram_range)
        assert (ngrams.hashed_counts(tokens, num_buckets, ngram_range) != from_texts).nnz == 0
        np.testing.assert_array_equal(
            ngrams.bucket_totals(tokens, num_buckets, ngram_range), ngrams.bucket_totals(texts, num_buckets, ngram_range)
        )
    matrix, idf = ngrams.hashed_idf(texts, 4096)
    matrix_of_tokens, idf_of_tokens = ngrams.hashed_idf(tokens, 4096)
    np.testing.assert_array_equal(idf_of_tokens, idf)
    assert (matrix_of_tokens != matrix).nnz == 0
    other_idf = ngrams.hashed_idf(texts[:300], 4096)[1]  # weighed by an idf fitted elsewhere
    assert (ngrams.hashed_tfidf(tokens, 4096, idf=other_idf) != ngrams.hashed_tfidf(texts, 4096, idf=other_idf)).nnz == 0
    # Long windows (decontamination's) too, slice by slice.
    for piece_tokens, piece in zip(tokens.slices, ngrams.map_chunks(lambda piece: piece, texts)):
        for got, expected in zip(ngrams.window_keys(piece_tokens, 13), ngrams.window_keys(piece, 13)):
            np.testing.assert_array_equal(got, expected)


def test_tokens_cut_with_another_case_rule_are_refused():
    tokens = ngrams.tokenize(["Alpha Beta"], lowercase=False)
    with pytest.raises(ValueError, match="lowercase=False"):
        ngrams.ngram_buckets(tokens.slices[0], 100, (1, 1), lowercase=True)


@pytest.mark.newsgroups
def test_a_shard_is_tokenised_once_and_scored_as_without_sharing(newsgroups_records, monkeypatch):
    train = [r for r in newsgroups_records if r["split"] == "train"][:3000]
    table = pa.table({"text": [r["text"] for r in train], "label": [r["label"] for r in train]})
    target = Batch(pa.table({"text": [r["text"] for r in newsgroups_records if r["label"].startswith("sci.")][:200]}))
    fit_on = Batch(table.slice(0, 2000))
    scorers = [DSIRImportance().fit(fit_on, target), NgramRelevance().fit(fit_on, target), LabelClassifier().fit(fit_on)]
    shard = table.slice(2000)

    cut = []
    tokenize = ngrams.tokenize
    monkeypatch.setattr(ngrams, "tokenize", lambda *args, **kwargs: cut.append(1) or tokenize(*args, **kwargs))
    batch = Batch(shard)
    shared = [scorer.score(batch) for scorer in scorers]
    assert len(cut) == 1  # three n-gram scorers, one tokenisation

    monkeypatch.setattr(base, "SHARED_TOKEN_BYTES", 0)  # every scorer cuts its own tokens from the texts
    batch = Batch(shard)
    alone = [scorer.score(batch) for scorer in scorers]
    assert len(cut) == 1 and isinstance(batch.tokens(), pa.Array)
    for got, expected in zip(shared, alone):
        assert got.keys() == expected.keys()
        for name in got:
            np.testing.assert_array_equal(got[name], expected[name])
