"""Data-quality checks: Great Expectations suites on each stage's output.

Blocking checks (ERROR) stop downstream assets: bad ids, broken vectors or a broken
accounting must never reach a selection. The report's check only warns.
"""

import great_expectations as gx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetCheckSeverity, MetadataValue, asset_check

from dataselect import records as cols
from dataselect.embedding import represented
from dataselect.selection import SelectionConfig, passes_hard_filters
from dataselect.storage import parquet_metadata, parquet_num_rows, read_parquet
from platform_assets.embeddings import embeddings
from platform_assets.evaluation import evaluation_report
from platform_assets.expectations import validate
from platform_assets.ingest import evaluation_set, raw_pool
from platform_assets.lineage import upstream_materialization
from platform_assets.partitions import shards
from platform_assets.scoring import quality_scores
from platform_assets.selection import filtered_set
from resources import EmbeddingResource, StorageResource

E = gx.expectations


@asset_check(asset=raw_pool, blocking=True, partitions_def=shards, description="ids unique and non-null, text non-empty.")
def raw_pool_valid(context: AssetCheckExecutionContext, storage: StorageResource) -> AssetCheckResult:
    records = storage.read_shard("raw_pool", context.partition_key, [cols.ID, cols.TEXT]).to_pandas()
    records["text_length"] = records[cols.TEXT].str.len()
    return validate(
        records[[cols.ID, "text_length"]],
        [
            E.ExpectColumnValuesToNotBeNull(column=cols.ID, description="records without an id"),
            E.ExpectColumnValuesToBeUnique(column=cols.ID, description="records whose id is not unique in the shard"),
            E.ExpectColumnValuesToNotBeNull(column="text_length", description="records without text"),
            E.ExpectColumnValuesToBeBetween(column="text_length", min_value=1, description="records with empty text"),
        ],
        "raw_pool",
        id_column=cols.ID,
    )


@asset_check(
    asset=embeddings,
    blocking=True,
    partitions_def=shards,
    description="Dimension, finite values, unit norm (or the zero vector "
    "of a text the model cannot represent, which the 'embeddable' filter rejects), one row per raw record.",
)
def embeddings_valid(context: AssetCheckExecutionContext, storage: StorageResource, embedding: EmbeddingResource) -> AssetCheckResult:
    key = context.partition_key
    vectors = storage.read_embeddings(key)
    ids = read_parquet(storage.shard_file("embeddings", key), [cols.ID]).column(cols.ID).to_pylist()
    expected_rows = parquet_num_rows(storage.shard_file("raw_pool", key))
    expected_dim = int(parquet_metadata(storage.shard_file("embeddings", key)).get("dim", vectors.shape[1]))
    frame = pd.DataFrame(
        {
            cols.ID: ids,
            "represented": represented(vectors),
            "dim": np.full(len(vectors), vectors.shape[1] if vectors.ndim == 2 else 0),
            "finite": np.isfinite(vectors).all(axis=1) if len(vectors) else np.zeros(0, bool),
            "norm": np.linalg.norm(np.nan_to_num(vectors), axis=1) if len(vectors) else np.zeros(0),
        }
    )
    return validate(
        frame,
        [
            E.ExpectTableRowCountToEqual(value=expected_rows, description=f"vectors: expected one per raw_pool record ({expected_rows})"),
            E.ExpectColumnValuesToBeInSet(column="dim", value_set=[expected_dim], description=f"vectors not of dimension {expected_dim}"),
            E.ExpectColumnValuesToBeInSet(column="finite", value_set=[True], description="vectors with NaN or infinite values"),
            E.ExpectColumnValuesToBeBetween(
                column="norm",
                min_value=0.999,
                max_value=1.001,
                row_condition="represented == True",
                condition_parser="pandas",
                description="vectors not of unit norm",
            ),
        ],
        "embeddings",
        metadata={
            "unrepresentable_records": int((~frame["represented"]).sum()),
            "unrepresentable_ids": MetadataValue.json(frame.loc[~frame["represented"], cols.ID].head(20).tolist()),
        },
        id_column=cols.ID,
    )


