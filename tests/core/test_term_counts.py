"""TermCounts gives CountVectorizer's matrix and columns: tricky strings, several n-gram orders, real corpora."""

import gzip
import json

import numpy as np
import pyarrow as pa
import pytest
from sklearn.feature_extraction.text import CountVectorizer

from dataselect import term_counts
from dataselect.term_counts import TermCounts, tokenize

TRICKY = [
    "The cat sat on the mat. The cat!",
    "snake_case __dunder__ x_y a_ 3.14 3,14 1st 2nd",
    "Ünïcode straße ΣΑΣ naïve café CAFÉ 日本語 テキスト",
    "tabs\tand\nnewlines\r\nand  double  spaces",
    "a b c d e",  # one-letter words are not tokens, and bigrams skip over them
    "don't can't it's the cat's mat",
    "",
    None,
    "the cat sat on the mat the cat sat",
    "emoji 😀 between words 😀 words",
]
REPEATED = TRICKY + [t.upper() if t else t for t in TRICKY] + ["cat mat", "sat on", "words between"]


def sklearn_counts(fit_texts, other_texts, ngram_range, min_df):
    counter = CountVectorizer(ngram_range=ngram_range, min_df=min_df, dtype=np.float32)
    fitted = counter.fit_transform([t or "" for t in fit_texts])
    other = counter.transform([t or "" for t in other_texts])
    fitted.sort_indices()
    other.sort_indices()
    return counter.get_feature_names_out().tolist(), fitted, other


def assert_same(ours: TermCounts, other_ours, expected):
    names, fitted, other = expected
    assert ours.feature_names.to_pylist() == names
    assert ours.matrix.shape == fitted.shape and ours.matrix.has_sorted_indices
    assert (ours.matrix != fitted).nnz == 0
    assert other_ours.shape == other.shape and (other_ours != other).nnz == 0


@pytest.mark.parametrize("ngram_range", [(1, 1), (1, 2), (2, 2), (1, 3), (2, 3)])
@pytest.mark.parametrize("min_df", [1, 2, 3])
def test_equals_count_vectorizer_on_tricky_text(ngram_range, min_df):
    other = ["the cat sat", "unseen words only", "CAFÉ straße", None, "cat mat cat mat"]
    ours = TermCounts(REPEATED, ngram_range, min_df)
    assert_same(ours, ours.transform(other), sklearn_counts(REPEATED, other, ngram_range, min_df))


@pytest.mark.parametrize("ngram_range", [(1, 2), (1, 3)])
@pytest.mark.parametrize("min_df", [1, 2])
@pytest.mark.parametrize("as_arrow", [None, pa.string(), pa.large_string()])
def test_counting_in_many_slices_and_parts_gives_the_same_matrix(monkeypatch, ngram_range, min_df, as_arrow):
    """A large pool is tokenised in slices and its n-grams numbered in parts; tiny ones here, so
    every text and n-gram crosses a boundary somewhere. Arrow input, large strings included (pandas'
    string columns are large strings): slices of it must lower-case their own texts."""
    monkeypatch.setattr(term_counts, "_SLICE_TEXTS", 2)
    monkeypatch.setattr(term_counts, "_PART_TOKENS", 5)
    monkeypatch.setattr(term_counts, "_DISTINCT_TOKENS", 7)
    other = ["the cat sat on the mat", "CAFÉ straße naïve", None]
    # Mixed-case ASCII texts with no nulls too: the slices Arrow lower-cases on its fast path.
    texts = REPEATED + [f"Word{i % 7} SOME Upper TEXT number{i % 5} and More" for i in range(30)]
    ours = TermCounts(texts if as_arrow is None else pa.array(texts, as_arrow), ngram_range, min_df)
    assert_same(ours, ours.transform(other), sklearn_counts(texts, other, ngram_range, min_df))


def test_a_pandas_column_or_chunked_arrow_texts_count_as_the_strings_do():
    """The report passes its pool's pandas column (Arrow-backed strings) and a pool may arrive in chunks."""
    import pandas as pd

    expected = TermCounts(REPEATED, (1, 2), 2)
    column = pd.DataFrame({"text": REPEATED})["text"]
    chunked = pa.chunked_array([pa.array(REPEATED[:7], pa.large_string()), pa.array(REPEATED[7:], pa.large_string())])
    for texts in (column, chunked):
        ours = TermCounts(texts, (1, 2), 2)
        assert ours.feature_names.to_pylist() == expected.feature_names.to_pylist() and (ours.matrix != expected.matrix).nnz == 0
    assert TermCounts(pd.Series([], dtype=float), (1, 2), 1).matrix.shape == (0, 0)  # an empty frame's column


def test_tokens_are_runs_of_two_or_more_word_characters_lowercased():
    parents, tokens = tokenize(pa.array(["A b-CD, éf_1 x", None, "ok"]), threads=1)
    assert tokens.to_pylist() == ["cd", "éf_1", "ok"]
    assert parents.tolist() == [0, 0, 2]


def test_no_term_reaching_min_df_gives_zero_columns_not_an_error():
    ours = TermCounts(["a b c", "dd", None], (1, 2), min_df=2)
    assert ours.matrix.shape == (3, 0)
    assert ours.transform(["dd dd"]).shape == (1, 0)
    assert TermCounts([], (1, 2), 2).matrix.shape == (0, 0)


def test_rejects_a_bad_ngram_range():
    with pytest.raises(ValueError, match="ngram_range"):
        TermCounts(["ab cd"], (2, 1))


def test_equals_count_vectorizer_on_real_newsgroups_and_reviews(newsgroups_records, amazon_dir):
    with gzip.open(amazon_dir / "train.jsonl.gz", "rt", encoding="utf-8") as handle:
        reviews = [json.loads(line)["text"] for line in handle]
    messages = [r["text"] for r in newsgroups_records]
    fit_texts = messages[:4000] + reviews[:2000]
    other = messages[-1500:] + reviews[-500:]
    ours = TermCounts(fit_texts, (1, 2), 2)
    assert ours.matrix.shape[1] > 100_000
    assert_same(ours, ours.transform(other), sklearn_counts(fit_texts, other, (1, 2), 2))
