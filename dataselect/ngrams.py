"""Hashed word n-grams of a whole batch of texts, without a Python loop over tokens.

DSIR and the n-gram relevance filter both describe a text as a bag of hashed word n-grams.
Here the batch is tokenised by Arrow's RE2 string kernels, each *distinct* word is hashed once,
and an n-gram's hash is mixed from its words' hashes with numpy (splitmix64), so no n-gram
string is ever built. Tokens are the matches of ``\\w+|[^\\w\\s]+`` (words and punctuation runs,
NLTK's WordPunct tokenisation, which the DSIR authors use); n-grams never cross two texts.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

TOKEN_PATTERN = r"\w+|[^\w\s]+"
# The second alternative in RE2 terms (Python's ``\w`` is a letter, a number or "_"). Spacing
# these runs out leaves whitespace as the only separator between tokens.
_SYMBOL_RUN = r"([^\pL\pN_\s]+)"
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijection on uint64 that spreads every input bit."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def word_hash(word: str) -> int:
    """The 64-bit hash of one token (murmurhash3, then mixed): the reference for tests."""
    from sklearn.utils import murmurhash3_32

    return int(_mix(np.array([murmurhash3_32(word, 0, positive=True)], np.uint64))[0])


def ngram_key(hashes: Sequence[int]) -> int:
    """The bucket-independent key of the n-gram whose words have these :func:`word_hash` values."""
    return int(_ngram_keys([np.array([h], np.uint64) for h in hashes])[0])


def _ngram_keys(word_hashes: list[np.ndarray]) -> np.ndarray:
    """Keys of n-grams given aligned arrays of their 1st, 2nd, ... words' hashes (order matters)."""
    key = word_hashes[0]
    for following in word_hashes[1:]:
        key = _mix(key * _GOLDEN + following)
    return _mix(key + np.uint64(len(word_hashes)))  # separates the n-gram orders


