"""Corruption ground truth and the synthetic demo corpus."""

import base64
import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from dataselect.corruption import GROUND_TRUTH_COLUMNS, JUNK_KINDS, corrupt_pool
from dataselect.demo import TARGET_TOPICS, TOPICS, write_demo
from dataselect.ingest import list_landing_files, read_reference, read_shard
from dataselect.normalize import content_hash, content_hashes


def shingles(text: str, k: int = 5) -> set:
    words = text.split()
    return {tuple(words[i : i + k]) for i in range(max(1, len(words) - k + 1))}


def jaccard(a: str, b: str) -> float:
    sa, sb = shingles(a), shingles(b)
    return len(sa & sb) / len(sa | sb)


def synthetic_pool(n: int = 400, words_per_doc: int = 120) -> pd.DataFrame:
    rng = np.random.default_rng(123)
    vocabulary = np.array([f"w{i}" for i in range(3000)])
    texts = [" ".join(rng.choice(vocabulary, words_per_doc)) for _ in range(n)]
    return pd.DataFrame({"id": [f"p{i}" for i in range(n)], "text": texts, "label": [f"t{i % 4}" for i in range(n)]})


@pytest.fixture(scope="module")
def corrupted():
    pool = synthetic_pool()
    return pool, corrupt_pool(pool, seed=7)


def test_corrupt_pool_counts_ids_and_determinism(corrupted):
    pool, out = corrupted
    n = len(pool)
    assert out[["is_exact_dup", "is_near_dup", "is_flipped", "is_junk"]].sum().to_dict() == {
        "is_exact_dup": 40,
        "is_near_dup": 20,
        "is_flipped": 60,
        "is_junk": 12,
    }
    assert len(out) == n + 40 + 20 + 12
    assert out["id"].is_unique and set(pool["id"]) <= set(out["id"])
    assert set(GROUND_TRUTH_COLUMNS) <= set(out.columns)
    assert out.equals(corrupt_pool(pool, seed=7))
    assert not out.equals(corrupt_pool(pool, seed=8))
    # Shuffled: the originals are not simply first, in input order.
    assert out["id"].head(n).tolist() != pool["id"].tolist()
    # Originals keep their text; every copy points at an original.
    originals = out[out["id"].isin(pool["id"])].set_index("id")
    assert (originals["text"].loc[pool["id"]].to_numpy() == pool["text"].to_numpy()).all()
    copies = out[out["is_exact_dup"] | out["is_near_dup"]]
    assert copies["source_id"].isin(pool["id"]).all() and (copies["source_id"] != copies["id"]).all()


def test_duplicates_match_their_sources(corrupted):
    pool, out = corrupted
    source_text = dict(zip(pool["id"], pool["text"]))
    exact = out[out["is_exact_dup"]]
    assert all(content_hash(t) == content_hash(source_text[s]) for t, s in zip(exact["text"], exact["source_id"]))
    assert (exact["text"] != exact["source_id"].map(source_text)).any()  # some are reformatted, not verbatim
    near = out[out["is_near_dup"]]
    similarities = [jaccard(t, source_text[s]) for t, s in zip(near["text"], near["source_id"])]
    assert all(content_hash(t) != content_hash(source_text[s]) for t, s in zip(near["text"], near["source_id"]))
    assert min(similarities) > 0.75 and np.median(similarities) > 0.85
    word_changes = [abs(len(t.split()) - 120) for t in near["text"]]
    assert max(word_changes) <= 6  # at most 5% of 120 words deleted


def test_flips_and_junk(corrupted):
    pool, out = corrupted
    labels = set(pool["label"])
    flipped = out[out["is_flipped"]]
    assert (flipped["label"] != flipped["true_label"]).all() and flipped["label"].isin(labels).all()
    assert not flipped["is_junk"].any()
    unflipped = out[~out["is_flipped"] & ~out["is_junk"]]
    assert (unflipped["label"] == unflipped["true_label"]).all()
    # Roughly uniform over the other labels: each of the 3 alternatives gets a fair share.
    assert flipped.groupby("true_label")["label"].nunique().max() >= 2

    junk = out[out["is_junk"]]
    assert (junk["source_id"] == junk["id"]).all() and junk["true_label"].isna().all()
    texts = junk["text"].tolist()
    assert "" in texts and any(t and not t.strip() for t in texts)
    assert any(t.startswith("Lorem ipsum") for t in texts) and any("cookies" in t for t in texts)
    alphabet = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
    encoded = [t for t in texts if t and set(t.replace("\n", "")) <= alphabet]
    assert encoded and base64.b64decode("".join(encoded[0].split()), validate=True)


def test_corrupt_pool_near_dups_on_newsgroups(newsgroups_records):
    records = [r for r in newsgroups_records if r["split"] == "train" and len(r["text"].split()) >= 100][:600]
    pool = pd.DataFrame(records)[["id", "text", "label"]]
    out = corrupt_pool(pool, seed=0)
    source_text = dict(zip(pool["id"], pool["text"]))
    near = out[out["is_near_dup"]]
    similarities = [jaccard(t, source_text[s]) for t, s in zip(near["text"], near["source_id"])]
    assert len(similarities) == 30 and np.median(similarities) >= 0.8


# --------------------------------------------------------------------------- demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return write_demo(tmp_path_factory.mktemp("demo"), seed=0)


@pytest.fixture(scope="module")
def demo_pool(demo) -> pd.DataFrame:
    """The ingested demo pool joined with its ground truth."""
    truth = pq.read_table(demo.ground_truth).to_pandas()
    files = list_landing_files(demo.landing)
    shards = [read_shard(f.path, f.key).records.select(["id", "text", "label"]) for f in files]
    return pd.concat([table.to_pandas() for table in shards]).merge(truth, on="id")


