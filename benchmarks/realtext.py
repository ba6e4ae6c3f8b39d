"""Seeded real-text pools of any size for the scale benchmarks (``benchmarks/perf.py --pool realtext``).

The synthetic pools of :mod:`benchmarks.synthetic` draw from a closed vocabulary that suits the
static embedder. These pools keep what users' text has: the vocabulary, lengths, punctuation and
Unicode of the 20 Newsgroups messages and the multi-domain Amazon reviews under ``../shared/data``.

Each record splices two real source texts (a leading span of one, a trailing span of another,
so no two records share a whole source) and then applies a few seeded word-level edits: delete a
word, repeat one, swap two neighbours, or put in a word drawn from the sources' own words. Record
``i`` depends only on ``(seed, i)``, so a pool of 1M starts with the pool of 100k.

Target: ``sci.*`` newsgroup messages. The reference is 200 sci.* test messages and the evaluation
set the other sci.* test messages, both left unedited; pool records come from every other source
text, so nothing in the evaluation set is also in the pool.
"""

from __future__ import annotations

import gzip
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
NEWSGROUPS = Path(os.environ.get("DATASELECT_NEWSGROUPS", SHARED / "20newsgroups"))
AMAZON = Path(os.environ.get("DATASELECT_AMAZON", SHARED / "amazon-multidomain"))


@dataclass
class RealTextConfig:
    n_records: int = 100_000
    records_per_shard: int = 10_000
    edits_per_record: int = 6
    reference_size: int = 200
    seed: int = 0


def _read_jsonl_gz(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def load_sources() -> tuple[list[dict], list[dict], list[dict]]:
    """(pool sources, reference, evaluation): every real text of both corpora, split as the docstring says."""
    newsgroups = [r for path in sorted(NEWSGROUPS.glob("*.jsonl.gz")) for r in _read_jsonl_gz(path)]
    amazon = [r for path in sorted(AMAZON.glob("*.jsonl.gz")) for r in _read_jsonl_gz(path)]
    if not newsgroups or not amazon:
        raise FileNotFoundError(f"real-text sources missing: need {NEWSGROUPS}/*.jsonl.gz and {AMAZON}/*.jsonl.gz")
    target_test = sorted((r for r in newsgroups if r["split"] == "test" and r["label"].startswith("sci.")), key=lambda r: r["id"])
    order = np.random.default_rng(0).permutation(len(target_test))
    reference = [target_test[i] for i in order[:200]]
    evaluation = [target_test[i] for i in order[200:]]
    held_out = {r["id"] for r in target_test}
    sources = [r for r in newsgroups if r["id"] not in held_out and r["text"].strip()]
    sources += [r for r in amazon if r["text"].strip()]
    return sources, reference, evaluation


class RealTextPool:
    """Record ``i`` of the pool, generated from ``(seed, i)`` alone."""

    def __init__(self, config: RealTextConfig, sources: list[dict]):
        self.config = config
        self.words = [r["text"].split(" ") for r in sources]
        self.labels = [r["label"] for r in sources]
        self.vocabulary = np.array(
            sorted({w for words in self.words[:: max(1, len(self.words) // 2000)] for w in words if w}), dtype=object
        )

    def record(self, index: int) -> dict:
        rng = np.random.default_rng([self.config.seed, index])
        first, second = rng.integers(len(self.words), size=2)
        head, tail = self.words[first], self.words[second]
        words = head[: max(1, int(len(head) * rng.uniform(0.4, 1.0)))] + tail[int(len(tail) * rng.uniform(0.5, 1.0)) :]
        for edit, position in zip(rng.integers(4, size=self.config.edits_per_record), rng.random(self.config.edits_per_record)):
            at = int(position * len(words))
            if edit == 0 and len(words) > 1:
                del words[at]
            elif edit == 1:
                words.insert(at, words[min(at, len(words) - 1)])
            elif edit == 2 and at + 1 < len(words):
                words[at], words[at + 1] = words[at + 1], words[at]
            else:
                words.insert(at, self.vocabulary[rng.integers(len(self.vocabulary))])
        return {"id": f"rt-{index:08d}", "text": " ".join(words), "label": self.labels[first]}


def _write_jsonl(path: Path, records) -> int:
    tmp = path.with_name(f".{path.name}.tmp")  # hidden while in flight: the landing listing skips it
    with tmp.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path.stat().st_size


def write_pool(directory: str | Path, config: RealTextConfig) -> dict:
    """``<dir>/landing/realtext-NNNNN.jsonl``, ``<dir>/reference.jsonl`` and ``<dir>/eval.jsonl``.

    Skips the work when ``<dir>/pool.json`` records the same config. Returns that description.
    """
    directory = Path(directory)
    marker = directory / "pool.json"
    n_shards = -(-config.n_records // config.records_per_shard)
    keys = [f"realtext-{k:05d}" for k in range(n_shards)]
    if marker.exists():
        description = json.loads(marker.read_text())
        if description["config"] == asdict(config) and all((directory / "landing" / f"{k}.jsonl").exists() for k in keys):
            return description
    landing = directory / "landing"
    landing.mkdir(parents=True, exist_ok=True)
    for stale in landing.glob("*.jsonl"):
        stale.unlink()
    sources, reference, evaluation = load_sources()
    pool = RealTextPool(config, sources)
    total_bytes = 0
    for shard, key in enumerate(keys):
        start = shard * config.records_per_shard
        stop = min(start + config.records_per_shard, config.n_records)
        total_bytes += _write_jsonl(landing / f"{key}.jsonl", (pool.record(i) for i in range(start, stop)))
    _write_jsonl(directory / "reference.jsonl", ({"id": r["id"], "text": r["text"]} for r in reference[: config.reference_size]))
    _write_jsonl(directory / "eval.jsonl", ({"id": r["id"], "text": r["text"], "label": r["label"]} for r in evaluation))
    description = {
        "config": asdict(config),
        "shards": keys,
        "records": config.n_records,
        "bytes": total_bytes,
        "bytes_per_record": round(total_bytes / max(config.n_records, 1), 1),
    }
    marker.write_text(json.dumps(description, indent=2))
    return description
