"""Hashed word n-grams of a whole batch of texts, without a Python loop over tokens.

DSIR and the n-gram relevance filter both describe a text as a bag of hashed word n-grams.
Tokens are the matches of ``\\w+|[^\\w\\s]+`` (words and punctuation runs, NLTK's WordPunct
tokenisation, which the DSIR authors use); n-grams never cross two texts.

All-ASCII texts (99% of English web or mail text) are tokenised on their bytes: a token is a run
of word bytes or of symbol bytes, and every token's hash is a polynomial over its bytes read off
prefix sums, so the whole batch costs a few numpy passes over its bytes. Other texts go through
Arrow's RE2 kernels, hashed the same way. An n-gram's key is mixed from its words' hashes
(splitmix64), so no n-gram string is ever built.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from dataselect.threads import available

TOKEN_PATTERN = r"\w+|[^\w\s]+"
WHITESPACE_PATTERN = r"\S+"  # the words of str.split(), for callers that want those instead
# Python's whitespace (str.isspace) in RE2 terms, and a run of neither whitespace nor ``\w``
# once whitespace is plain spaces (``\w`` is a letter, a number or "_", up to Unicode-version
# differences). Arrow's own utf8_split_whitespace is not used: on runs of trailing spaces it
# can return different tokens from one call to the next (pyarrow 26).
_RE2_SPACE_RUN = r"[\s\x0b\x1c-\x1f\x85\p{Z}]+"
_RE2_SYMBOL_RUN = r"([^\pL\pN_ ]+)"
# Each ASCII byte's class (0 whitespace, else a token class), from Python's re: under
# TOKEN_PATTERN word bytes and symbol bytes make separate tokens, under WHITESPACE_PATTERN not.
_ASCII_CLASSES = {
    TOKEN_PATTERN: np.array([0 if re.fullmatch(r"\s", chr(b)) else 1 if re.fullmatch(r"\w", chr(b)) else 2 for b in range(128)], np.int8),
    WHITESPACE_PATTERN: np.array([0 if re.fullmatch(r"\s", chr(b)) else 1 for b in range(128)], np.int8),
}
# A byte's term in a string's hash polynomial (see word_hash), as is and lower-cased.
_BYTE_TERM = np.arange(1, 257, dtype=np.uint64)
_ASCII_LOWER_TERM = np.array([ord(chr(b).lower()) + 1 for b in range(128)], np.uint64)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_BASE = _GOLDEN  # odd, hence invertible modulo 2**64 (see _substring_hashes)
_BASE_INVERSE = np.uint64(pow(int(_BASE), -1, 1 << 64))


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijection on uint64 that spreads every input bit."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def word_hash(word: str) -> int:
    """The 64-bit hash of one token: the reference for tests.

    A polynomial in the base over the token's UTF-8 bytes (each plus one, so that trailing zero
    bytes count), modulo 2**64, then mixed."""
    poly = sum((byte + 1) * pow(int(_BASE), i, 1 << 64) for i, byte in enumerate(word.encode("utf-8"))) % (1 << 64)
    return int(_mix(np.array([poly], np.uint64))[0])


def _ngram_keys(word_hashes: list[np.ndarray]) -> np.ndarray:
    """Keys of n-grams given aligned arrays of their 1st, 2nd, ... words' hashes (order matters)."""
    key = word_hashes[0]
    for following in word_hashes[1:]:
        key = _mix(key * _GOLDEN + following)
    return _mix(key + np.uint64(len(word_hashes)))  # separates the n-gram orders


_POWER_TABLES: list[np.ndarray] = [np.zeros(0, np.uint64), np.zeros(0, np.uint64)]
_CACHED_POWERS = 1 << 23  # bytes of text; larger batches compute their own tables


def _power_tables(length: int) -> tuple[np.ndarray, np.ndarray]:
    """``B**(i+1)`` for i < length and ``B**-(i+1)`` for i <= length, cached: every batch needs them."""
    powers, inverse = _POWER_TABLES
    if len(inverse) <= length:
        size = max(length, min(2 * len(powers), _CACHED_POWERS), 1 << 16)
        powers = np.cumprod(np.full(size, _BASE, np.uint64))
        inverse = np.cumprod(np.full(size + 1, _BASE_INVERSE, np.uint64))
        if size <= _CACHED_POWERS:
            _POWER_TABLES[:] = powers, inverse  # one assignment: a thread reading the old tables is unaffected
    return powers[:length], inverse[: length + 1]