def all_files(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(Path(root).rglob("*")) if p.is_file()}


def test_demo_is_byte_identical_for_a_seed(tmp_path):
    first = all_files(write_demo(tmp_path / "a", seed=1, n_records=600).root)
    again = all_files(write_demo(tmp_path / "b", seed=1, n_records=600).root)
    other = all_files(write_demo(tmp_path / "c", seed=2, n_records=600).root)
    assert len(first) == 7 and first == again
    assert other.keys() == first.keys() and all(other[name] != first[name] for name in first)


def test_demo_layout_and_formats(demo):
    names = sorted(p.name for p in Path(demo.landing).iterdir())
    assert names == [
        "pool-00000-of-00004.jsonl",
        "pool-00001-of-00004.jsonl.gz",
        "pool-00002-of-00004.parquet",
        "pool-00003-of-00004.csv",
    ]
    with gzip.open(Path(demo.landing) / names[1], "rt") as handle:
        assert set(json.loads(handle.readline())) == {"id", "text", "label"}  # no ground truth leaks
    assert all(Path(p).is_file() for p in (demo.reference, demo.evaluation, demo.ground_truth))
    assert demo.eval == demo.evaluation


def test_demo_ground_truth_fractions(demo):
    truth = pq.read_table(demo.ground_truth).to_pandas()
    assert len(truth) == 3000 + 300 + 150 + 90 and truth["id"].is_unique
    assert truth[["is_exact_dup", "is_near_dup", "is_flipped", "is_junk"]].sum().to_dict() == {
        "is_exact_dup": 300,
        "is_near_dup": 150,
        "is_flipped": 450,
        "is_junk": 90,
    }
    clean_topics = truth.loc[~truth["is_junk"], "true_label"]
    assert set(clean_topics) == set(TOPICS)
    assert 0.15 < clean_topics.isin(TARGET_TOPICS).mean() < 0.25  # targets are a minority


def test_demo_shards_ingest_with_junk_empties_quarantined(demo):
    truth = pq.read_table(demo.ground_truth).to_pandas().set_index("id")
    files = list_landing_files(demo.landing)
    records, quarantined = [], []
    for landing_file in files:
        result = read_shard(landing_file.path, landing_file.key)
        assert result.records.num_rows + result.quarantine.num_rows == result.raw_count
        assert set(result.records.column("shard").to_pylist()) == {landing_file.key}
        records += result.records.column("id").to_pylist()
        quarantine = result.quarantine
        quarantined += list(zip(quarantine.column("id").to_pylist(), quarantine.column("error").to_pylist()))
    assert len(records) + len(quarantined) == len(truth)
    raw_texts = pd.concat(
        [
            pd.read_json(demo.landing + "/pool-00000-of-00004.jsonl", lines=True),
            pq.read_table(demo.landing + "/pool-00002-of-00004.parquet").to_pandas(),
        ]
    )
    empty_junk = set(raw_texts.loc[raw_texts["text"].str.strip() == "", "id"])
    assert empty_junk and empty_junk <= {i for i, _ in quarantined}
    # Exactly the empty and whitespace-only junk is quarantined, nothing else.
    assert all(error == "empty text after normalisation" for _, error in quarantined)
    assert truth.loc[[i for i, _ in quarantined], "is_junk"].all()
    # Junk kinds are dealt round-robin: 90 junk rows hold this many empty/whitespace ones.
    assert len(quarantined) == sum(JUNK_KINDS[i % len(JUNK_KINDS)] in ("empty", "whitespace") for i in range(90)) == 25


def test_demo_reference_and_eval_are_disjoint_from_pool(demo, demo_pool):
    pool = demo_pool
    reference = read_reference(demo.reference)
    evaluation = read_reference(demo.evaluation)
    assert (reference.records.num_rows, reference.quarantine.num_rows) == (200, 0)
    assert (evaluation.records.num_rows, evaluation.quarantine.num_rows) == (400, 0)
    assert reference.records.column("label").null_count == 200
    assert set(evaluation.records.column("label").to_pylist()) == set(TARGET_TOPICS)
    pool_hashes = set(content_hashes(pool["text"]))
    for table in (reference.records, evaluation.records):
        assert pool_hashes.isdisjoint(table.column("content_hash").to_pylist())
        assert set(pool["id"]).isdisjoint(table.column("id").to_pylist())
    assert set(reference.records.column("content_hash").to_pylist()).isdisjoint(evaluation.records.column("content_hash").to_pylist())


def test_demo_task_rewards_clean_in_target_selection(demo, demo_pool):
    """The point of the demo: a clean in-target subset trains a better eval classifier."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    pool = demo_pool
    evaluation = pd.read_json(demo.evaluation, lines=True)
    vectorizer = TfidfVectorizer(sublinear_tf=True).fit(pool["text"])
    features, eval_features = vectorizer.transform(pool["text"]), vectorizer.transform(evaluation["text"])

    def accuracy(rows) -> float:
        model = LogisticRegression(max_iter=1000).fit(features[rows], pool["label"].to_numpy()[rows])
        return float((model.predict(eval_features) == evaluation["label"].to_numpy()).mean())

    budget = 100
    clean = ~(pool["is_flipped"] | pool["is_junk"] | pool["is_exact_dup"] | pool["is_near_dup"])
    good = np.flatnonzero((clean & pool["true_label"].isin(TARGET_TOPICS)).to_numpy())
    random_scores = [accuracy(np.random.default_rng(s).choice(len(pool), budget, replace=False)) for s in range(3)]
    selected_score = accuracy(np.random.default_rng(0).choice(good, budget, replace=False))
    assert selected_score > 0.95
    assert selected_score > np.mean(random_scores) + 0.05
