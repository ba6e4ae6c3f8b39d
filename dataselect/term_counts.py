"""Word n-gram counts equal to scikit-learn's ``CountVectorizer``, computed with Arrow and numpy.

The report's evaluation recipe fits TF-IDF on every arm from the pool's term counts. At 100k
real-text records ``CountVectorizer(ngram_range=(1, 2), min_df=2)`` spends 50 s on one core,
nearly all of it in its per-token Python loop. Here the same matrix (same columns in the same
alphabetical order, same counts) comes from a few vectorised passes:

- tokens: ``CountVectorizer``'s default ``(?u)\\b\\w\\w+\\b`` on lower-cased text is every maximal
  run of word characters (``[\\pL\\pN_]``, as Python's ``\\w``) of length >= 2: all-ASCII texts
  are cut on their bytes by numpy, others split at the runs of other characters with Arrow's RE2
  kernels, on all cores;
- terms: a word's id is its index in the Arrow dictionary of the pool's words, an n-gram's id
  the factorised pair (id of its first n-1 words, id of its last word), so no n-gram string is
  built before the vocabulary is known;
- counts: one sort of ``(text, term rank)`` keys gives each text's distinct terms with counts
  in CSR order; terms seen in fewer than ``min_df`` texts are dropped afterwards.

Memory: no array of every token's string is made (each slice's tokens are dictionary-encoded
where they are cut), the n-gram ids are found in parts of ``_PART_TOKENS`` positions, and the
matrix is filled part by part from the sorted pairs, freeing each; at a million real-text
records counting peaked at 14 GB before these, for a 2.8 GB matrix.

Tests compare the two on tricky strings and on the real corpora.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from dataselect.ngrams import _as_array, _string_buffers, map_chunks
from dataselect.threads import available

# Texts as the callers hold them: Arrow arrays, a pandas column (pandas' strings are Arrow-backed
# since 3.0, so no Python string is made), or Python strings.
Texts = pa.Array | pa.ChunkedArray | pd.Series | Sequence[str | None]

_SEPARATORS = r"[^\pL\pN_]+"  # anything that is not a word character
_ASCII_WORD = np.array([bool(re.fullmatch(r"\w", chr(b))) for b in range(128)] + [False] * 128)  # \w, byte by byte
_SLICE_TEXTS = 2000  # texts per tokenising slice (with at most 4 MB of text)
# Token positions per part of the n-gram numbering: bounds its temporaries (~2 GB a part) at a
# million records, and leaves a pool of 100k real-text records (35M tokens) in one part.
_PART_TOKENS = 1 << 26
_DISTINCT_TOKENS = 1 << 23  # token positions per part of the pair counting, at most (a few hundred MB of keys)


class _Pairs(NamedTuple):
    """Distinct (text, term rank) pairs of the texts ``first:first + len(per_text)``, sorted by text then rank."""

    first: int
    per_text: np.ndarray  # int32: pairs of each text
    ranks: np.ndarray  # int32
    counts: np.ndarray  # int32: occurrences of the term in the text


def _lower(texts: pa.Array) -> pa.Array:
    """``str.lower`` of every text: by Arrow when all are ASCII, else by Python itself (Arrow's
    simple case mapping differs on a final sigma or a dotted capital I)."""
    if pc.all(pc.string_is_ascii(texts)).as_py() is not False:
        return pc.ascii_lower(texts)
    return pa.array([text.lower() for text in texts.to_pylist()], pa.string())


def _prepared(texts: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One slice as plain strings, nulls as empty ones. Null and large-string handling per slice,
    so a large pool's array is never copied whole."""
    texts = _as_array(texts)
    if texts.type != pa.string():
        # Rebased by the concatenation: a cast slice's offsets need not start at 0, and Arrow's
        # ascii_lower (pyarrow 26) then lower-cases the wrong bytes.
        texts = pa.concat_arrays([texts.cast(pa.string())])
    return pc.fill_null(texts, "")


