"""Exact and near-duplicate detection.

- :class:`ExactDuplicates`: records sharing a ``content_hash`` (sha1 of the dedup-normalised
  text, see :mod:`dataselect.normalize`) form a group; the first in (shard, row) order is kept.
- :class:`MinHashSignatures`: MinHash sketches (Broder 1997, "On the resemblance and
  containment of documents") of word 5-gram shingles, as in the deduplication of Gopher
  (Rae et al. 2021) and of "Deduplicating Training Data Makes Language Models Better"
  (Lee et al. 2022). The permutations are datasketch's ``affine32`` scheme (same seed, same
  ``a``, ``b``), so a row equals ``datasketch.MinHash(hashfunc=identity)`` fed our shingle hashes.
- :class:`NearDuplicates`: LSH banding of the signatures (Leskovec, Rajaraman & Ullman,
  "Mining of Massive Datasets", ch. 3) with the band/row split chosen by datasketch's
  ``MinHashLSH`` optimiser (weighted towards recall); banding itself is numpy (sorting band
  keys), which is faster than inserting per-record objects into ``MinHashLSH``. Candidate
  pairs are verified by estimated Jaccard and connected components (scipy) form the groups.

Keep rule (both dedup scorers): in every group the record that comes first in (shard, row)
order is kept, so adding later shards never changes which copy an earlier shard keeps.
``group`` is the batch row index of that kept representative (every record has one; a unique
record is its own group), so ``group == arange(n)`` exactly for the kept records.

Everything is vectorised with numpy/pandas/pyarrow: tokens, shingle hashes, permutations and
per-document minima are array operations; Python only loops over fixed-size chunks and bands.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from dataselect import ngrams
from dataselect import records as cols
from dataselect.scorers.base import Batch, Scorer

_U32 = np.uint32
_U64 = np.uint64


def keep_order(batch: Batch) -> np.ndarray:
    """Batch row indices sorted by (shard, row); positional order when those columns are absent."""
    names = batch.records.column_names
    if cols.SHARD in names and cols.ROW in names:
        shard = pd.factorize(batch.column(cols.SHARD), sort=True)[0]
        return np.lexsort((np.arange(len(batch)), batch.column(cols.ROW), shard))
    return np.arange(len(batch))


def _representatives(component: np.ndarray, order: np.ndarray) -> np.ndarray:
    """For each record, the batch index of the first record of its component in ``order``."""
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    first_rank = np.full(component.max() + 1 if len(component) else 0, len(order), dtype=np.int64)
    np.minimum.at(first_rank, component, rank)
    return order[first_rank[component]]


def _ids(batch: Batch) -> np.ndarray:
    if cols.ID in batch.records.column_names:
        return batch.column(cols.ID).astype(str)
    return np.arange(len(batch)).astype(str)


class ExactDuplicates(Scorer):
    """``group``, ``group_size``, ``is_duplicate``, ``keep``, ``reason`` from ``content_hash``."""

    name: ClassVar[str] = "exact_dup"
    kind: ClassVar[str] = "duplicates"
    stage: ClassVar[str] = "pool"

    @dataclass
    class Config:
        # Used only when the batch has no content_hash column: hash the text the way ingest does.
        hash_text_if_missing: bool = True

    def score(self, batch: Batch) -> dict[str, np.ndarray]:
        if cols.CONTENT_HASH in batch.records.column_names:
            hashes = batch.column(cols.CONTENT_HASH)
        elif self.config.hash_text_if_missing:
            from dataselect.normalize import content_hashes

            hashes = np.asarray(content_hashes(batch.texts), dtype=object)
        else:
            raise ValueError("ExactDuplicates needs a content_hash column")
        component = pd.factorize(hashes)[0].astype(np.int64)
        group = _representatives(component, keep_order(batch))
        group_size = np.bincount(component)[component] if len(component) else np.zeros(0, np.int64)
        keep = group == np.arange(len(batch))
        ids = _ids(batch)
        reason = np.full(len(batch), "", dtype=object)
        dropped = np.flatnonzero(~keep)
        reason[dropped] = [f"exact duplicate of {ids[g]}" for g in group[dropped]]
        return {
            "group": group.astype(np.int64),
            "group_size": group_size.astype(np.int64),
            "is_duplicate": group_size > 1,
            "keep": keep,
            "reason": reason,
        }


# --- MinHash -------------------------------------------------------------------------------


# MurmurHash3 finalisers (Appleby): fixed avalanching bijections, as datasketch uses.
def _fmix32(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> _U32(16))
    h = h * _U32(0x85EBCA6B)
    h = h ^ (h >> _U32(13))
    h = h * _U32(0xC2B2AE35)
    return h ^ (h >> _U32(16))


def _fmix64(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> _U64(33))
    h = h * _U64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> _U64(33))
    h = h * _U64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> _U64(33))


def shingle_hashes(texts: list[str] | pa.Array, shingle_size: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """32-bit hashes of lower-cased whitespace word ``shingle_size``-grams, and their text index.

    A text with fewer words than ``shingle_size`` is one shingle (all its words; an empty text
    hashes to a fixed value), so every text has at least one shingle. Shingles are hashed as
    ``fmix64(sum_k hash(word_{i+k}) * M_k)`` with distinct odd multipliers ``M_k``, which is
    order-sensitive and needs no string concatenation. Returned in text order.
    """
    texts = pa.array(texts, pa.string()) if not isinstance(texts, (pa.Array, pa.ChunkedArray)) else texts
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    n = len(texts)
    parents, word_hash = ngrams.token_hashes(texts, lowercase=True, pattern=ngrams.WHITESPACE_PATTERN)
    counts = np.bincount(parents, minlength=n)
    starts = np.r_[0, np.cumsum(counts)[:-1]] if n else np.zeros(0, np.int64)
    multipliers = np.random.default_rng(0x5EED).integers(0, 2**63, size=shingle_size, dtype=np.uint64) * _U64(2) + _U64(1)

    # Full shingles: windows of shingle_size tokens that stay inside one text.
    window_starts = np.arange(max(len(parents) - shingle_size + 1, 0))
    window_starts = window_starts[parents[window_starts] == parents[window_starts + shingle_size - 1]]
    shingle = np.zeros(len(window_starts), dtype=_U64)
    for k in range(shingle_size):
        shingle += word_hash[window_starts + k] * multipliers[k]
    shingle_parent = parents[window_starts]

    # Short texts: one shingle of all their (fewer than shingle_size) words.
    short = np.flatnonzero(counts < shingle_size)
    short_hash = np.zeros(len(short), dtype=_U64)
    for k in range(shingle_size - 1):
        present = counts[short] > k
        short_hash[present] += word_hash[starts[short[present]] + k] * multipliers[k]

    all_parents = np.r_[shingle_parent, short].astype(np.int64)
    all_hashes = np.r_[shingle, short_hash].astype(_U64)
    order = np.argsort(all_parents, kind="stable")
    hashed = _fmix64(all_hashes[order])
    return (hashed >> _U64(32)).astype(_U32), all_parents[order]


def minhash_permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's affine32 permutation parameters ``(a, b)`` for ``(num_perm, seed)``."""
    from datasketch import MinHash

    a, b = MinHash(num_perm=num_perm, seed=seed, scheme="affine32").permutations
    return np.asarray(a, dtype=_U32), np.asarray(b, dtype=_U32)


