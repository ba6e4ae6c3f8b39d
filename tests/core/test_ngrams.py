"""The vectorised n-gram hashing against a plain per-text Python implementation of the same spec."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from dataselect import ngrams

TRICKY = ["", "   ", "a..b,,c!?d e", "x_y 3.14 ... ¿qué? 東京 tower--test", "  lead  ", "One\ttab\nnew line", None, "solo"]


def ngram_key(hashes: list[int]) -> int:
    """The bucket-independent key of one n-gram from its words' hashes, through the vectorised kernel."""
    return int(ngrams._ngram_keys([np.array([h], np.uint64) for h in hashes])[0])


def reference_counts(text: str | None, num_buckets: int, ngram_range: tuple[int, int], lowercase: bool) -> Counter:
    """Per-text loop: regex tokens, every n-gram's key from its words' hashes, bucket by modulo."""
    text = text or ""
    tokens = re.findall(ngrams.TOKEN_PATTERN, text.lower() if lowercase else text)
    hashes = [ngrams.word_hash(t) for t in tokens]
    counts: Counter = Counter()
    for size in range(ngram_range[0], ngram_range[1] + 1):
        for start in range(len(tokens) - size + 1):
            counts[ngram_key(hashes[start : start + size]) % num_buckets] += 1
    return counts


def as_counters(matrix) -> list[Counter]:
    return [Counter(dict(zip(row.indices.tolist(), row.data.astype(int).tolist()))) for row in matrix]


def test_hashed_counts_equal_the_per_text_reference(newsgroups_records):
    texts = [r["text"] for r in newsgroups_records[:300]] + TRICKY
    for num_buckets, ngram_range, lowercase in ((10_000, (1, 2), True), (997, (1, 3), False), (50, (2, 2), True)):
        fast = ngrams.hashed_counts(texts, num_buckets, ngram_range, lowercase)
        assert fast.shape == (len(texts), num_buckets)
        expected = [reference_counts(t, num_buckets, ngram_range, lowercase) for t in texts]
        assert as_counters(fast) == expected
        # Arrow input gives the same matrix, and bucket totals are its column sums.
        assert (ngrams.hashed_counts(pa.array(texts, pa.string()), num_buckets, ngram_range, lowercase) != fast).nnz == 0
        totals = ngrams.bucket_totals(texts, num_buckets, ngram_range, lowercase)
        np.testing.assert_array_equal(totals, np.asarray(fast.sum(axis=0)).ravel())


def test_tokens_never_join_across_texts_and_order_matters():
    rows, buckets = ngrams.ngram_buckets(["alpha beta", "gamma"], 1 << 20, (2, 2))
    assert rows.tolist() == [0]  # one bigram; "beta gamma" would cross the text boundary
    ab = ngram_key([ngrams.word_hash("alpha"), ngrams.word_hash("beta")])
    ba = ngram_key([ngrams.word_hash("beta"), ngrams.word_hash("alpha")])
    assert buckets[0] == ab % (1 << 20) and ab != ba
    # A unigram and the bigram of the same word twice are different n-grams.
    assert ngram_key([ngrams.word_hash("a")]) != ngram_key([ngrams.word_hash("a")] * 2)
    assert ngrams.hashed_counts([], 10).shape == (0, 10)


def test_buckets_spread_evenly():
    words = [f"w{i}" for i in range(20_000)]
    _, buckets = ngrams.ngram_buckets([" ".join(words)], 100, (1, 1))
    per_bucket = np.bincount(buckets, minlength=100)
    # 200 expected per bucket: a poor mix (e.g. the low bits of a plain multiply) would be far off.
    assert per_bucket.min() > 140 and per_bucket.max() < 260


def test_threads_and_chunking_do_not_change_the_counts(newsgroups_records):
    texts = [r["text"] for r in newsgroups_records[:5000]]
    one = ngrams.hashed_counts(texts, 4096, threads=1)
    for threads in (2, 3):
        assert (ngrams.hashed_counts(texts, 4096, threads=threads) != one).nnz == 0
        np.testing.assert_array_equal(ngrams.bucket_totals(texts, 4096, threads=threads), np.asarray(one.sum(axis=0)).ravel())
    # token_hashes goes through ~1 MB slices: the same tokens as one pass over all 5000 texts.
    whole = ngrams._slice_token_hashes(pa.array(texts, pa.string()), True, ngrams.WHITESPACE_PATTERN)
    for threads in (1, 2):
        sliced = ngrams.token_hashes(texts, True, ngrams.WHITESPACE_PATTERN, threads=threads)
        np.testing.assert_array_equal(sliced[0], whole[0])
        np.testing.assert_array_equal(sliced[1], whole[1])
    pieces = ngrams.map_chunks(len, texts, threads=2, size=1000, max_bytes=1 << 40)
    assert pieces == [1000] * 5  # at most `size` texts per slice, in order
    array = pa.array(texts, pa.string())
    pieces = ngrams.map_chunks(
        lambda piece: (len(piece), sum(pa.compute.binary_length(piece).to_pylist())), array, size=400, max_bytes=200_000
    )
    longest = max(len(t.encode()) for t in texts)
    assert sum(n for n, _ in pieces) == 5000 and max(n for n, _ in pieces) <= 400
    assert max(size for _, size in pieces) <= 200_000 + longest and len(pieces) >= sum(size for _, size in pieces) // 200_000