def _slice_tokens(texts: pa.Array | pa.ChunkedArray) -> tuple[int, np.ndarray, pa.Array]:
    texts = _prepared(texts)
    lists = pc.split_pattern_regex(_lower(texts), _SEPARATORS)
    tokens = pc.list_flatten(lists)
    long_enough = pc.greater_equal(pc.utf8_length(tokens), 2)
    parents = pc.list_parent_indices(lists).filter(long_enough).to_numpy(zero_copy_only=False).astype(np.int32)
    return len(texts), parents, tokens.filter(long_enough)


def _regex_encoded(texts: pa.Array) -> tuple[np.ndarray, pa.Array, np.ndarray]:
    """(text index, words, word index) of every token, by Arrow's RE2 kernels: any text."""
    _, parents, tokens = _slice_tokens(texts)
    encoded = tokens.dictionary_encode()
    return parents, encoded.dictionary, encoded.indices.to_numpy(zero_copy_only=False).astype(np.int32)


def _ascii_encoded(texts: pa.Array) -> tuple[np.ndarray, pa.Array, np.ndarray]:
    """:func:`_regex_encoded` of all-ASCII texts, found on their bytes (3x faster than RE2 at 100k
    real-text records): a token is a run of at least two word bytes. The lower-cased texts' own
    buffer, cut at every token's start and end, is one string array (the tokens at odd positions,
    what lies between them at even ones), which Arrow dictionary-encodes without copying a token."""
    data, offsets = _string_buffers(pc.ascii_lower(texts))
    word = _ASCII_WORD[data]
    boundary = np.ones(len(data) + 1, bool)
    boundary[1:-1] = word[1:] != word[:-1]
    boundary[offsets] = True
    starts = np.flatnonzero(boundary[:-1] & word)
    ends = np.flatnonzero(boundary[1:] & word) + 1
    long_enough = ends - starts >= 2
    starts, ends = starts[long_enough], ends[long_enough]
    parents = (np.searchsorted(offsets, starts, side="right") - 1).astype(np.int32)
    cuts = np.empty(2 * len(starts) + 2, np.int32)
    cuts[0], cuts[-1] = 0, len(data)
    cuts[1:-1:2], cuts[2:-1:2] = starts, ends
    encoded = pa.StringArray.from_buffers(len(cuts) - 1, pa.py_buffer(cuts), pa.py_buffer(data)).dictionary_encode()
    indices = encoded.indices.to_numpy(zero_copy_only=False)[1::2]
    used = np.zeros(len(encoded.dictionary), bool)  # the text between tokens is no word
    used[indices] = True
    return parents, encoded.dictionary.filter(pa.array(used)), (np.cumsum(used) - 1).astype(np.int32)[indices]


def _slice_encoded(texts: pa.Array | pa.ChunkedArray) -> tuple[int, np.ndarray, pa.Array, np.ndarray]:
    """(number of texts, text index, words, word index) of every token of one slice: its ASCII texts
    on their bytes, the others by RE2, merged back into text order."""
    texts = _prepared(texts)
    ascii = pc.string_is_ascii(texts).to_numpy(zero_copy_only=False)
    if ascii.all() or not ascii.any():
        return len(texts), *(_ascii_encoded if ascii.all() else _regex_encoded)(texts)
    rows = [np.flatnonzero(ascii), np.flatnonzero(~ascii)]
    found = [encoded(texts.take(pa.array(where))) for where, encoded in zip(rows, (_ascii_encoded, _regex_encoded))]
    both = pa.concat_arrays([words for _, words, _ in found]).dictionary_encode()
    ids_of = both.indices.to_numpy(zero_copy_only=False).astype(np.int32)
    first_word = len(found[0][1])
    parents = np.concatenate([where[local] for where, (local, _, _) in zip(rows, found)]).astype(np.int32)
    ids = np.concatenate([ids_of[:first_word][found[0][2]], ids_of[first_word:][found[1][2]]])
    order = np.argsort(parents, kind="stable")  # each text's tokens lie in one part, in order
    return len(texts), parents[order], both.dictionary, ids[order]