def minhash_signatures(
    hashes: np.ndarray, parents: np.ndarray, n: int, num_perm: int = 128, seed: int = 1, chunk: int = 65_536
) -> np.ndarray:
    """(n, num_perm) uint32 signatures: per text, the min over its shingles of ``a*fmix32(h)+b``.

    Computed like ``datasketch.MinHash.update_batch`` (uint32 wrap-around is the modulus), over
    chunks of shingles so memory stays at ``chunk * num_perm * 4`` bytes. ``parents`` must be
    sorted; a text without shingles keeps the empty value 2**32-1.
    """
    a, b = minhash_permutations(num_perm, seed)
    signatures = np.full((n, num_perm), np.iinfo(_U32).max, dtype=_U32)
    mixed = _fmix32(np.asarray(hashes, dtype=_U32))
    for lo in range(0, len(mixed), chunk):
        h, p = mixed[lo : lo + chunk], parents[lo : lo + chunk]
        # (num_perm, chunk) layout: reduceat along the contiguous axis is ~50x faster.
        permuted = np.multiply(a[:, None], h[None, :])
        permuted += b[:, None]
        seg = np.flatnonzero(np.r_[True, p[1:] != p[:-1]])
        rows = p[seg]
        # A text may straddle two chunks: minimum with what earlier chunks found.
        signatures[rows] = np.minimum(signatures[rows], np.minimum.reduceat(permuted, seg, axis=1).T)
    return signatures