def _substring_hashes(terms: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """:func:`word_hash` of each ``data[start:end]``, given each byte's term ``byte + 1`` (uint64).

    With prefix sums ``S[j] = sum_{i<j} terms[i] * B**(i+1)``, a substring's polynomial is
    ``(S[end] - S[start]) * B**-(start+1)``: one product and one cumulative sum over the bytes,
    whatever the number of substrings. ``terms`` is overwritten."""
    powers, inverse = _power_tables(len(terms))
    prefix = np.zeros(len(terms) + 1, np.uint64)
    np.cumsum(np.multiply(terms, powers, out=terms), out=prefix[1:])
    return _mix((prefix[ends] - prefix[starts]) * inverse[starts])


def _string_buffers(array: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(bytes, offsets from 0) of a null-free string array, without copying the bytes."""
    offsets_type = np.int64 if pa.types.is_large_string(array.type) else np.int32
    offsets = np.frombuffer(array.buffers()[1], offsets_type)[array.offset : array.offset + len(array) + 1].astype(np.int64)
    data = array.buffers()[2]
    data = np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)
    return data[offsets[0] : offsets[-1]], offsets - offsets[0]


def hash_tokens(tokens: pa.Array) -> np.ndarray:
    """:func:`word_hash` of every string of an Arrow array."""
    if isinstance(tokens, pa.ChunkedArray):
        tokens = tokens.combine_chunks()
    data, offsets = _string_buffers(pc.fill_null(tokens, ""))
    return _substring_hashes(_BYTE_TERM[data], offsets[:-1], offsets[1:])


def _ascii_tokens(array: pa.Array, lowercase: bool, pattern: str) -> tuple[np.ndarray, np.ndarray]:
    """(text index, hash) of every token of all-ASCII texts, found on their bytes by numpy.

    In ASCII a token is a maximal run of bytes of one non-whitespace class, so tokens start where
    the byte class changes (or a text starts) and the class is not whitespace."""
    data, offsets = _string_buffers(array)
    kind = _ASCII_CLASSES[pattern][data]
    run_start = np.ones(len(data) + 1, bool)
    run_start[1:-1] = kind[1:] != kind[:-1]
    run_start[offsets] = True
    in_token = kind != 0
    starts = np.flatnonzero(run_start[:-1] & in_token)
    ends = np.flatnonzero(run_start[1:] & in_token) + 1
    parents = np.repeat(np.arange(len(array)), np.diff(np.searchsorted(starts, offsets)))
    return parents, _substring_hashes((_ASCII_LOWER_TERM if lowercase else _BYTE_TERM)[data], starts, ends)


def _unicode_tokens(array: pa.Array, lowercase: bool, pattern: str) -> tuple[np.ndarray, np.ndarray]:
    """(text index, hash) of every token, by Arrow's RE2 kernels: any UTF-8 text.

    Every whitespace run becomes one space and every symbol run is spaced out, so splitting at
    spaces leaves the tokens (and some empty strings, dropped)."""
    if lowercase:
        array = pc.utf8_lower(array)
    spaced = pc.replace_substring_regex(array, _RE2_SPACE_RUN, " ")
    if pattern == TOKEN_PATTERN:
        spaced = pc.replace_substring_regex(spaced, _RE2_SYMBOL_RUN, r" \1 ")
    token_lists = pc.split_pattern(spaced, " ")
    tokens = pc.list_flatten(token_lists)
    parents = np.asarray(pc.list_parent_indices(token_lists), dtype=np.int64)
    present = pc.greater(pc.binary_length(tokens), 0)
    return parents[present.to_numpy(zero_copy_only=False)], hash_tokens(tokens.filter(present))


def _as_array(texts: pa.Array | Sequence[str | None]) -> pa.Array:
    array = texts if isinstance(texts, (pa.Array, pa.ChunkedArray)) else pa.array(list(texts), pa.string())
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


def _slice_token_hashes(texts: pa.Array | Sequence[str | None], lowercase: bool, pattern: str) -> tuple[np.ndarray, np.ndarray]:
    """:func:`token_hashes` of one slice: all-ASCII texts by bytes, the others by RE2."""
    array = pc.fill_null(_as_array(texts), "")
    ascii = pc.string_is_ascii(array).to_numpy(zero_copy_only=False)
    if ascii.all():
        return _ascii_tokens(array, lowercase, pattern)
    if not ascii.any():
        return _unicode_tokens(array, lowercase, pattern)
    parts = [(np.flatnonzero(ascii), _ascii_tokens), (np.flatnonzero(~ascii), _unicode_tokens)]
    found = [(where, tokens_of(array.take(where), lowercase, pattern)) for where, tokens_of in parts]
    parents = np.concatenate([where[local] for where, (local, _) in found])
    order = np.argsort(parents, kind="stable")  # a merge of two sorted runs: linear time
    return parents[order], np.concatenate([hashes for _, (_, hashes) in found])[order]


@dataclass(frozen=True)
class SliceTokens:
    """The :data:`TOKEN_PATTERN` tokens of one slice of texts, hashed: what :func:`ngram_buckets`,
    :func:`window_keys` and the functions built on them accept in place of the slice's texts."""

    size: int  # texts in the slice
    parents: np.ndarray  # int64: the text (within the slice) of each token
    hashes: np.ndarray  # uint64: :func:`word_hash` of each token
    lowercase: bool

    def __len__(self) -> int:
        return self.size


@dataclass(frozen=True)
class Tokenized:
    """Texts tokenised once, in the slices :func:`map_chunks` cuts them into: it maps over the slices'
    tokens as it would over their texts, so several featurisers of the same texts share one pass."""

    slices: list[SliceTokens]

    def __len__(self) -> int:
        return sum(piece.size for piece in self.slices)


def tokenize(texts: pa.Array | Sequence[str | None], lowercase: bool = True, threads: int | None = None) -> Tokenized:
    """The texts' :data:`TOKEN_PATTERN` tokens, slice by slice."""
    return Tokenized(
        map_chunks(lambda piece: SliceTokens(len(piece), *_slice_token_hashes(piece, lowercase, TOKEN_PATTERN), lowercase), texts, threads)
    )


def _tokens_of(texts: pa.Array | Sequence[str | None] | SliceTokens, lowercase: bool) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(texts, SliceTokens):
        return _slice_token_hashes(texts, lowercase, TOKEN_PATTERN)
    if texts.lowercase != lowercase:
        raise ValueError(f"tokens cut with lowercase={texts.lowercase}, asked for lowercase={lowercase}")
    return texts.parents, texts.hashes


def token_hashes(
    texts: pa.Array | Sequence[str | None], lowercase: bool = True, pattern: str = TOKEN_PATTERN, threads: int | None = 1
) -> tuple[np.ndarray, np.ndarray]:
    """(text index, :func:`word_hash`) of every match of ``pattern`` (:data:`TOKEN_PATTERN` or
    :data:`WHITESPACE_PATTERN`), in text order.

    All-ASCII texts (nearly all English text) take the byte path, the rest the RE2 path. Texts
    go through in slices of :func:`map_chunks`, so the per-byte arrays stay a few MB."""
    if pattern not in _ASCII_CLASSES:
        raise ValueError(f"pattern must be TOKEN_PATTERN or WHITESPACE_PATTERN, not {pattern!r}")
    pieces = map_chunks(lambda piece: (len(piece), *_slice_token_hashes(piece, lowercase, pattern)), _as_array(texts), threads)
    firsts = np.cumsum([0] + [n for n, _, _ in pieces[:-1]])
    parents = [parents + first for first, (_, parents, _) in zip(firsts, pieces)]
    return np.concatenate([np.zeros(0, np.int64), *parents]), np.concatenate([np.zeros(0, np.uint64), *[h for _, _, h in pieces]])


def ngram_buckets(
    texts: pa.Array | Sequence[str | None] | SliceTokens,
    num_buckets: int,
    ngram_range: tuple[int, int] = (1, 2),
    lowercase: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """(text index, bucket in ``[0, num_buckets)``) of every n-gram of every text, in one pass:
    callers with many texts give it the slices of :func:`map_chunks` (or their tokens)."""
    parents, hashes = _tokens_of(texts, lowercase)
    rows, buckets = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    low, high = ngram_range
    for size in range(low, high + 1):
        count = len(hashes) - size + 1
        if count <= 0:
            break
        # The n-gram starting at token i is real when its first and last tokens share a text.
        inside = parents[:count] == parents[size - 1 :]
        keys = _ngram_keys([hashes[offset : offset + count] for offset in range(size)])
        rows.append(parents[:count][inside])
        buckets.append((keys[inside] % np.uint64(num_buckets)).astype(np.int64))
    return np.concatenate(rows), np.concatenate(buckets)


def window_keys(texts: pa.Array | Sequence[str | None] | SliceTokens, n: int, lowercase: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(text index, 64-bit key) of every run of ``n`` consecutive tokens of every text.

    For long n-grams (decontamination's 13): a key is the polynomial of the run's token hashes,
    read off one prefix sum as :func:`_substring_hashes` reads bytes, then mixed. Its cost does not
    grow with ``n``, where :func:`ngram_buckets` mixes every n-gram ``n - 1`` times."""
    parents, hashes = _tokens_of(texts, lowercase)
    count = len(hashes) - n + 1
    if count <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.uint64)
    powers, inverse = _power_tables(len(hashes))
    prefix = np.zeros(len(hashes) + 1, np.uint64)
    np.cumsum(hashes * powers, out=prefix[1:])
    keys = _mix((prefix[n:] - prefix[:count]) * inverse[:count] + np.uint64(n))
    inside = parents[:count] == parents[n - 1 :]  # first and last token in the same text
    return parents[:count][inside], keys[inside]


def distinct_counts(rows: np.ndarray, buckets: np.ndarray, num_buckets: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each (text, bucket) pair once with its count, sorted by text then bucket (CSR order).

    One plain sort of ``text * num_buckets + bucket`` (numpy's SIMD quicksort: ~20x faster here
    than a hash table or scipy's per-row index sort)."""
    keys = np.sort(rows * num_buckets + buckets)
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else np.zeros(0, np.int64)
    counts = np.diff(np.r_[starts, len(keys)])
    keys = keys[starts]
    return keys // num_buckets, keys % num_buckets, counts


def map_chunks(
    function: Callable,
    texts: pa.Array | Sequence[str | None] | Tokenized,
    threads: int | None = None,
    size: int = 500,
    max_bytes: int = 1 << 20,
) -> list:
    """``function`` of consecutive slices of the texts, in order, on ``threads`` threads.

    A slice holds at most ``size`` texts and about ``max_bytes`` of text (one longer text is a
    slice alone): the featurisers' per-byte and per-token arrays then stay a few MB, which is
    ~1.5x faster than large slices, whose fresh arrays are paid for in page faults. Arrow's string
    kernels and numpy release the GIL, so threads share the cores. ``threads=None``: :func:`dataselect.threads.available`.
    :class:`Tokenized` texts: ``function`` of each slice's tokens.
    """
    threads = max(1, threads or available())
    if isinstance(texts, Tokenized):
        return _map_slices(function, texts.slices, threads)
    if isinstance(texts, (pa.Array, pa.ChunkedArray)):
        lengths = pc.binary_length(pc.fill_null(texts, "")).to_numpy(zero_copy_only=False)
    else:
        lengths = np.fromiter((len(text or "") for text in texts), np.int64, len(texts))
    ends = np.cumsum(lengths, dtype=np.int64)
    by_bytes = np.searchsorted(ends, np.arange(max_bytes, ends[-1] if len(ends) else 0, max_bytes), side="right")
    cuts = np.union1d(np.arange(0, len(texts), size), by_bytes[by_bytes < len(texts)]).tolist()
    return _map_slices(function, [texts[start:stop] for start, stop in zip(cuts, cuts[1:] + [len(texts)])], threads)


def _map_slices(function: Callable, slices: list, threads: int) -> list:
    if threads == 1 or len(slices) <= 1:
        return [function(piece) for piece in slices]
    with ThreadPoolExecutor(min(threads, len(slices))) as pool:
        return list(pool.map(function, slices))


def hashed_counts(
    texts: pa.Array | Sequence[str | None] | Tokenized,
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


def smoothed_idf(counts: sp.csr_matrix) -> np.ndarray:
    """scikit-learn's smoothed idf per bucket: ``log((1 + n) / (1 + df)) + 1`` over the rows of ``counts``."""
    return _idf(np.bincount(counts.indices, minlength=counts.shape[1]), counts.shape[0])


def _idf(document_frequency: np.ndarray, n_texts: int) -> np.ndarray:
    return np.log((1.0 + n_texts) / (1.0 + document_frequency)) + 1.0


def hashed_tfidf(
    texts: pa.Array | Sequence[str | None] | Tokenized, num_buckets: int, threads: int | None = None, idf: np.ndarray | None = None
) -> sp.csr_matrix:
    """Word TF-IDF over hashed buckets: sublinear tf, smoothed idf over ``texts`` (or the given ``idf``,
    fitted on other texts: see :func:`hashed_idf`), unit rows, float32 (``TfidfVectorizer(sublinear_tf=True)``
    with hashed words instead of a vocabulary). A row depends on its own text and the idf alone.

    The slices' counts are kept as int32 and weighed one slice at a time into the float32 matrix,
    so a million texts never hold a float64 copy of every count, nor its weighting's temporaries."""
    return _hashed_tfidf(texts, num_buckets, threads, idf)[0]


def hashed_idf(
    texts: pa.Array | Sequence[str | None] | Tokenized, num_buckets: int, threads: int | None = None
) -> tuple[sp.csr_matrix, np.ndarray]:
    """:func:`hashed_tfidf` of ``texts`` and the idf it fitted on them, to weigh other texts alike."""
    return _hashed_tfidf(texts, num_buckets, threads, None)


def _hashed_tfidf(texts, num_buckets: int, threads: int | None, idf: np.ndarray | None) -> tuple[sp.csr_matrix, np.ndarray]:
    def counts_of(chunk) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
        rows, buckets, counts = distinct_counts(*ngram_buckets(chunk, num_buckets, (1, 1)), num_buckets)
        return len(chunk), np.bincount(rows, minlength=len(chunk)).astype(np.int32), buckets.astype(np.int32), counts.astype(np.int32)

    parts = map_chunks(counts_of, texts, threads)
    n_texts = sum(n for n, _, _, _ in parts)
    document_frequency = np.zeros(num_buckets, np.int64)
    for _, _, buckets, _ in parts:
        document_frequency += np.bincount(buckets, minlength=num_buckets)
    if idf is None:
        idf = _idf(document_frequency, n_texts)
    elif idf.shape != (num_buckets,):
        raise ValueError(f"an idf of {idf.shape} buckets for {num_buckets}")
    nonzeros = int(document_frequency.sum())
    data, indices, indptr = np.empty(nonzeros, np.float32), np.empty(nonzeros, np.int32), np.zeros(n_texts + 1, np.int64)
    at = first = 0
    for i, (n, per_text, buckets, counts) in enumerate(parts):
        parts[i] = None
        rows = np.repeat(np.arange(n), per_text)
        weights = (1.0 + np.log(counts)) * idf[buckets]
        norms = np.sqrt(np.bincount(rows, weights**2, minlength=n))
        weights /= np.maximum(norms, 1e-12)[rows]
        stop = at + len(weights)
        data[at:stop], indices[at:stop] = weights, buckets
        indptr[first + 1 : first + n + 1] = at + np.cumsum(per_text)
        at, first = stop, first + n
    return sp.csr_matrix((data, indices, indptr), shape=(n_texts, num_buckets)), idf


def bucket_totals(
    texts: pa.Array | Sequence[str | None] | Tokenized,
    num_buckets: int,
    ngram_range: tuple[int, int] = (1, 2),
    lowercase: bool = True,
    threads: int | None = None,
) -> np.ndarray:
    """Summed n-gram counts per bucket over all texts (``hashed_counts(...).sum(axis=0)``)."""

    def totals_of(chunk) -> np.ndarray:
        return np.bincount(ngram_buckets(chunk, num_buckets, ngram_range, lowercase)[1], minlength=num_buckets).astype(np.float64)

    return np.sum(map_chunks(totals_of, texts, threads), axis=0) if len(texts) else np.zeros(num_buckets)
