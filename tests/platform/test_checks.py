"""The blocking data-quality checks fail on crafted bad data, pass on the same data made good, and
a failing raw_pool check stops the downstream embeddings. Bad Parquet files are written straight
into the storage root and the real check definitions run through Dagster on a real instance."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from dagster import AssetMaterialization, AssetSelection, MaterializeResult, MetadataValue, asset, instance_for_test, materialize

import tests.platform.helpers  # noqa: F401  (offline, quiet environment first)
from dataselect import records as cols
from dataselect.embedding import vectors_to_arrow
from dataselect.storage import write_parquet
from platform_assets.checks import (
    embeddings_valid,
    evaluation_set_disjoint,
    filtered_set_valid,
    quality_scores_valid,
    raw_pool_valid,
)
from platform_assets.embeddings import embeddings
from platform_assets.ingest import evaluation_set, raw_pool, target_reference
from platform_assets.partitions import shards
from platform_assets.scoring import quality_scores
from platform_assets.selection import filtered_set
from resources import make_resources
from tests.platform.helpers import materialized_keys

SHARD = "s1"


@pytest.fixture(scope="module")
def instance():
    # One SQLite instance for the module (each costs ~2 s to create); every test has its own
    # store, and the instance only ever knows the one shard key, so cross-shard checks see one.
    with instance_for_test() as instance:
        instance.add_dynamic_partitions(shards.name, [SHARD])
        yield instance


def _resources(root):
    return make_resources(str(root / "landing"), str(root / "reference.jsonl"), str(root / "eval.jsonl"), str(root / "store"), "static")


@pytest.fixture
def env(instance, tmp_path):
    return instance, tmp_path / "store", _resources(tmp_path), tmp_path


def _failed_expectations(evaluation) -> set[str]:
    outcomes = {}
    for key in ("expectations", "selected_suite", "accounting_suite"):
        if key in evaluation.metadata:
            outcomes.update(evaluation.metadata[key].value)
    return {label for label, outcome in outcomes.items() if not outcome["success"]}


def _run_check(env, check, asset_def, partition: str | None = SHARD):
    """Run only ``check`` (a check-only run, as the UI launches one) on the files already in the store."""
    instance, _, resources, _ = env
    result = materialize(
        [asset_def, check],
        selection=AssetSelection.checks(check),
        instance=instance,
        resources=resources,
        tags={"dagster/partition": partition} if partition else None,
        raise_on_error=False,
    )
    [evaluation] = result.get_asset_check_evaluations()
    assert result.success == evaluation.passed  # blocking ERROR checks fail their step
    return evaluation


def _raw_pool_table(ids: list[str], texts: list[str]) -> pa.Table:
    return pa.table({cols.ID: ids, cols.TEXT: texts, cols.CONTENT_HASH: [f"h{i}" for i in range(len(ids))]})


def _write_raw_pool(store, ids: list[str], raw_count: int | None = None, shard: str = SHARD) -> None:
    table = _raw_pool_table(ids, [f"text of {i}" for i in ids])
    write_parquet(store / "raw_pool" / f"{shard}.parquet", table, {"raw_count": str(raw_count or len(ids)), "fingerprint": "f" * 64})


# --------------------------------------------------------------------------- raw_pool: blocking


@pytest.mark.parametrize(
    ("ids", "texts", "failing"),
    [
        (["a", "a", "b"], ["one", "two", "three"], {"expect_column_values_to_be_unique(id)"}),
        (["a", "b", "c"], ["one", "", "three"], {"expect_column_values_to_be_between(text_length)"}),
        (["a", "b", "c"], ["one", "two", "three"], set()),
    ],
    ids=["duplicate-ids", "empty-text", "valid"],
)
def test_raw_pool_check_fails_on_bad_records_and_blocks_embeddings(env, ids, texts, failing):
    instance, store, resources, _ = env

    # The real ingest quarantines such rows, so a stand-in producer under the raw_pool key writes
    # them; the check and the downstream embeddings asset are the real ones.
    @asset(key="raw_pool", partitions_def=shards)
    def crafted_raw_pool(context) -> MaterializeResult:
        write_parquet(store / "raw_pool" / f"{context.partition_key}.parquet", _raw_pool_table(ids, texts))
        return MaterializeResult()

    result = materialize(
        [crafted_raw_pool, raw_pool_valid, embeddings],
        partition_key=SHARD,
        instance=instance,
        resources=resources,
        raise_on_error=False,
    )
    [evaluation] = result.get_asset_check_evaluations()
    assert evaluation.check_name == "raw_pool_valid" and evaluation.partition == SHARD
    assert _failed_expectations(evaluation) == failing
    described = {
        "expect_column_values_to_be_unique(id)": "2 records whose id is not unique in the shard: a, a",
        "expect_column_values_to_be_between(text_length)": "1 records with empty text: b",
    }
    assert evaluation.description == (described[next(iter(failing))] if failing else "GX suite raw_pool: all expectations met")
    if failing:
        assert not evaluation.passed and not result.success
        assert materialized_keys(result) == {"raw_pool"}  # recorded, but nothing downstream ran
        assert not (store / "embeddings" / f"{SHARD}.parquet").exists()
    else:
        assert evaluation.passed and result.success
        assert materialized_keys(result) == {"raw_pool", "embeddings"}


# --------------------------------------------------------------------------- embeddings


def _unit(n: int, dim: int, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.mark.parametrize(
    ("corrupt", "failing"),
    [
        ("scale", {"expect_column_values_to_be_between(norm)"}),
        ("nan", {"expect_column_values_to_be_in_set(finite)", "expect_column_values_to_be_between(norm)"}),
        ("missing_row", {"expect_table_row_count_to_equal()"}),
        ("zero", set()),  # a text the model cannot represent: rejected by the 'embeddable' filter, not a broken shard
        (None, set()),
    ],
    ids=["non-unit", "nan", "row-missing", "unrepresentable-zero-vector", "valid"],
)
def test_embeddings_check(env, corrupt, failing):
    _, store, _, _ = env
    ids = ["a", "b", "c", "d"]
    _write_raw_pool(store, ids)
    vectors = _unit(len(ids), 8)
    if corrupt == "scale":
        vectors[1] *= 2.0
    elif corrupt == "nan":
        vectors[2, 3] = np.nan
    elif corrupt == "missing_row":
        ids, vectors = ids[:3], vectors[:3]
    elif corrupt == "zero":
        vectors[2] = 0.0
    write_parquet(store / "embeddings" / f"{SHARD}.parquet", vectors_to_arrow(ids, vectors), {"dim": "8", "backend": "test"})
    evaluation = _run_check(env, embeddings_valid, embeddings)
    assert evaluation.passed == (not failing)
    assert _failed_expectations(evaluation) == failing
    assert evaluation.metadata["unrepresentable_records"].value == (1 if corrupt == "zero" else 0)
    # A failure names the offending records, not only the expectation.
    expected_description = {
        "scale": "1 vectors not of unit norm: b",
        "nan": "1 vectors with NaN or infinite values: c; 1 vectors not of unit norm: c",
        "missing_row": "vectors: expected one per raw_pool record (4) (observed 3)",
    }.get(corrupt, "GX suite embeddings: all expectations met")
    assert evaluation.description == expected_description


# --------------------------------------------------------------------------- quality_scores


@pytest.mark.parametrize(
    ("column", "value", "failing"),
    [
        ("dsir.score", np.nan, {"expect_column_values_to_not_be_null(dsir.score)"}),
        ("relevance.probability", 1.5, {"expect_column_values_to_be_between(relevance.probability)"}),
        (None, None, set()),
    ],
    ids=["nan-score", "probability-out-of-range", "valid"],
)
def test_quality_scores_check(env, column, value, failing):
    _, store, _, _ = env
    ids = ["a", "b", "c"]
    _write_raw_pool(store, ids)
    columns = {cols.ID: ids, "dsir.score": [0.1, 0.5, 0.9], "relevance.probability": [0.2, 0.4, 0.6], "heuristics.score": [1.0, 0.5, 0.0]}
    if column:
        columns[column][1] = value
    write_parquet(store / "quality_scores" / f"{SHARD}.parquet", pa.table(columns))
    evaluation = _run_check(env, quality_scores_valid, quality_scores)
    assert evaluation.passed == (not failing)
    assert _failed_expectations(evaluation) == failing


# --------------------------------------------------------------------------- filtered_set


@pytest.mark.parametrize(
    ("case", "failing"),
    [
        ("over_budget", {"expect_table_row_count_to_be_between()"}),
        ("selected_failed_hard_filter", {"expect_column_values_to_be_in_set(passes_hard_filters)"}),
        ("selected_unknown_id", {"expect_column_values_to_be_in_set(in_raw_pool)"}),
        ("record_lost", {"expect_table_row_count_to_equal()"}),
        ("valid", set()),
        # Regression: with hard_filters set to a subset, a filter the user switched off must not
        # fail the check; the filters still applied do.
        ("selected_failed_switched_off_filter", set()),
        ("selected_failed_applied_filter", {"expect_column_values_to_be_in_set(passes_hard_filters)"}),
    ],
)
def test_filtered_set_check(env, case, failing):
    instance, store, _, _ = env
    ids = [f"r{i}" for i in range(10)]
    _write_raw_pool(store, ids[:9], raw_count=10)  # 9 records + 1 quarantined line
    budget = 0.3  # at most 3 of 10 raw records
    status = [cols.SELECTED] * 3 + [cols.REJECTED] * 6 + [cols.QUARANTINED]
    keep = [True] * 9 + [None]
    near_dup_keep = [True] * 9 + [None]
    selection = {"budget": budget}
    decision_ids = list(ids)
    if case == "over_budget":
        status[3] = status[4] = cols.SELECTED
    elif case == "selected_failed_hard_filter":
        keep[1] = False
    elif case == "selected_unknown_id":
        decision_ids[0] = "not-in-pool"
    elif case == "selected_failed_switched_off_filter":
        near_dup_keep[1] = False
        selection["hard_filters"] = ["heuristics"]
    elif case == "selected_failed_applied_filter":
        keep[1] = False
        selection["hard_filters"] = ["heuristics"]
    elif case == "record_lost":
        decision_ids, status, keep, near_dup_keep = decision_ids[:-1], status[:-1], keep[:-1], near_dup_keep[:-1]
    decisions = pa.table(
        {
            cols.ID: decision_ids,
            cols.STATUS: status,
            cols.DECIDED_BY: ["top_k"] * len(status),
            cols.REASON: ["why"] * len(status),
            "heuristics.keep": pa.array(keep, pa.bool_()),
            "near_dup.keep": pa.array(near_dup_keep, pa.bool_()),
        }
    )
    build_id = "test-build"
    write_parquet(store / "builds" / build_id / "decisions.parquet", decisions)
    manifest = {"build_id": build_id, "config": {"selection": selection}}
    instance.report_runless_asset_event(
        AssetMaterialization("filtered_set", metadata={"build_id": build_id, "manifest": MetadataValue.json(manifest)})
    )
    evaluation = _run_check(env, filtered_set_valid, filtered_set, partition=None)
    assert evaluation.passed == (not failing)
    assert _failed_expectations(evaluation) == failing
    described = {
        "over_budget": "selected records: at most the budget of 3 (observed 5)",
        "selected_failed_hard_filter": "1 selected records that failed a hard filter: r1",
        "selected_failed_applied_filter": "1 selected records that failed a hard filter: r1",
        "selected_unknown_id": "1 selected records not in raw_pool: not-in-pool",
        "record_lost": "decisions: expected one per raw line of the input files (10) (observed 9)",
    }
    if failing:
        assert evaluation.description == described[case]
    assert evaluation.metadata["budget"].value == 3 and evaluation.metadata["raw_lines_in_input_files"].value == 10


# --------------------------------------------------------------------------- evaluation_set: real assets


@pytest.fixture(scope="module")
def ingested(instance, tmp_path_factory):
    """A real raw_pool shard and target reference, materialized once for the disjointness cases."""
    root = tmp_path_factory.mktemp("disjoint")
    (root / "landing").mkdir()
    pool = [{"id": f"p{i}", "text": f"pool document number {i} about rivers", "label": "x"} for i in range(4)]
    (root / "landing" / f"{SHARD}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pool))
    reference = [{"id": f"ref{i}", "text": f"reference document {i} about stars"} for i in range(3)]
    (root / "reference.jsonl").write_text("".join(json.dumps(r) + "\n" for r in reference))
    resources = _resources(root)
    assert materialize([raw_pool], partition_key=SHARD, instance=instance, resources=resources).success
    assert materialize([target_reference], instance=instance, resources=resources).success
    return root, resources, pool, reference


@pytest.mark.parametrize(
    ("leak", "failing"),
    [
        ("same_text", {"expect_column_values_to_be_in_set(content_in_pool_or_reference)"}),
        ("same_id", {"expect_column_values_to_be_in_set(id_in_pool)"}),
        ("reference_text", {"expect_column_values_to_be_in_set(content_in_pool_or_reference)"}),
        (None, set()),
    ],
    ids=["pool-text", "pool-id", "reference-text", "disjoint"],
)
def test_evaluation_set_overlapping_the_pool_fails(instance, ingested, leak, failing):
    root, resources, pool, reference = ingested
    evaluation_rows = [{"id": f"e{i}", "text": f"evaluation document {i} about planets", "label": "y"} for i in range(3)]
    if leak == "same_text":
        evaluation_rows[1]["text"] = pool[2]["text"]
    elif leak == "same_id":
        evaluation_rows[1]["id"] = pool[2]["id"]
    elif leak == "reference_text":
        evaluation_rows[0]["text"] = reference[1]["text"]
    (root / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in evaluation_rows))

    result = materialize(
        [raw_pool, target_reference, evaluation_set, evaluation_set_disjoint],
        selection=[evaluation_set],
        instance=instance,
        resources=resources,
        raise_on_error=False,
    )
    [evaluation] = result.get_asset_check_evaluations()
    assert evaluation.check_name == "evaluation_set_disjoint"
    assert evaluation.passed == (not failing) == result.success
    assert _failed_expectations(evaluation) == failing
    leaked = {"same_text": "e1", "same_id": pool[2]["id"], "reference_text": "e0"}.get(leak)
    if leak == "same_id":
        assert evaluation.description == f"1 evaluation records whose id is also in the pool: {leaked}"
    elif leak:
        assert evaluation.description == f"1 evaluation records whose text is also in the pool or the reference: {leaked}"