class MinHashSignatures(Scorer):
    """Output ``signature``: (n, num_perm) uint32 MinHash of word 5-gram shingles."""

    name: ClassVar[str] = "minhash"
    kind: ClassVar[str] = "duplicates"
    stage: ClassVar[str] = "shard"

    @dataclass
    class Config:
        num_perm: int = 128  # estimate standard error <= 0.5/sqrt(128) = 0.044
        shingle_size: int = 5  # word 5-grams (Gopher, Lee et al. 2022)
        seed: int = 1  # datasketch's default permutation seed

    def score(self, batch: Batch) -> dict[str, np.ndarray]:
        texts = batch.records.column(cols.TEXT)
        hashes, parents = shingle_hashes(texts, self.config.shingle_size)
        signature = minhash_signatures(hashes, parents, len(batch), self.config.num_perm, self.config.seed)
        return {"signature": signature}


# --- LSH -----------------------------------------------------------------------------------


def signature_matrix(column: pa.Array | pa.ChunkedArray | np.ndarray) -> np.ndarray:
    """A (fixed-size) list column of signatures as a 2-D uint32 array."""
    if isinstance(column, np.ndarray) and column.ndim == 2:
        return column.astype(_U32, copy=False)
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if isinstance(column, (pa.FixedSizeListArray, pa.ListArray, pa.LargeListArray)):
        values = column.flatten().to_numpy(zero_copy_only=False).astype(_U32, copy=False)
        if isinstance(column, pa.FixedSizeListArray):
            width = column.type.list_size
        else:
            width = len(values) // len(column) if len(column) else 0
        return values.reshape(len(column), width)
    return np.stack([np.asarray(v, dtype=_U32) for v in column])


def lsh_parameters(threshold: float, num_perm: int, false_negative_weight: float = 0.9) -> tuple[int, int]:
    """(bands, rows) minimising weighted false-positive + false-negative areas (datasketch's optimiser).

    Candidates are verified by estimated Jaccard afterwards, so a false positive only costs a
    comparison while a false negative is a missed duplicate: hence the 0.9 weight on misses.
    (datasketch's default 0.5/0.5 gives 9 x 13 at 0.8, which finds a pair of similarity
    exactly 0.8 only 40% of the time; 0.9 gives 14 x 9, 87%.)
    """
    from datasketch import MinHashLSH

    weights = (1.0 - false_negative_weight, false_negative_weight)
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=weights)
    return int(lsh.b), int(lsh.r)


