"""Decontamination: pool records that share a word n-gram with the evaluation set never train.

Exact copies are caught by id and content hash (the ``evaluation_set`` check); a lightly edited
copy (a changed word, a new signature, re-wrapped lines) is not. Like datatrove's n-gram
decontamination and the GPT-3 paper's (Brown et al. 2020), overlap is measured in long word
n-grams (13 by default), which rarely repeat by chance; a pool record is contaminated when it
holds a share of some evaluation record's n-grams (GPT-3 reports one shared n-gram flags too
much boilerplate). Tokens are lower-cased words and punctuation runs
(:data:`dataselect.ngrams.TOKEN_PATTERN`), hashed without building n-gram strings.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from dataselect.ngrams import Tokenized, map_chunks, window_keys

NAME = "decontamination"  # decided_by of the records it rejects
DEFAULT_NGRAM = 13
# A share of an evaluation record's n-grams, not a single one: mail and web text repeat long
# boilerplate (organisation headers, signatures) that one shared 13-gram would flag.
DEFAULT_MIN_OVERLAP = 0.2


def ngram_keys(texts: Sequence[str | None], n: int = DEFAULT_NGRAM) -> tuple[np.ndarray, np.ndarray]:
    """(text index, n-gram key) of every word n-gram of every text."""
    return _per_text(map_chunks(lambda piece: _keys_of(piece, n), list(texts)))


def _keys_of(texts: Sequence[str | None], n: int) -> tuple[int, np.ndarray, np.ndarray]:
    rows, keys = window_keys(texts, n)
    return len(texts), rows, (keys >> np.uint64(1)).view(np.int64)  # int64 keys: numpy's and pandas' fast paths


def _per_text(pieces: list[tuple[int, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated (text index, value) of :func:`map_chunks` pieces ``(texts in the piece, text
    index in the piece, value)``, the indices offset to the whole sequence's."""
    firsts = np.cumsum([0] + [size for size, _, _ in pieces[:-1]])
    rows = [rows + first for first, (_, rows, _) in zip(firsts, pieces)]
    return np.concatenate([np.zeros(0, np.int64), *rows]), np.concatenate([np.zeros(0, np.int64), *[v for _, _, v in pieces]])


def contamination(
    pool_texts: pa.Array | Sequence[str | None],
    eval_ids: Sequence[str],
    eval_texts: Sequence[str | None],
    n: int = DEFAULT_NGRAM,
    min_overlap: float = DEFAULT_MIN_OVERLAP,
) -> dict[str, np.ndarray]:
    """Per pool record: ``keep`` (False when it holds at least ``min_overlap`` of some evaluation
    record's distinct word n-grams), ``reason`` naming the evaluation record it overlaps most, and
    ``overlap`` (that largest share, 0 when none)."""
    return contamination_of_parts([pool_texts], eval_ids, eval_texts, n, min_overlap)


def contamination_of_parts(
    pool_parts: Iterable[pa.Array | Sequence[str | None]],
    eval_ids: Sequence[str],
    eval_texts: Sequence[str | None],
    n: int = DEFAULT_NGRAM,
    min_overlap: float = DEFAULT_MIN_OVERLAP,
) -> dict[str, np.ndarray]:
    """:func:`contamination` of a pool given in consecutive parts (one shard's texts at a time, say),
    each read only when it is reached: a part's text is all that is held, and the evaluation set's
    n-grams are hashed once."""
    evaluation = EvaluationNgrams(eval_ids, eval_texts, n, min_overlap)
    found = [evaluation.contamination(part) for part in pool_parts] or [evaluation.contamination([])]
    return {name: np.concatenate([part[name] for part in found]) for name in found[0]}


class EvaluationNgrams:
    """The evaluation set's distinct word n-grams, looked up by each pool part's n-grams: a shard's
    texts, or their tokens (:meth:`dataselect.scorers.base.Batch.tokens`) when its scorers cut them."""

    def __init__(
        self, eval_ids: Sequence[str], eval_texts: Sequence[str | None], n: int = DEFAULT_NGRAM, min_overlap: float = DEFAULT_MIN_OVERLAP
    ):
        self.eval_ids, self.n, self.min_overlap = list(eval_ids), n, min_overlap
        eval_rows, eval_keys = ngram_keys(eval_texts, n)
        # Distinct n-grams per evaluation record; an n-gram in several records counts for the first.
        self.keys, first = np.unique(eval_keys, return_index=True)
        self.rows = eval_rows[first]
        self.per_eval = np.bincount(self.rows, minlength=len(eval_texts))
        # A hash lookup (a binary search per pool n-gram is 5x slower), chunk by chunk on the threads
        # that hash the n-grams: only the hits are kept, never the pool's tens of millions of keys.
        self.lookup = pd.Index(self.keys)
        self.lookup.get_indexer(self.keys[:1])  # builds the hash table before the threads share it

    def contamination(self, pool_texts: pa.Array | Tokenized | Sequence[str | None]) -> dict[str, np.ndarray]:
        size, n = len(pool_texts), self.n
        keep = np.ones(size, bool)
        reason = np.full(size, "", dtype=object)
        overlap = np.zeros(size)
        if size == 0 or len(self.keys) == 0:
            return {"keep": keep, "reason": reason, "overlap": overlap}

        def hits(piece) -> tuple[int, np.ndarray, np.ndarray]:
            size, rows, keys = _keys_of(piece, n)
            position = self.lookup.get_indexer(keys)
            found = position >= 0
            return size, rows[found], position[found]

        rows, positions = _per_text(map_chunks(hits, pool_texts if isinstance(pool_texts, (pa.Array, Tokenized)) else list(pool_texts)))
        pairs = np.unique(np.stack([rows, positions], axis=1), axis=0)  # distinct (pool record, n-gram)
        if len(pairs) == 0:
            return {"keep": keep, "reason": reason, "overlap": overlap}
        record_owner, shared = np.unique(np.stack([pairs[:, 0], self.rows[pairs[:, 1]]], axis=1), axis=0, return_counts=True)
        share = shared / self.per_eval[record_owner[:, 1]]
        best = np.lexsort((record_owner[:, 1], -share, record_owner[:, 0]))  # per record: largest share, then lowest eval row
        best = best[np.r_[True, record_owner[best, 0][1:] != record_owner[best, 0][:-1]]]
        overlap[record_owner[best, 0]] = share[best]
        for index in best[share[best] >= self.min_overlap].tolist():
            record, owner = record_owner[index]
            keep[record] = False
            reason[record] = (
                f"holds {shared[index]} of the {self.per_eval[owner]} word {n}-grams of evaluation record "
                f"{self.eval_ids[owner]} ({share[index]:.0%})"
            )
        return {"keep": keep, "reason": reason, "overlap": overlap}
