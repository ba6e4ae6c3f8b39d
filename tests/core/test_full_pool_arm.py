"""The full pool's arm trained ahead of the report and stored gives the report exactly the arm it trains itself."""

import numpy as np
import pandas as pd
import pytest

from dataselect import full_pool_arm, pool_terms
from dataselect.evaluation import ArmEvaluator, Config

SHARDS = {"shard-a": "f" * 64, "shard-b": "e" * 64}


@pytest.fixture(scope="module")
def newsgroups(newsgroups_records):
    """1,500 real training messages (every 7th unlabelled) as the pool, 400 test messages as the evaluation set."""
    train = [r for r in newsgroups_records if r["split"] == "train"][:1500]
    test = [r for r in newsgroups_records if r["split"] == "test"][:400]
    labels = [None if i % 7 == 0 else r["label"] for i, r in enumerate(train)]
    pool = pd.DataFrame({"id": [r["id"] for r in train], "text": [r["text"] for r in train], "label": labels})
    evaluation = pd.DataFrame({"text": [r["text"] for r in test], "label": [r["label"] for r in test]})
    return pool, evaluation


def _counted(pool: pd.DataFrame, shards: dict[str, str] = SHARDS) -> pool_terms.PoolTerms:
    config = Config()
    return pool_terms.count(
        pool["text"].tolist(), config.ngram_range, config.min_df, pool_terms.pool_fingerprint(shards, config.ngram_range, 2)
    )


def _stored(pool, evaluation, counted, folder) -> full_pool_arm.FullPoolPredictions:
    full_pool_arm.write(folder, ArmEvaluator(pool, evaluation, pool_terms=counted).predict_full_pool())
    return full_pool_arm.read(folder)


def _same_arm(a, b) -> None:
    assert a.accuracy == b.accuracy and np.array_equal(a.correct, b.correct)
    assert (a.n_train, a.macro_f1, a.per_class_recall, a.unseen_eval_labels) == (
        b.n_train,
        b.macro_f1,
        b.per_class_recall,
        b.unseen_eval_labels,
    )
    assert (a.accuracy_lo, a.accuracy_hi) == (b.accuracy_lo, b.accuracy_hi)


def test_stored_predictions_score_the_same_full_arm_on_the_whole_evaluation_set_and_on_part_of_it(newsgroups, tmp_path):
    pool, evaluation = newsgroups
    counted = _counted(pool)
    stored = _stored(pool, evaluation, counted, tmp_path)
    assert len(stored.predictions) == evaluation["text"].nunique() and stored.fit_seconds > 0

    trained = ArmEvaluator(pool, evaluation, pool_terms=counted).full()
    reader = ArmEvaluator(pool, evaluation, pool_terms=counted, full_pool=stored)
    assert reader.has_stored_full_pool()
    read = reader.full()
    _same_arm(read, trained)
    assert read.n_train == int(pool["label"].notna().sum())  # unlabelled records are no training examples
    assert read.fit_seconds == stored.fit_seconds  # scored from the file, not fitted again
    assert 0.5 < read.accuracy < 0.95

    # After --tune the report evaluates on a part of the evaluation file: the same predictions, that part's score.
    held_out = evaluation.iloc[1::2].reset_index(drop=True)
    on_part = ArmEvaluator(pool, held_out, pool_terms=counted, full_pool=stored)
    assert on_part.has_stored_full_pool()
    _same_arm(on_part.full(), ArmEvaluator(pool, held_out, pool_terms=counted).full())

    # The other arms still train: only the whole pool with seed 0 is the stored arm.
    selected = pool["id"].iloc[::10].tolist()
    arms = reader.evaluate_arms(selected, random_seeds=(1, 2))
    _same_arm(arms["full"], trained)
    _same_arm(arms["selected"], ArmEvaluator(pool, evaluation, pool_terms=counted).evaluate_arms(selected, random_seeds=(1, 2))["selected"])


def test_predictions_of_another_pool_recipe_or_evaluation_set_are_not_used(newsgroups, tmp_path):
    pool, evaluation = newsgroups
    counted = _counted(pool)
    stored = _stored(pool, evaluation.iloc[:200], counted, tmp_path)
    # An evaluation text it never predicted: the arm is trained.
    assert not ArmEvaluator(pool, evaluation, pool_terms=counted, full_pool=stored).has_stored_full_pool()
    part = evaluation.iloc[:200]
    assert ArmEvaluator(pool, part, pool_terms=counted, full_pool=stored).has_stored_full_pool()
    # Other model settings, another pool (shard versions), or terms counted by the report itself.
    assert not ArmEvaluator(pool, part, pool_terms=counted, full_pool=stored).with_model(C=1.0).has_stored_full_pool()
    assert not ArmEvaluator(pool, part, config=Config(epochs=5), pool_terms=counted, full_pool=stored).has_stored_full_pool()
    other_shards = _counted(pool, {**SHARDS, "shard-b": "d" * 64})
    assert not ArmEvaluator(pool, part, pool_terms=other_shards, full_pool=stored).has_stored_full_pool()
    assert not ArmEvaluator(pool, part, full_pool=stored).has_stored_full_pool()
    # Threads do not change the model, so they do not change the fingerprint.
    assert ArmEvaluator(pool, part, config=Config(n_jobs=1), pool_terms=counted, full_pool=stored).has_stored_full_pool()
    assert full_pool_arm.read(tmp_path / "nothing-here") is None
    with pytest.raises(ValueError, match="TF-IDF recipe on pool terms counted beforehand"):
        ArmEvaluator(pool, part).predict_full_pool()