def _tokens(texts: pa.Array | Sequence[str | None], lowercase: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(text index, vocabulary code) of every token, and each vocabulary entry's :func:`word_hash`."""
    array = texts if isinstance(texts, (pa.Array, pa.ChunkedArray)) else pa.array(list(texts), pa.string())
    array = pc.fill_null(array, "")
    if lowercase:
        array = pc.utf8_lower(array)
    token_lists = pc.utf8_split_whitespace(pc.replace_substring_regex(array, _SYMBOL_RUN, r" \1 "))
    tokens = pc.list_flatten(token_lists)
    parents = np.asarray(pc.list_parent_indices(token_lists), dtype=np.int64)
    present = pc.greater(pc.binary_length(tokens), 0)  # leading/trailing spaces split into ""
    return (parents[present.to_numpy(zero_copy_only=False)], *_vocabulary_hashes(tokens.filter(present)))


def _vocabulary_hashes(tokens: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(vocabulary code of every token, :func:`word_hash` of each distinct token, hashed once)."""
    from sklearn.utils import murmurhash3_32

    encoded = pc.dictionary_encode(tokens)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    vocabulary = encoded.dictionary.to_pylist()
    distinct = _mix(np.fromiter((murmurhash3_32(w, 0, positive=True) for w in vocabulary), np.uint64, len(vocabulary)))
    return encoded.indices.to_numpy(zero_copy_only=False), distinct


def hash_tokens(tokens: pa.Array) -> np.ndarray:
    """:func:`word_hash` of every token; each distinct token is hashed once."""
    codes, distinct = _vocabulary_hashes(tokens)
    return distinct[codes]


def ngram_buckets(
    texts: pa.Array | Sequence[str | None],
    num_buckets: int,
    ngram_range: tuple[int, int] = (1, 2),
    lowercase: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """(text index, bucket in ``[0, num_buckets)``) of every n-gram of every text."""
    parents, codes, distinct = _tokens(texts, lowercase)
    hashes = distinct[codes] if ngram_range[1] > 1 else None
    rows, buckets = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    low, high = ngram_range
    for size in range(low, high + 1):
        count = len(codes) - size + 1
        if count <= 0:
            break
        if size == 1:  # a unigram's bucket depends on its word alone: compute it per distinct word
            rows.append(parents)
            buckets.append((_ngram_keys([distinct]) % np.uint64(num_buckets)).astype(np.int64)[codes])
            continue
        # The n-gram starting at token i is real when its first and last tokens share a text.
        inside = parents[:count] == parents[size - 1 :]
        keys = _ngram_keys([hashes[offset : offset + count][inside] for offset in range(size)])
        rows.append(parents[:count][inside])
        buckets.append((keys % np.uint64(num_buckets)).astype(np.int64))
    return np.concatenate(rows), np.concatenate(buckets)


def distinct_counts(rows: np.ndarray, buckets: np.ndarray, num_buckets: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each (text, bucket) pair once with its count, sorted by text then bucket (CSR order).

    One plain sort of ``text * num_buckets + bucket`` (numpy's SIMD quicksort: ~20x faster here
    than a hash table or scipy's per-row index sort)."""
    keys = np.sort(rows * num_buckets + buckets)
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else np.zeros(0, np.int64)
    counts = np.diff(np.r_[starts, len(keys)])
    keys = keys[starts]
    return keys // num_buckets, keys % num_buckets, counts


def map_chunks(function: Callable, texts: pa.Array | Sequence[str | None], threads: int | None = None, size: int = 20_000) -> list:
    """``function`` of consecutive slices of the texts, in order, on ``threads`` threads.

    Slices hold at most ``size`` texts (bounding the per-token arrays' memory) and there are at
    least ``threads`` of them; Arrow's string kernels and numpy release the GIL, so two threads
    run about 1.7x faster on two cores. ``threads=None``: one per core.
    """
    threads = max(1, threads or os.cpu_count() or 1)
    pieces = max(threads if len(texts) >= 2_000 * threads else 1, -(-len(texts) // size))
    step = -(-len(texts) // pieces) if len(texts) else 1
    slices = [texts[start : start + step] for start in range(0, len(texts), step)]
    if threads == 1 or len(slices) <= 1:
        return [function(piece) for piece in slices]
    with ThreadPoolExecutor(min(threads, len(slices))) as pool:
        return list(pool.map(function, slices))


def hashed_counts(
    texts: pa.Array | Sequence[str | None],
    num_buckets: int,
    ngram_range: tuple[int, int] = (1, 2),
    lowercase: bool = True,
    threads: int | None = None,
) -> sp.csr_matrix:
    """(n texts, num_buckets) n-gram counts, like ``HashingVectorizer`` with the token pattern above."""

    def counts_of(chunk) -> sp.csr_matrix:
        rows, buckets, counts = distinct_counts(*ngram_buckets(chunk, num_buckets, ngram_range, lowercase), num_buckets)
        indptr = np.r_[0, np.cumsum(np.bincount(rows, minlength=len(chunk)))]
        return sp.csr_matrix((counts.astype(np.float64), buckets, indptr), shape=(len(chunk), num_buckets))

    parts = map_chunks(counts_of, texts, threads)
    return sp.vstack(parts, format="csr") if parts else sp.csr_matrix((0, num_buckets))


def bucket_totals(
    texts: pa.Array | Sequence[str | None],
    num_buckets: int,
    ngram_range: tuple[int, int] = (1, 2),
    lowercase: bool = True,
    threads: int | None = None,
) -> np.ndarray:
    """Summed n-gram counts per bucket over all texts (``hashed_counts(...).sum(axis=0)``)."""

    def totals_of(chunk) -> np.ndarray:
        return np.bincount(ngram_buckets(chunk, num_buckets, ngram_range, lowercase)[1], minlength=num_buckets).astype(np.float64)

    return np.sum(map_chunks(totals_of, texts, threads), axis=0) if len(texts) else np.zeros(num_buckets)