@asset_check(asset=quality_scores, blocking=True, partitions_def=shards, description="One row per record, values in range, no NaN.")
def quality_scores_valid(context: AssetCheckExecutionContext, storage: StorageResource) -> AssetCheckResult:
    key = context.partition_key
    table = storage.read_shard("quality_scores", key)
    expected_rows = parquet_num_rows(storage.shard_file("raw_pool", key))
    numeric = [
        f.name for f in table.schema if (f.name.endswith(".score") or f.name.endswith(".probability") or f.name.endswith(".log_weight"))
    ]
    frame = table.select([cols.ID, *numeric]).to_pandas()
    expectations = [
        E.ExpectTableRowCountToEqual(value=expected_rows, description=f"score rows: expected one per raw_pool record ({expected_rows})"),
        E.ExpectColumnValuesToBeUnique(column=cols.ID, description="records scored more than once"),
    ]
    for column in numeric:
        expectations.append(E.ExpectColumnValuesToNotBeNull(column=column, description=f"records without {column}"))
        if column.endswith(".probability") or column == "heuristics.score":
            expectations.append(
                E.ExpectColumnValuesToBeBetween(
                    column=column, min_value=0.0, max_value=1.0, description=f"records with {column} outside [0, 1]"
                )
            )
    return validate(frame, expectations, "quality_scores", id_column=cols.ID)


@asset_check(
    asset=filtered_set,
    blocking=True,
    description="Within budget, no quarantined or duplicate records selected, every id in raw_pool, "
    "and the accounting invariant raw = selected + rejected + quarantined.",
)
def filtered_set_valid(context: AssetCheckExecutionContext, storage: StorageResource) -> AssetCheckResult:
    materialization = upstream_materialization(context, filtered_set.key)
    build_id = materialization.metadata["build_id"].value
    selection = SelectionConfig(**materialization.metadata["manifest"].value["config"]["selection"])
    decisions = read_parquet(storage.path("builds", build_id, "decisions.parquet")).to_pandas()
    raw_ids, raw_total = [], 0
    for key in sorted(context.instance.get_dynamic_partitions(shards.name)):
        raw_ids.extend(chunk.cast(pa.string()) for chunk in storage.read_shard("raw_pool", key, [cols.ID]).column(cols.ID).chunks)
        raw_total += int(parquet_metadata(storage.shard_file("raw_pool", key))["raw_count"])
    budget = selection.budget_count(raw_total)  # the build counts its budget against every raw record
    selected = decisions[decisions[cols.STATUS] == cols.SELECTED].copy()
    selected["passes_hard_filters"] = passes_hard_filters(selected, selection.hard_filters)
    # Arrow's is_in: pandas' isin against a set of 100k ids took 0.8 s.
    in_pool = pc.is_in(
        pa.array(selected[cols.ID], pa.string()), value_set=pa.concat_arrays(raw_ids) if raw_ids else pa.array([], pa.string())
    )
    selected["in_raw_pool"] = in_pool.to_numpy(zero_copy_only=False)
    accounting = pd.DataFrame({cols.ID: decisions[cols.ID], cols.STATUS: decisions[cols.STATUS]})
    result_selected = validate(
        selected[[cols.ID, "passes_hard_filters", "in_raw_pool"]],
        [
            E.ExpectTableRowCountToBeBetween(
                min_value=0, max_value=budget, description=f"selected records: at most the budget of {budget}"
            ),
            E.ExpectColumnValuesToBeUnique(column=cols.ID, description="records selected more than once"),
            E.ExpectColumnValuesToBeInSet(
                column="passes_hard_filters", value_set=[True], description="selected records that failed a hard filter"
            ),
            E.ExpectColumnValuesToBeInSet(column="in_raw_pool", value_set=[True], description="selected records not in raw_pool"),
        ],
        "filtered_set.selected",
        id_column=cols.ID,
    )
    result_accounting = validate(
        accounting,
        [
            E.ExpectTableRowCountToEqual(
                value=raw_total, description=f"decisions: expected one per raw line of the input files ({raw_total})"
            ),
            E.ExpectColumnValuesToBeInSet(
                column=cols.STATUS,
                value_set=[cols.SELECTED, cols.REJECTED, cols.QUARANTINED],
                description="decisions whose status is not selected, rejected or quarantined",
            ),
        ],
        "filtered_set.accounting",
        id_column=cols.ID,
    )
    return AssetCheckResult(
        passed=result_selected.passed and result_accounting.passed,
        severity=AssetCheckSeverity.ERROR,
        description="; ".join(r.description for r in (result_selected, result_accounting) if not r.passed)
        or f"{result_selected.description}; {result_accounting.description}",
        metadata={
            "selected_suite": result_selected.metadata["expectations"],
            "accounting_suite": result_accounting.metadata["expectations"],
            "raw_lines_in_input_files": raw_total,
            "decisions": len(decisions),
            "budget": budget,
        },
    )


