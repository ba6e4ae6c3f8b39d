"""A partly labelled pool: half the 20 Newsgroups benchmark pool loses its labels.

A classification build spends its budget on labelled records only and still beats random
subsets and the full pool on the held-out test split; a language-modeling build of the same
scores ignores labels. Everything runs through the platform's core: the shard scorers fitted
on a pool sample, ``score_shard`` per shard, then ``build.select`` with the default recipe.
"""

import numpy as np
import pyarrow as pa
import pytest

from benchmarks.methods import BenchConfig, Timer, fit_and_score_shards
from benchmarks.newsgroups import PoolConfig, build_benchmark
from dataselect import records as cols
from dataselect.build import select
from dataselect.embedding import StaticEmbedder
from dataselect.evaluation import ArmEvaluator, verdict
from dataselect.scorers import DEFAULT_POOL_SCORERS, DEFAULT_SHARD_SCORERS
from dataselect.selection import SelectionConfig, accounting


def blank_labels(shard: pa.Table, rng: np.random.Generator, fraction: float) -> pa.Table:
    labels = np.array(shard.column(cols.LABEL).to_pylist(), dtype=object)
    labels[rng.random(len(labels)) < fraction] = None
    return shard.set_column(shard.schema.get_field_index(cols.LABEL), cols.LABEL, pa.array(labels.tolist(), pa.string()))


@pytest.fixture(scope="module")
def half_labelled(newsgroups_dir, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("half-labelled")
    bench = build_benchmark(PoolConfig(), newsgroups_dir, tmp_path)
    rng = np.random.default_rng(0)
    bench.shards = [blank_labels(shard, rng, 0.5) for shard in bench.shards]
    embedder = StaticEmbedder()
    embeddings = embedder.embed(bench.texts)
    reference_embeddings = embedder.embed(bench.reference.column(cols.TEXT).to_pylist())
    config = BenchConfig(include_color=False, use_cache=False, work_dir=tmp_path)
    scores = fit_and_score_shards(bench, embeddings, reference_embeddings, config, Timer(), list(DEFAULT_SHARD_SCORERS))

    def build(task: str):
        return select(
            scores, bench.quarantine, embeddings, SelectionConfig(budget=0.1, task=task), list(DEFAULT_POOL_SCORERS), {}, bench.texts
        )

    pool = bench.records.select([cols.ID, cols.TEXT, cols.LABEL]).to_pandas()
    return bench, pool, build("classification"), build("language_modeling")


@pytest.mark.slow
@pytest.mark.newsgroups
def test_classification_build_spends_the_budget_on_labelled_records(half_labelled):
    bench, pool, decisions, lm = half_labelled
    labelled = pool.set_index(cols.ID)[cols.LABEL].notna()
    selected = decisions.loc[decisions[cols.STATUS] == cols.SELECTED, cols.ID].tolist()
    counts = accounting(decisions)
    assert counts["selected"] == SelectionConfig(budget=0.1).budget_count(bench.raw_count)
    assert labelled.loc[selected].all()  # never an unlabelled record
    no_label = decisions[decisions[cols.DECIDED_BY] == "label"]
    assert (no_label[cols.REASON] == "no label").all() and not labelled.loc[no_label[cols.ID]].any()
    assert 0.3 * len(pool) < counts["rejections_by_reason"]["label"] < 0.5 * len(pool)  # the rest fell to earlier filters
    # A language-modeling build of the same scores does spend budget on unlabelled records.
    assert not labelled.loc[lm.loc[lm[cols.STATUS] == cols.SELECTED, cols.ID]].all() and "label" not in set(lm[cols.DECIDED_BY])


def half_labelled_verdict(half_labelled) -> dict:
    bench, pool, decisions, _ = half_labelled
    labelled = pool.set_index(cols.ID)[cols.LABEL].notna()
    selected = decisions.loc[decisions[cols.STATUS] == cols.SELECTED, cols.ID].tolist()
    # Arms trained on what they can train on (labelled records), scored on the held-out test split.
    arms = ArmEvaluator(pool, bench.test).evaluate_arms(selected, (101, 102, 103, 104, 105), stratified=False, include_full=True)
    assert arms["selected"].n_train == len(selected) and arms["full"].n_train == int(labelled.sum())
    return verdict(arms)


@pytest.mark.slow
@pytest.mark.newsgroups
def test_classification_build_beats_random_on_a_half_labelled_pool(half_labelled):
    result = half_labelled_verdict(half_labelled)
    assert result["beats_random"] is True, result["sentence"]


@pytest.mark.slow
@pytest.mark.newsgroups
def test_classification_build_beats_the_full_pool_on_a_half_labelled_pool(half_labelled):
    result = half_labelled_verdict(half_labelled)
    assert result["beats_full"] is True, result["sentence"]