# ASCII (with every control character) plus a few letters, spaces and symbols beyond it.
SOME_TEXT = st.text(alphabet=st.characters(max_codepoint=127) | st.sampled_from("éÉß東京\xa0\u2003—’"), max_size=40)


@given(st.lists(st.none() | SOME_TEXT, max_size=6), st.booleans())
@settings(max_examples=300, deadline=None)
def test_any_text_is_tokenised_and_hashed_as_the_reference(texts, lowercase):
    fast = ngrams.hashed_counts(texts, 1 << 16, (1, 3), lowercase, threads=1)
    assert as_counters(fast) == [reference_counts(t, 1 << 16, (1, 3), lowercase) for t in texts]


@given(st.lists(st.none() | SOME_TEXT, max_size=6), st.booleans())
@settings(max_examples=200, deadline=None)
def test_whitespace_words_are_str_split(texts, lowercase):
    parents, hashes = ngrams.token_hashes(texts, lowercase, ngrams.WHITESPACE_PATTERN)
    words = [(i, w) for i, t in enumerate(texts) for w in ((t or "").lower() if lowercase else (t or "")).split()]
    assert parents.tolist() == [i for i, _ in words]
    assert hashes.tolist() == [ngrams.word_hash(w) for _, w in words]


def test_the_byte_path_and_the_re2_path_agree_on_ascii():
    texts = pa.array(["".join(map(chr, range(128))) * 2, "Mixed CASE, and_snake 42!  ", ""], pa.string())
    for lowercase in (True, False):
        for pattern in (ngrams.TOKEN_PATTERN, ngrams.WHITESPACE_PATTERN):
            by_bytes, by_re2 = ngrams._ascii_tokens(texts, lowercase, pattern), ngrams._unicode_tokens(texts, lowercase, pattern)
            np.testing.assert_array_equal(by_bytes[0], by_re2[0])
            np.testing.assert_array_equal(by_bytes[1], by_re2[1])
    assert ngrams.hash_tokens(pa.array(["ab", None, "é"])).tolist() == [ngrams.word_hash("ab"), 0, ngrams.word_hash("é")]


def test_repeated_calls_give_the_same_tokens():
    # Arrow's utf8_split_whitespace (no longer used) sometimes gave a stray " " token for such texts.
    texts = ["000000000:00:0:0:É\u2003", "0000000000:0:0:0:É\u2003", "tail \u3000 \xa0 "]
    expected = [reference_counts(t, 1 << 16, (1, 3), False) for t in texts]
    for _ in range(200):
        assert as_counters(ngrams.hashed_counts(texts, 1 << 16, (1, 3), False, threads=1)) == expected


def test_hashed_tfidf_is_scikit_learns_sublinear_tfidf_on_the_same_words():
    from sklearn.feature_extraction.text import TfidfVectorizer

    base = ["the cat sat on the mat", "The dog ate the cat's dinner, twice twice twice", "", "mat mat mat dog"]
    # Over 500 texts, so the counts are weighed in several slices against one idf over all of them.
    texts = base + [f"{text} item{i % 7} batch{i % 3}" for i, text in enumerate(base * 300)]
    hashed = ngrams.hashed_tfidf(texts, 1 << 20).toarray()
    vectorizer = TfidfVectorizer(sublinear_tf=True, token_pattern=ngrams.TOKEN_PATTERN)
    exact = vectorizer.fit_transform(texts).toarray()
    # Same rows up to the order of the columns: compare every pair of texts by cosine.
    np.testing.assert_allclose(hashed @ hashed.T, exact @ exact.T, atol=1e-6)
    np.testing.assert_allclose(np.sort(hashed[1][hashed[1] > 0]), np.sort(exact[1][exact[1] > 0]), atol=1e-6)
    assert hashed.dtype == np.float32 and not hashed[2].any()


def window_key_reference(hashes: list[int]) -> int:
    """A run's key by its definition: the polynomial of its token hashes, modulo 2**64, mixed with its length."""
    base = int(ngrams._BASE)
    poly = sum(h * pow(base, i, 1 << 64) for i, h in enumerate(hashes)) % (1 << 64)
    return int(ngrams._mix(np.array([(poly + len(hashes)) % (1 << 64)], np.uint64))[0])


def test_window_keys_equal_the_per_text_reference(newsgroups_records):
    texts = [r["text"] for r in newsgroups_records[:100]] + TRICKY + ["a b c d", "A B C D e"]
    rows, keys = ngrams.window_keys(texts, 4)
    expected = []
    for index, text in enumerate(texts):
        hashes = [ngrams.word_hash(t) for t in re.findall(ngrams.TOKEN_PATTERN, (text or "").lower())]
        expected += [(index, window_key_reference(hashes[i : i + 4])) for i in range(len(hashes) - 3)]
    assert list(zip(rows.tolist(), keys.tolist())) == expected  # every window, in order, none across two texts
    first, second = (keys[rows == len(texts) - 2], keys[rows == len(texts) - 1])
    assert first[0] == second[0] and first[0] != second[1]  # same words (lower-cased), same key