@asset_check(asset=evaluation_report, description="Warns when the selected subset does not beat random subsets of the same size.")
def selection_beats_random(context: AssetCheckExecutionContext, storage: StorageResource) -> AssetCheckResult:
    materialization = upstream_materialization(context, evaluation_report.key)
    summary = materialization.metadata["summary"].value
    headline = summary.get("headline_numbers")
    if not headline:
        return AssetCheckResult(passed=True, severity=AssetCheckSeverity.WARN, description="no labelled evaluation set: nothing to compare")
    selected = headline.get("selected_accuracy")
    random_mean = headline.get("random_accuracy")
    frame = pd.DataFrame({"margin": [None if selected is None or random_mean is None else selected - random_mean]})
    result = validate(
        frame,
        [
            E.ExpectColumnValuesToNotBeNull(column="margin", description="build without a selected and a random accuracy to compare"),
            E.ExpectColumnValuesToBeBetween(
                column="margin",
                min_value=0.0,
                strict_min=True,
                description="build whose selected accuracy is not above the random subsets' mean",
            ),
        ],
        "evaluation_report",
        severity=AssetCheckSeverity.WARN,
        metadata={"selected_accuracy": selected, "random_accuracy": random_mean},
    )
    return result


@asset_check(asset=evaluation_report, description="Warns when the selected subset loses to the full pool beyond the paired 95% interval.")
def selection_not_worse_than_full_pool(context: AssetCheckExecutionContext) -> AssetCheckResult:
    materialization = upstream_materialization(context, evaluation_report.key)
    verdict = materialization.metadata["summary"].value.get("verdict")
    if not verdict or verdict.get("loses_to_full") is None:
        return AssetCheckResult(passed=True, severity=AssetCheckSeverity.WARN, description="no full-pool arm to compare against")
    return AssetCheckResult(
        passed=not verdict["loses_to_full"],
        severity=AssetCheckSeverity.WARN,
        description=verdict["sentence"],
        metadata={
            "selected_accuracy": verdict["selected_accuracy"],
            "full_accuracy": verdict["full_accuracy"],
            "difference": verdict["full_difference"],
            "interval_lo": verdict["full_difference_interval"][0],
            "interval_hi": verdict["full_difference_interval"][1],
        },
    )


@asset_check(
    asset=evaluation_set, blocking=True, description="The evaluation set shares no id and no content hash with the pool or the reference."
)
def evaluation_set_disjoint(context: AssetCheckExecutionContext, storage: StorageResource) -> AssetCheckResult:
    evaluation = read_parquet(storage.path("reference", "evaluation.parquet"), [cols.ID, cols.CONTENT_HASH])
    landed = storage.shard_files("raw_pool")
    pool = [
        storage.read_shard("raw_pool", key, [cols.ID, cols.CONTENT_HASH])
        for key in sorted(context.instance.get_dynamic_partitions(shards.name))
        if key in landed
    ]
    target = read_parquet(storage.path("reference", "target.parquet"), [cols.ID, cols.CONTENT_HASH])

    # Arrow hash-set lookups: no Python set of every pool id.
    def seen_in(column: str, tables: list) -> pa.ChunkedArray:
        values = pa.chunked_array([t.column(column) for t in tables], evaluation.schema.field(column).type).combine_chunks()
        return pc.is_in(evaluation.column(column), value_set=values)

    evaluation = evaluation.append_column("id_in_pool", seen_in(cols.ID, pool))
    evaluation = evaluation.append_column("content_in_pool_or_reference", seen_in(cols.CONTENT_HASH, [*pool, target])).to_pandas()
    return validate(
        evaluation[[cols.ID, "id_in_pool", "content_in_pool_or_reference"]],
        [
            E.ExpectColumnValuesToBeInSet(
                column="id_in_pool", value_set=[False], description="evaluation records whose id is also in the pool"
            ),
            E.ExpectColumnValuesToBeInSet(
                column="content_in_pool_or_reference",
                value_set=[False],
                description="evaluation records whose text is also in the pool or the reference",
            ),
        ],
        "evaluation_set",
        id_column=cols.ID,
    )


@asset_check(
    asset=evaluation_report, description="Warns when this build's selected-arm accuracy dropped beyond the tolerance vs the previous build."
)
def no_regression_vs_previous_build(context: AssetCheckExecutionContext) -> AssetCheckResult:
    materialization = upstream_materialization(context, evaluation_report.key)
    comparison = materialization.metadata["build_comparison"].value
    regression = bool(comparison.get("regression", False))
    delta = comparison.get("metric_deltas", {}).get("headline_numbers.selected_accuracy")
    return AssetCheckResult(
        passed=not regression,
        severity=AssetCheckSeverity.WARN,
        description="first build" if "note" in comparison else f"selected accuracy change vs previous build: {delta}",
        metadata={"regression": regression, "delta": delta, "added": comparison.get("n_added"), "removed": comparison.get("n_removed")},
    )


all_checks = [
    evaluation_set_disjoint,
    no_regression_vs_previous_build,
    raw_pool_valid,
    embeddings_valid,
    quality_scores_valid,
    filtered_set_valid,
    selection_beats_random,
    selection_not_worse_than_full_pool,
]