def tokenize(texts: Texts, threads: int | None = None) -> tuple[np.ndarray, pa.Array]:
    """(text index, token) of every ``CountVectorizer`` token of the lower-cased texts, in text order."""
    pieces = map_chunks(_slice_tokens, _as_strings(texts), threads, size=_SLICE_TEXTS, max_bytes=4 << 20)
    firsts = np.cumsum([0] + [n for n, _, _ in pieces[:-1]])
    parents = np.concatenate([np.zeros(0, np.int32), *[p + np.int32(first) for first, (_, p, _) in zip(firsts, pieces)]])
    tokens = pa.concat_arrays([t for _, _, t in pieces]) if pieces else pa.array([], pa.string())
    return parents, tokens


def _as_strings(texts: Texts) -> pa.Array | pa.ChunkedArray:
    """Arrow texts as they are, a pandas column as its Arrow array (without a copy for Arrow-backed strings), others converted."""
    if isinstance(texts, (pa.Array, pa.ChunkedArray)):
        return texts
    if isinstance(texts, pd.Series):
        array = pa.array(texts.array, from_pandas=True)
        # An empty or all-missing column may hold no strings at all (float64 NaN).
        return array if pa.types.is_string(array.type) or pa.types.is_large_string(array.type) else array.cast(pa.string())
    return pa.array(list(texts), pa.string())


def _encoded_tokens(texts: Texts, threads: int) -> tuple[np.ndarray, np.ndarray, pa.Array]:
    """(text index, word id) of every token, both int32, and the words by id. Each slice encodes its
    own tokens; one encode of the slices' dictionaries then numbers the words of all."""
    pieces = map_chunks(_slice_encoded, _as_strings(texts), threads, size=_SLICE_TEXTS, max_bytes=4 << 20)
    both = pa.concat_arrays([dictionary for _, _, dictionary, _ in pieces]) if pieces else pa.array([], pa.string())
    numbered = both.dictionary_encode()
    ids_of = numbered.indices.to_numpy(zero_copy_only=False).astype(np.int32)
    total = sum(len(parents) for _, parents, _, _ in pieces)
    parents, words = np.empty(total, np.int32), np.empty(total, np.int32)
    at = first_text = first_word = 0
    for i, (n, local_parents, dictionary, local_ids) in enumerate(pieces):
        pieces[i] = None  # freed as the whole-pool arrays fill
        stop = at + len(local_parents)
        parents[at:stop] = local_parents + np.int32(first_text)
        words[at:stop] = ids_of[first_word : first_word + len(dictionary)][local_ids]
        at, first_text, first_word = stop, first_text + n, first_word + len(dictionary)
    return parents, words, numbered.dictionary


