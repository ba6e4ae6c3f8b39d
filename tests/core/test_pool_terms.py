"""Pool term counts counted beforehand and read back give the report exactly the arms it counts itself."""

import numpy as np
import pandas as pd
import pytest

from dataselect import pool_terms
from dataselect.evaluation import ArmEvaluator, Config, _TermCounts

SHARDS = {"shard-a": "f" * 64, "shard-b": "e" * 64}


@pytest.fixture(scope="module")
def newsgroups(newsgroups_records):
    """1,500 real training messages as the pool and 400 test messages as the evaluation set."""
    train = [r for r in newsgroups_records if r["split"] == "train"][:1500]
    test = [r for r in newsgroups_records if r["split"] == "test"][:400]
    pool = pd.DataFrame({"id": [r["id"] for r in train], "text": [r["text"] for r in train], "label": [r["label"] for r in train]})
    evaluation = pd.DataFrame({"text": [r["text"] for r in test], "label": [r["label"] for r in test]})
    return pool, evaluation


def _stored(pool: pd.DataFrame, folder, config: Config = Config()) -> pool_terms.PoolTerms:
    fingerprint = pool_terms.pool_fingerprint(SHARDS, config.ngram_range, config.min_df)
    pool_terms.write(folder, pool_terms.count(pool["text"].tolist(), config.ngram_range, config.min_df, fingerprint))
    return pool_terms.read(folder, fingerprint)


def test_stored_counts_equal_the_counts_the_report_makes_itself(newsgroups, tmp_path):
    pool, evaluation = newsgroups
    stored = _stored(pool, tmp_path)
    ours = _TermCounts(pool["text"].tolist(), evaluation["text"].tolist(), Config(), stored)
    direct = _TermCounts(pool["text"].tolist(), evaluation["text"].tolist(), Config())
    assert ours.pool.shape == direct.pool.shape and ours.pool.nnz > 100_000
    assert (ours.pool != direct.pool).nnz == 0
    # The evaluation texts are counted on the stored columns: the same as transforming them.
    assert ours.eval.shape == direct.eval.shape and ours.eval.nnz > 10_000
    assert (ours.eval != direct.eval).nnz == 0 and ours.eval.has_sorted_indices
    assert np.array_equal(ours.order, direct.order)

    selected = pool["id"].iloc[::10].tolist()
    with_stored = ArmEvaluator(pool, evaluation, pool_terms=stored).evaluate_arms(selected, random_seeds=(1, 2))
    counted_here = ArmEvaluator(pool, evaluation).evaluate_arms(selected, random_seeds=(1, 2))
    for name in ("selected", "full"):
        assert with_stored[name].accuracy == counted_here[name].accuracy
        assert np.array_equal(with_stored[name].correct, counted_here[name].correct)
    assert [r.accuracy for r in with_stored["random"].results] == [r.accuracy for r in counted_here["random"].results]


def test_counts_of_another_pool_or_recipe_are_not_used(newsgroups, tmp_path):
    pool, evaluation = newsgroups
    small = pool.iloc[:300]
    stored = _stored(small, tmp_path)
    # Another shard version or other counting settings: another fingerprint, so nothing is read.
    assert pool_terms.read(tmp_path, pool_terms.pool_fingerprint({**SHARDS, "shard-b": "d" * 64}, (1, 2), 2)) is None
    assert pool_terms.read(tmp_path, pool_terms.pool_fingerprint(SHARDS, (1, 2), 3)) is None
    assert pool_terms.read(tmp_path / "nothing-here", stored.fingerprint) is None
    with pytest.raises(ValueError, match="rows for a pool of"):
        _TermCounts(pool["text"].tolist(), evaluation["text"].tolist(), Config(), stored)
    with pytest.raises(ValueError, match="not this recipe's"):
        _TermCounts(small["text"].tolist(), evaluation["text"].tolist(), Config(ngram_range=(1, 1)), stored)