def candidate_pairs(signatures: np.ndarray, bands: int, rows: int, max_neighbours: int = 100) -> np.ndarray:
    """Unique (i, j), i < j, pairs that share at least one LSH band bucket.

    In a bucket sorted by record index, each record is paired with up to ``max_neighbours``
    following members: all pairs for buckets of up to ``max_neighbours + 1`` records, and still
    a connected chain for huge buckets (mass duplicates), which keeps the work linear.
    """
    n = len(signatures)
    multipliers = np.random.default_rng(0xBA4D).integers(0, 2**63, size=rows, dtype=np.uint64) * _U64(2) + _U64(1)
    pairs = []
    for band in range(bands):
        block = signatures[:, band * rows : (band + 1) * rows].astype(_U64)
        key = _fmix64((block * multipliers).sum(axis=1, dtype=_U64) + _U64(band))
        order = np.lexsort((np.arange(n), key))
        sorted_key = key[order]
        for offset in range(1, max_neighbours + 1):
            same = sorted_key[offset:] == sorted_key[:-offset]
            if not same.any():
                break
            left = order[:-offset][same]
            right = order[offset:][same]
            pairs.append(np.stack([np.minimum(left, right), np.maximum(left, right)], axis=1))
    if not pairs:
        return np.zeros((0, 2), dtype=np.int64)
    stacked = np.concatenate(pairs).astype(np.int64)
    return np.unique(stacked, axis=0)


def estimated_jaccard(signatures: np.ndarray, left: np.ndarray, right: np.ndarray, chunk: int = 1 << 16) -> np.ndarray:
    """Fraction of equal signature slots for each (left, right) pair."""
    out = np.empty(len(left), dtype=np.float64)
    for lo in range(0, len(left), chunk):
        sl = slice(lo, lo + chunk)
        out[sl] = (signatures[left[sl]] == signatures[right[sl]]).mean(axis=1)
    return out


class NearDuplicates(Scorer):
    """``group``, ``group_size``, ``is_duplicate``, ``jaccard``, ``keep``, ``reason`` from signatures."""

    name: ClassVar[str] = "near_dup"
    kind: ClassVar[str] = "duplicates"
    stage: ClassVar[str] = "pool"

    @dataclass
    class Config:
        threshold: float = 0.8  # estimated Jaccard of 5-gram shingle sets to call a pair duplicate
        num_perm: int = 128  # must match MinHashSignatures.num_perm
        signature_column: str = "minhash.signature"
        max_neighbours: int = 100  # per LSH bucket, see candidate_pairs
        false_negative_weight: float = 0.9  # LSH band/row choice, see lsh_parameters

    def score(self, batch: Batch) -> dict[str, np.ndarray]:
        n = len(batch)
        signatures = batch.stored_matrix(self.config.signature_column, _U32)  # None: the column is in memory
        if signatures is None:
            signatures = signature_matrix(batch.column_array(self.config.signature_column))
        if n and signatures.shape[1] != self.config.num_perm:
            raise ValueError(f"signatures have {signatures.shape[1]} permutations, config says {self.config.num_perm}")
        bands, rows = lsh_parameters(self.config.threshold, self.config.num_perm, self.config.false_negative_weight)
        pairs = candidate_pairs(signatures, bands, rows, self.config.max_neighbours)
        similar = estimated_jaccard(signatures, pairs[:, 0], pairs[:, 1]) >= self.config.threshold
        edges = pairs[similar]
        graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
        component = connected_components(graph, directed=False)[1].astype(np.int64) if n else np.zeros(0, np.int64)
        group = _representatives(component, keep_order(batch))
        group_size = np.bincount(component)[component] if n else np.zeros(0, np.int64)
        keep = group == np.arange(n)
        jaccard = estimated_jaccard(signatures, np.arange(n), group) if n else np.zeros(0)
        ids = _ids(batch)
        reason = np.full(n, "", dtype=object)
        dropped = np.flatnonzero(~keep)
        reason[dropped] = [f"near duplicate of {ids[g]} (jaccard {j:.2f})" for g, j in zip(group[dropped], jaccard[dropped])]
        return {
            "group": group.astype(np.int64),
            "group_size": group_size.astype(np.int64),
            "is_duplicate": group_size > 1,
            "jaccard": jaccard,
            "keep": keep,
            "reason": reason,
        }