class TermCounts:
    """Fit on pool texts, then :meth:`transform` other texts onto the same columns.

    ``matrix`` (n texts x n terms, float32 CSR with sorted indices) and ``feature_names`` are
    what ``CountVectorizer(ngram_range=ngram_range, min_df=min_df).fit_transform`` gives.
    """

    def __init__(self, texts: Texts, ngram_range: tuple[int, int] = (1, 2), min_df: int = 2):
        low, high = (int(n) for n in ngram_range)
        if not 1 <= low <= high:
            raise ValueError(f"ngram_range must satisfy 1 <= low <= high, not {ngram_range}")
        self.ngram_range = (low, high)
        self.threads = available()
        parents, words, self._words = _encoded_tokens(texts, self.threads)
        # Per order, the distinct n-grams as (id of the first n-1 words) * n_words + last word.
        self._codes: list[np.ndarray] = [np.arange(len(self._words), dtype=np.int64)]
        ids = [words]
        for size in range(2, high + 1):
            ids.append(self._number_ngrams(parents, words, ids[-1], size))
        # Every term of the wanted orders, ranked alphabetically (CountVectorizer's column order).
        names = [self._names(size) for size in range(low, high + 1)]
        self._first_rank = np.cumsum([0] + [len(n) for n in names])
        all_names = pa.concat_arrays(names)
        order = pc.sort_indices(all_names).to_numpy()
        self._rank = np.empty(len(all_names), np.int32)
        self._rank[order] = np.arange(len(all_names), dtype=np.int32)
        parts = self._distinct(parents, ids[low - 1 :], len(texts))
        del parents, ids, words
        document_frequency = np.zeros(len(all_names), np.int64)
        for pairs in parts:
            document_frequency += np.bincount(pairs.ranks, minlength=len(all_names))
        kept = document_frequency >= min_df
        self._column = np.where(kept, np.cumsum(kept) - 1, -1).astype(np.int32)
        self.feature_names = all_names.take(pa.array(order[kept]))
        self.matrix = self._csr(parts, len(texts))

    def transform(self, texts: Texts) -> sp.csr_matrix:
        """Counts of the fitted columns in other texts (``CountVectorizer.transform``)."""
        parents, tokens = tokenize(texts, self.threads)
        words = pc.index_in(tokens, value_set=self._words).fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int32)
        ids = [words]
        for size in range(2, self.ngram_range[1] + 1):
            inside, codes = self._extend(parents, words, ids[-1], size)
            ids.append(np.where(inside, pd.Index(self._codes[size - 1]).get_indexer(codes), -1).astype(np.int32))
        return self._csr(self._distinct(parents, ids[self.ngram_range[0] - 1 :], len(texts)), len(texts))

    def _extend(
        self, parents: np.ndarray, words: np.ndarray, shorter: np.ndarray, size: int, start: int = 0, stop: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Codes of the ``size``-grams at the token positions ``start:stop`` (default: all) from the
        (size-1)-gram ids there: real when that shorter n-gram is (-1 marks none) and the last word is
        known and in the same text."""
        stop = max(len(words) - size + 1, 0) if stop is None else stop
        first, last = shorter[start:stop], words[start + size - 1 : stop + size - 1]
        inside = (first >= 0) & (last >= 0) & (parents[start:stop] == parents[start + size - 1 : stop + size - 1])
        return inside, np.where(inside, first.astype(np.int64) * len(self._words) + last, -1)

    def _number_ngrams(self, parents: np.ndarray, words: np.ndarray, shorter: np.ndarray, size: int) -> np.ndarray:
        """The id of the ``size``-gram at each token position (-1: none), numbering the distinct ones
        in order of first appearance; appends their codes to ``self._codes``. Each part numbers its own
        n-grams; numbering the parts' distinct codes in part order then gives every one its id."""
        positions = max(len(words) - size + 1, 0)
        ids = np.full(positions, -1, np.int32)
        local_codes, offset = [], 0
        for start in range(0, positions, _PART_TOKENS):
            stop = min(start + _PART_TOKENS, positions)
            inside, codes = self._extend(parents, words, shorter, size, start, stop)
            found, uniques = pd.factorize(codes[inside])
            ids[start:stop][inside] = found.astype(np.int32) + np.int32(offset)  # an index into local_codes' concatenation
            local_codes.append(np.asarray(uniques, dtype=np.int64))
            offset += len(uniques)
            del inside, codes, found
        if len(local_codes) <= 1:  # one part: its numbering is the numbering
            self._codes.append(local_codes[0] if local_codes else np.zeros(0, np.int64))
            return ids
        found, uniques = pd.factorize(np.concatenate(local_codes))
        self._codes.append(np.asarray(uniques, dtype=np.int64))
        found = found.astype(np.int32)
        for start in range(0, positions, _PART_TOKENS):
            part = ids[start : start + _PART_TOKENS]
            inside = part >= 0
            part[inside] = found[part[inside]]
        return ids

    def _names(self, size: int) -> pa.Array:
        """The strings of the distinct n-grams of one order: words joined by spaces."""
        if size == 1:
            return self._words
        codes = self._codes[size - 1]
        shorter = self._names(size - 1).take(pa.array(codes // len(self._words)))
        return pc.binary_join_element_wise(shorter, self._words.take(pa.array(codes % len(self._words))), " ")

    def _distinct(self, parents: np.ndarray, ids: list[np.ndarray], n_texts: int) -> list[_Pairs]:
        """Each (text, term rank) pair once with its count, sorted by text then rank, in parts of
        consecutive texts.

        ``ids[j]`` holds the id of the n-gram of the j-th wanted order at each token position (-1:
        none). Keys ``text * n_terms + rank`` sort into CSR order. The texts are cut into ranges,
        a few per thread (numpy's sort releases the GIL) and more in a large pool, each reduced to
        its distinct pairs at once, so the keys of the whole pool never exist together."""
        n_terms = max(len(self._rank), 1)
        n_parts = max(4 * self.threads, -(-len(parents) // _DISTINCT_TOKENS))
        cuts = np.unique(np.linspace(0, n_texts, n_parts + 1).round().astype(np.int64))
        bounds = [np.searchsorted(parents[: len(i)], cuts) for i in ids]

        def distinct_in(part: int) -> _Pairs:
            keys = []
            for order, (found, cut_at) in enumerate(zip(ids, bounds)):
                lo, hi = cut_at[part], cut_at[part + 1]
                found = found[lo:hi]
                present = found >= 0
                rank = self._rank[self._first_rank[order] + found[present]]
                keys.append(parents[lo:hi][present].astype(np.int64) * n_terms + rank)
            keys = np.concatenate([np.zeros(0, np.int64), *keys])
            keys.sort()
            starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else np.zeros(0, np.int64)
            counts = np.diff(np.r_[starts, len(keys)]).astype(np.int32)
            keys = keys[starts]
            first, texts = int(cuts[part]), int(cuts[part + 1] - cuts[part])
            per_text = np.bincount(keys // n_terms - first, minlength=texts).astype(np.int32)
            return _Pairs(first, per_text, (keys % n_terms).astype(np.int32), counts)

        with ThreadPoolExecutor(self.threads) as pool:
            return list(pool.map(distinct_in, range(len(cuts) - 1)))

    def _csr(self, parts: list[_Pairs], n_texts: int) -> sp.csr_matrix:
        """:meth:`_distinct`'s parts -> CSR over the kept columns (column order = rank order), each
        part freed once copied in (``np.empty`` pages are only paid for when written)."""
        is_kept = self._column >= 0
        nonzeros = sum(int(np.count_nonzero(is_kept[pairs.ranks])) for pairs in parts)
        indices, data = np.empty(nonzeros, np.int32), np.empty(nonzeros, np.float32)
        per_text = np.zeros(n_texts, np.int64)
        at = 0
        for i, pairs in enumerate(parts):
            parts[i] = None
            columns = self._column[pairs.ranks]
            kept = columns >= 0
            stop = at + int(np.count_nonzero(kept))
            indices[at:stop], data[at:stop] = columns[kept], pairs.counts[kept]
            kept_before = np.r_[0, np.cumsum(kept)]  # kept pairs before each pair: a text's is the difference at its ends
            ends = np.cumsum(pairs.per_text)
            per_text[pairs.first : pairs.first + len(ends)] = kept_before[ends] - kept_before[ends - pairs.per_text]
            at = stop
            del pairs, columns, kept, kept_before
        indptr = np.r_[0, np.cumsum(per_text)]
        return sp.csr_matrix((data, indices, indptr), shape=(n_texts, len(self.feature_names)))
