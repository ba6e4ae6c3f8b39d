import numpy as np
import pyarrow as pa
import pytest

from dataselect.scorers.base import Batch
from dataselect.scorers.semdedup import SemanticDuplicates, brute_force_semantic_duplicates, default_n_clusters


def unit(vectors):
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def angles(*degrees):
    radians = np.deg2rad(degrees)
    return unit(np.stack([np.cos(radians), np.sin(radians)], axis=1))


def partition(labels):
    """A partition as a set of frozensets, so label values do not matter."""
    groups = {}
    for index, label in enumerate(np.asarray(labels).tolist()):
        groups.setdefault(label, set()).add(index)
    return {frozenset(group) for group in groups.values()}


def planted_pool(seed=0, n_distinct=300, dim=32):
    """Random directions (pairwise cosine ~ N(0, 1/32), far below 0.95) plus 1-3 noisy copies
    of 40 of them with cosine > 0.99 to their original. Returns vectors and true groups."""
    rng = np.random.default_rng(seed)
    base = unit(rng.normal(size=(n_distinct, dim)))
    vectors, truth = list(base), list(range(n_distinct))
    for original in rng.choice(n_distinct, size=40, replace=False):
        for _ in range(rng.integers(1, 4)):
            vectors.append(base[original] + rng.normal(scale=0.01, size=dim))
            truth.append(original)
    order = rng.permutation(len(vectors))
    return unit(np.array(vectors))[order], np.array(truth)[order]


def batch_for(vectors, shards=None, rows=None):
    n = len(vectors)
    table = pa.table(
        {
            "id": [f"doc{i}" for i in range(n)],
            "shard": shards if shards is not None else ["s0"] * n,
            "row": rows if rows is not None else list(range(n)),
        }
    )
    return Batch(table, embeddings=vectors)


def test_brute_force_known_answer():
    vectors = angles(0, 5, 90, 92, 180)
    # cos 5 deg = 0.9962 and cos 2 deg = 0.9994 are above 0.95; cos 85 deg, cos 90 deg are not.
    assert brute_force_semantic_duplicates(vectors, eps=0.05).tolist() == [0, 0, 2, 2, 4]
    # At eps=0.001 (threshold 0.999) only the 2-degree pair is still a duplicate.
    assert brute_force_semantic_duplicates(vectors, eps=0.001).tolist() == [0, 1, 2, 2, 4]


def test_chain_is_one_group_by_connected_components():
    # 0-4 deg and 4-8 deg are duplicates at eps=0.005 (cos 4 deg = 0.9976), 0-8 deg is not
    # (cos 8 deg = 0.9903): union-find must still join all three.
    vectors = angles(0, 4, 8, 60)
    assert brute_force_semantic_duplicates(vectors, eps=0.005).tolist() == [0, 0, 0, 3]
    out = SemanticDuplicates(eps=0.005, n_clusters=1).score(batch_for(vectors))
    assert out["group"].tolist() == [0, 0, 0, 3]
    assert out["keep"].tolist() == [True, False, False, True]


def test_planted_duplicates_found_and_distinct_kept_apart():
    vectors, truth = planted_pool()
    out = SemanticDuplicates(eps=0.05, n_clusters=8, seed=0).score(batch_for(vectors))
    found = partition(out["group"])
    assert found == partition(truth)  # recall 100% and no false merges
    assert found == partition(brute_force_semantic_duplicates(vectors, eps=0.05))
    assert out["keep"].sum() == 300  # one survivor per original
    assert out["cluster"].min() >= 0 and out["cluster"].max() < 8


def test_keep_first_in_shard_row_order_and_reason():
    vectors = angles(0, 1, 2, 90)
    # Record 2 comes first in (shard, row) order: shard "a" sorts before "b".
    out = SemanticDuplicates(eps=0.05, n_clusters=1).score(batch_for(vectors, shards=["b", "b", "a", "b"], rows=[0, 1, 7, 2]))
    assert out["keep"].tolist() == [False, False, True, True]
    assert out["group"].tolist() == [2, 2, 2, 3]
    assert out["reason"][0] == "semantic duplicate of doc2 (cosine 1.00)"  # cos 2 deg = 0.9994
    assert out["reason"][2] == "" and out["reason"][3] == ""
    np.testing.assert_allclose(out["cosine_to_kept"][:3], np.cos(np.deg2rad([2, 1, 0])), atol=1e-6)


def test_keep_prefers_records_that_pass_earlier_filters():
    vectors = angles(0, 1, 2, 90)
    table = pa.table(
        {
            "id": ["a", "b", "c", "d"],
            "shard": ["s"] * 4,
            "row": [0, 1, 2, 3],
            "heuristics.keep": [False, None, True, True],  # null = no opinion = passes
        }
    )
    out = SemanticDuplicates(eps=0.05, n_clusters=1).score(Batch(table, vectors))
    assert out["keep"].tolist() == [False, True, False, True]
    assert out["reason"][0] == "semantic duplicate of b (cosine 1.00)"


def test_blocked_similarity_matches_single_block_and_is_deterministic():
    vectors, _ = planted_pool(seed=1, n_distinct=150)
    batch = batch_for(vectors)
    whole = SemanticDuplicates(eps=0.05, seed=3).score(batch)
    blocked = SemanticDuplicates(eps=0.05, seed=3, block_elements=64).score(batch)
    again = SemanticDuplicates(eps=0.05, seed=3).score(batch)
    for key in ("group", "keep", "cluster"):
        np.testing.assert_array_equal(whole[key], blocked[key])
        np.testing.assert_array_equal(whole[key], again[key])
    assert whole["reason"].tolist() == again["reason"].tolist()


def test_default_cluster_count_and_missing_embeddings():
    assert default_n_clusters(0) == 1 and default_n_clusters(400) == 10 and default_n_clusters(10**8) == 1024
    with pytest.raises(ValueError, match="embeddings"):
        SemanticDuplicates().score(Batch(pa.table({"id": ["a"]})))
