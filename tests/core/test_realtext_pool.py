"""The real-text scale pool: seeded, prefix-stable, made of the corpora's own text, and disjoint
from its evaluation set."""

from __future__ import annotations

import json

import pytest

from benchmarks import realtext


@pytest.fixture(scope="module")
def sources(newsgroups_dir):
    if not any(realtext.AMAZON.glob("*.jsonl.gz")):
        pytest.skip(f"Amazon multi-domain data not found at {realtext.AMAZON} (set DATASELECT_AMAZON)")
    return realtext.load_sources()


def test_records_depend_only_on_seed_and_index(sources):
    pool, _, _ = sources
    small = realtext.RealTextPool(realtext.RealTextConfig(n_records=100), pool)
    large = realtext.RealTextPool(realtext.RealTextConfig(n_records=10_000), pool)
    assert [small.record(i) for i in range(50)] == [large.record(i) for i in range(50)]
    other_seed = realtext.RealTextPool(realtext.RealTextConfig(seed=1), pool)
    assert other_seed.record(0)["text"] != small.record(0)["text"]


def test_records_are_edited_real_text(sources):
    pool, reference, evaluation = sources
    generator = realtext.RealTextPool(realtext.RealTextConfig(), pool)
    records = [generator.record(i) for i in range(300)]
    source_texts = {r["text"] for r in pool}
    assert not any(r["text"] in source_texts for r in records)  # every record is spliced and edited
    source_words = {w for r in pool for w in r["text"].split(" ")}
    words = [w for r in records for w in r["text"].split(" ")]
    assert sum(w in source_words for w in words) / len(words) > 0.99  # ... from the corpora's own words
    assert any(not generator.record(i)["text"].isascii() for i in range(3000))  # real Unicode survives
    assert len({r["label"] for r in records}) > 10  # newsgroups and sentiment labels both appear
    held_out = {r["id"] for r in reference} | {r["id"] for r in evaluation}
    assert not held_out & {r["id"] for r in pool} and len(reference) == 200 and len(evaluation) > 1000


def test_write_pool_shards_and_reuses_its_files(sources, tmp_path):
    config = realtext.RealTextConfig(n_records=250, records_per_shard=100)
    description = realtext.write_pool(tmp_path, config)
    assert description["shards"] == ["realtext-00000", "realtext-00001", "realtext-00002"]
    lines = (tmp_path / "landing" / "realtext-00002.jsonl").read_text().splitlines()
    assert len(lines) == 50 and json.loads(lines[-1])["id"] == "rt-00000249"
    stamp = (tmp_path / "landing" / "realtext-00000.jsonl").stat().st_mtime_ns
    assert realtext.write_pool(tmp_path, config) == description
    assert (tmp_path / "landing" / "realtext-00000.jsonl").stat().st_mtime_ns == stamp
