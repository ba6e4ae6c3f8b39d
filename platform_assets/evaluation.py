"""evaluation_report: does the selection beat random subsets of the same size, and the full pool?

evaluation_features counts the pool's terms for the report's TF-IDF arms, and
evaluation_full_pool_arm trains the full pool's arm from them; neither needs the selection, so a
build counts while the shards are scored and trains the arm beside the selection, on the core the
selection leaves idle. evaluation_analyses (the budget sweep and the ablation) needs nothing from
the report, so a build runs it beside the report.
"""

from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
from dagster import (
    AssetExecutionContext,
    AutomationCondition,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from dataselect import full_pool_arm, pool_terms
from dataselect import records as cols
from dataselect.build import decided_records
from dataselect.build_analyses import DEFAULT_BUDGETS, AnalysesConfig, analyse_build
from dataselect.build_report import BuildEvaluation, ReportConfig, comparison_record, evaluate_build
from dataselect.evaluation import ABLATION_COLUMNS, SWEEP_COLUMNS, ArmEvaluator
from dataselect.evaluation import Config as RecipeConfig
from dataselect.ingest import read_reference
from dataselect.report import headline_markdown, write_report
from dataselect.selection import SelectionConfig
from dataselect.shard_pool import ShardPool
from dataselect.storage import (
    exists,
    parquet_metadata,
    parquet_num_rows,
    parquet_schema,
    read_json,
    read_parquet,
    write_json,
    write_parquet,
)
from dataselect.tuning import split_evaluation, tune_table
from platform_assets.ingest import evaluation_set, raw_pool, target_reference
from platform_assets.lineage import upstream_materialization
from platform_assets.metadata import png_markdown, table_preview
from platform_assets.partitions import GPU_POOL, shards
from platform_assets.selection import filtered_set
from resources import EmbeddingResource, InputsResource, StorageResource

_DEFAULTS = ReportConfig()
_ANALYSES = AnalysesConfig()
_RECIPE = RecipeConfig()  # the report's fixed recipe: its n-gram range and min_df are what is counted
# Above it the pool's text and term counts are not held (evaluation_features stops counting there too).
_STREAM_ABOVE = 250_000


class EvaluationFeaturesConfig(Config):
    max_records: int = Field(
        _STREAM_ABOVE,
        description="Count the terms before the selection for pools of at most this many records: the step holds the "
        "whole pool's text and n-gram matrices beside the shards' scoring runs, so above it the report counts them itself.",
    )


def _pool_terms_fingerprint(shard_fingerprints: dict[str, str]) -> str:
    return pool_terms.pool_fingerprint(shard_fingerprints, _RECIPE.ngram_range, _RECIPE.min_df)


@asset(
    deps=[raw_pool],
    automation_condition=AutomationCondition.eager(),
    group_name="evaluate",
    kinds={"python", "parquet"},
    description="The report recipe's word n-gram counts of every pool record (CountVectorizer's matrix), made while the "
    "shards are scored so the report does not; skipped without a labelled evaluation file.",
)
def evaluation_features(
    context: AssetExecutionContext, config: EvaluationFeaturesConfig, inputs: InputsResource, storage: StorageResource
) -> MaterializeResult:
    keys = _pool_keys(context, storage)
    if inputs.evaluation() is None:
        return MaterializeResult(metadata={"skipped": "no evaluation file: the report trains no arms"})
    n_records = sum(parquet_num_rows(storage.shard_file("raw_pool", k)) for k in keys)
    if n_records > config.max_records:
        return MaterializeResult(metadata={"skipped": f"{n_records:,} pool records, above max_records: the report counts them itself"})
    counted = pool_terms.count(pool_texts(storage, keys), _RECIPE.ngram_range, _RECIPE.min_df, _current_terms_fingerprint(storage, keys))
    pool_terms.write(storage.path("evaluation_features"), counted)
    metadata = {
        "fingerprint": counted.fingerprint,
        "dagster/row_count": counted.matrix.shape[0],
        "terms": counted.matrix.shape[1],
        "nonzeros": int(counted.matrix.nnz),
        "shards": len(keys),
    }
    return MaterializeResult(metadata=metadata)


def pool_texts(storage: StorageResource, keys: list[str]) -> pa.ChunkedArray:
    """The shards' raw texts in key order, as one large-string column (what the term counting reads)."""
    columns = [storage.read_shard("raw_pool", k, [cols.TEXT]).column(cols.TEXT).cast(pa.large_string()) for k in keys]
    return pa.chunked_array([chunk for column in columns for chunk in column.chunks], pa.large_string())


def _pool_keys(context: AssetExecutionContext, storage: StorageResource) -> list[str]:
    """The registered shards that have a raw_pool file, in key order (the pool's row order)."""
    return sorted(k for k in context.instance.get_dynamic_partitions(shards.name) if k in storage.shard_files("raw_pool"))


def _current_terms_fingerprint(storage: StorageResource, keys: list[str]) -> str:
    return _pool_terms_fingerprint({k: parquet_metadata(storage.shard_file("raw_pool", k))["fingerprint"] for k in keys})


@asset(
    deps=[evaluation_features],
    automation_condition=AutomationCondition.eager(),
    group_name="evaluate",
    kinds={"python", "parquet", "scikit-learn"},
    description="The report's full-pool arm (the TF-IDF recipe on every labelled pool record, from evaluation_features' "
    "counts) and its prediction for each evaluation text, trained beside the selection so the report does not; skipped "
    "when there are no counts of the current shards.",
)
def evaluation_full_pool_arm(context: AssetExecutionContext, inputs: InputsResource, storage: StorageResource) -> MaterializeResult:
    keys = _pool_keys(context, storage)
    eval_path = inputs.evaluation()
    counted = pool_terms.read(storage.path("evaluation_features"), _current_terms_fingerprint(storage, keys)) if eval_path else None
    if counted is None:
        return MaterializeResult(
            metadata={"skipped": "no term counts of the current shards (no evaluation file, or a pool the report reads from its shards)"}
        )
    # Labels only: the counts stand for the texts. Row positions as ids: a shard's ids may repeat in another.
    labels = pd.concat([storage.read_shard("raw_pool", k, [cols.LABEL]).to_pandas() for k in keys], ignore_index=True)
    pool = labels.assign(**{cols.ID: np.arange(len(labels)).astype(str)})
    eval_set = read_reference(eval_path).records.to_pandas()
    if not len(eval_set) or eval_set[cols.LABEL].isna().any() or pool[cols.LABEL].isna().all():
        return MaterializeResult(metadata={"skipped": "the report needs every evaluation record and some pool records labelled"})
    stored = ArmEvaluator(pool, eval_set, "tfidf_logreg", pool_terms=counted).predict_full_pool()
    full_pool_arm.write(storage.path("evaluation_full_pool_arm"), stored)
    trained = int(pool[cols.LABEL].notna().sum())
    return MaterializeResult(
        metadata={"fingerprint": stored.fingerprint, "trained_on": trained, "fit_seconds": round(stored.fit_seconds, 2)}
    )


class BuildToEvaluate(NamedTuple):
    """What the report reads of one build: its decisions, manifest and selection config, the pool it chose from."""

    decisions: pd.DataFrame
    manifest: dict
    pool: pd.DataFrame  # id, text, label of the build's shards' records, in shard order
    pool_vectors: np.ndarray
    target_texts: list[str]
    target_vectors: np.ndarray
    eval_set: pd.DataFrame | None  # after --tune, only the half no recipe was chosen on
    selection: SelectionConfig  # the one that made the build (the tuned one after --tune)
    shards: ShardPool | None = None  # read from the shards: ``pool`` is then id and label, ``pool_vectors`` None


def read_manifest(storage: StorageResource, build_id: str) -> dict:
    path = storage.path("builds", build_id, "manifest.json")
    if not exists(path):
        raise Failure(f"build {build_id!r} is not in the store {storage.root}: nothing to evaluate", allow_retries=False)
    return read_json(path)


def read_build(storage: StorageResource, build_id: str, stream: bool = False) -> BuildToEvaluate:
    """The build's pool in memory, or (``stream``) its ids and labels with its texts and vectors left in
    the shards, and only the decisions' columns the report reads."""
    build = storage.path("builds", build_id)
    manifest = read_manifest(storage, build_id)
    keys = sorted(manifest["input_shards"])
    columns = [cols.ID, cols.LABEL] if stream else [cols.ID, cols.TEXT, cols.LABEL]
    pool = pd.concat([storage.read_shard("raw_pool", k, columns).to_pandas() for k in keys], ignore_index=True)
    shards = ShardPool(*([storage.shard_file(a, k) for k in keys] for a in ("raw_pool", "embeddings"))) if stream else None
    target, target_vectors = storage.read_target()
    eval_set = read_parquet(storage.path("reference", "evaluation.parquet")).to_pandas()
    eval_set = eval_set if len(eval_set) else None
    tuned = manifest["config"].get("tune")
    if tuned and eval_set is not None:
        eval_set = split_evaluation(eval_set)[1]  # the recipe was chosen on the tune half: report on the rest
    decisions = build / "decisions.parquet"
    return BuildToEvaluate(
        read_parquet(decisions, _report_columns(decisions) if stream else None).to_pandas(),
        manifest,
        pool,
        None if stream else storage.read_pool_embeddings(keys),
        target.column(cols.TEXT).to_pylist(),
        target_vectors,
        eval_set,
        SelectionConfig(**(tuned or manifest["config"])["selection"]),
        shards,
    )


def _report_columns(decisions_path) -> list[str]:
    """What the report reads of the decisions: who decided, the scores and every scorer's keep flag
    (at 1M records the rest, the scorers' own measurements, is most of the table's 0.6 GB)."""
    wanted = {cols.ID, cols.SHARD, cols.ROW, cols.STATUS, cols.DECIDED_BY, cols.LABEL, cols.FUSED_SCORE}
    names = parquet_schema(decisions_path).names
    return [n for n in names if n in wanted or n.endswith((".keep", ".score"))]


def stored_pool_terms(storage: StorageResource, manifest: dict) -> pool_terms.PoolTerms | None:
    """The term counts evaluation_features made of exactly the build's shards, if it did."""
    return pool_terms.read(storage.path("evaluation_features"), _pool_terms_fingerprint(manifest["input_shards"]))


def stored_full_pool_arm(storage: StorageResource) -> full_pool_arm.FullPoolPredictions | None:
    """The full-pool predictions evaluation_full_pool_arm stored, if any (the report's evaluator checks they are its own)."""
    return full_pool_arm.read(storage.path("evaluation_full_pool_arm"))


class _Evaluated(NamedTuple):
    build_id: str
    build: BuildToEvaluate
    counted: pool_terms.PoolTerms | None  # evaluation_features' term counts of the build's shards, if any
    full_pool: full_pool_arm.FullPoolPredictions | None


def _build_to_evaluate(
    context: AssetExecutionContext,
    build_id: str | None,
    recipe: str,
    storage: StorageResource,
    embedding: EmbeddingResource,
    stream_above: int | None = None,
) -> _Evaluated:
    """The build the report (or the analyses) evaluates, with what evaluation_features made for it;
    with the TF-IDF recipe, a pool of more than ``stream_above`` records is left in its shards."""
    build_id = build_id or upstream_materialization(context, filtered_set.key).metadata["build_id"].value
    stream = recipe == "tfidf_logreg" and stream_above is not None and decided_records(read_manifest(storage, build_id)) > stream_above
    build = read_build(storage, build_id, stream)
    if build.eval_set is not None and recipe == "embedding_probe":
        build.eval_set.attrs["embeddings"] = embedding.get_embedder().embed(build.eval_set[cols.TEXT].tolist())
    # The counts evaluation_features made of exactly these shards, if it did; otherwise counted here.
    counted = stored_pool_terms(storage, build.manifest) if build.eval_set is not None and recipe == "tfidf_logreg" and not stream else None
    return _Evaluated(build_id, build, counted, stored_full_pool_arm(storage) if counted is not None else None)


class EvaluationConfig(Config):
    recipe: str = Field(_DEFAULTS.recipe, description="tfidf_logreg | embedding_probe (fixed; only the subset varies)")
    random_seeds: list[int] = Field(list(_DEFAULTS.random_seeds), description="Independent seeds of the random arms (≥ 5).")
    regression_tolerance: float = Field(_DEFAULTS.regression_tolerance, description="Accuracy drop vs the previous build that warns.")
    build_id: str | None = Field(
        None,
        description="The filtered_set build to evaluate; unset: the one this run made, else the current materialization. "
        "The build runner sets it, since its report runs after the selection's run.",
    )
    stream_above_records: int = Field(
        _STREAM_ABOVE,
        description="With the TF-IDF recipe, a pool of more records is read from its shards rather than held: each arm counts "
        "its own texts, the full pool's arm is trained shard by shard (its vocabulary chosen on a 100k-record sample), and "
        "the full pool's embedding metrics read a 100k-record sample.",
    )


@asset(
    deps=[filtered_set, target_reference, evaluation_set, evaluation_features, evaluation_full_pool_arm],
    automation_condition=AutomationCondition.eager(),
    group_name="evaluate",
    kinds={"scikit-learn", "html"},
    pool=GPU_POOL,
    description="A fixed training recipe (DataComp style) trained on the selected set, random sets of the same size "
    "and the full pool, evaluated on the labelled target evaluation set; label-free metrics; plots; one HTML report.",
)
def evaluation_report(
    context: AssetExecutionContext,
    config: EvaluationConfig,
    storage: StorageResource,
    embedding: EmbeddingResource,
) -> MaterializeResult:
    build_id, inputs, counted, full_pool = _build_to_evaluate(
        context, config.build_id, config.recipe, storage, embedding, config.stream_above_records
    )
    build, decisions, manifest, eval_set = storage.path("builds", build_id), inputs.decisions, inputs.manifest, inputs.eval_set
    tuned = manifest["config"].get("tune")

    previous_path = storage.path("builds", "latest_evaluation.json")
    previous = read_json(previous_path) if exists(previous_path) else None
    if previous is not None and previous.get("build_id") == build_id:
        previous = previous.get("previous")
    result = evaluate_build(
        decisions,
        inputs.pool,
        inputs.pool_vectors,
        inputs.target_texts,
        inputs.target_vectors,
        inputs.selection,
        eval_set,
        previous,
        ReportConfig(
            recipe=config.recipe,
            random_seeds=tuple(config.random_seeds),
            regression_tolerance=config.regression_tolerance,
        ),
        counted,
        full_pool,
        inputs.shards,
    )
    result.summary["build_id"] = build_id
    if tuned:
        result.summary["tune"] = {k: v for k, v in tuned.items() if k not in ("grid", "selection")}
        result.tables["tune_grid"] = pd.DataFrame(tuned["grid"])
    paths = write_report(str(build / "report"), result.summary, result.tables, result.figures)
    selected_ids = decisions.loc[decisions[cols.STATUS] == cols.SELECTED, cols.ID].tolist()
    write_json(previous_path, {"build_id": build_id, **comparison_record(result.summary, selected_ids), "previous": previous})

    comparison = result.summary.get("build_comparison")
    return MaterializeResult(
        metadata={
            "build_id": build_id,
            "headline": MetadataValue.md(
                headline_markdown(result.summary) if "headline" in result.summary else "_no labelled evaluation set_"
            ),
            "summary": MetadataValue.json(
                {
                    k: result.summary[k]
                    for k in ("headline_numbers", "verdict", "tune", "n_selected", "n_pool", "seconds")
                    if k in result.summary
                }
            ),
            **({"tune_grid": MetadataValue.md(tune_table(tuned["grid"]))} if tuned else {}),
            "pool_term_counts": "read from evaluation_features"
            if counted is not None
            else "each arm's counted from its texts, read from the shards"
            if inputs.shards is not None
            else "counted in this step",
            "full_pool_arm": result.summary.get("full_pool_arm", "not trained"),
            "label_free_metrics": MetadataValue.json(result.summary["label_free"]),
            "build_comparison": MetadataValue.json(comparison or {"note": "first build"}),
            "plots": MetadataValue.md("\n\n".join(png_markdown(name, png) for name, png in result.figures.items())),
            "report_html": MetadataValue.path(paths.html),
            "summary_json": MetadataValue.path(paths.summary_json),
        }
    )


class EvaluationAnalysesConfig(Config):
    recipe: str = Field(_DEFAULTS.recipe, description="The report's recipe (tfidf_logreg | embedding_probe), so the numbers compare.")
    random_seeds: list[int] = Field(list(_ANALYSES.random_seeds), description="Seeds of the random arms at every budget.")
    budgets: list[float] | None = Field(
        None,
        description=f"Budget sweep as pool fractions; [] skips it; unset: {list(DEFAULT_BUDGETS)} for pools of at most "
        f"{_ANALYSES.max_records:,} records, none above.",
    )
    ablation: bool | None = Field(
        None,
        description=f"Rebuild the selection with each scorer left out; unset: on for pools of at most {_ANALYSES.max_records:,} records.",
    )
    build_id: str | None = Field(
        None, description="The filtered_set build to analyse; unset: the one this run made, else the current materialization."
    )


@asset(
    deps=[filtered_set, evaluation_set, evaluation_features, evaluation_full_pool_arm],
    automation_condition=AutomationCondition.eager(),
    group_name="evaluate",
    kinds={"scikit-learn", "html"},
    description="The selection re-run at other budgets and with each scorer left out, each trained with the report's recipe "
    "beside random sets of the same size: a budget curve and an ablation table. Runs beside evaluation_report; skipped by "
    f"default above {_ANALYSES.max_records:,} pool records.",
)
def evaluation_analyses(
    context: AssetExecutionContext, config: EvaluationAnalysesConfig, storage: StorageResource, embedding: EmbeddingResource
) -> MaterializeResult:
    settings = AnalysesConfig.from_options(config.model_dump())
    build_id = config.build_id or upstream_materialization(context, filtered_set.key).metadata["build_id"].value
    n_pool = decided_records(read_manifest(storage, build_id))
    if not settings.runs_anything(n_pool):  # the build's pool is not even read
        result = BuildEvaluation({"n_pool": n_pool, "skipped": settings.skip_reason(n_pool) or "no budgets and no ablation asked for"})
    else:
        _, inputs, counted, full_pool = _build_to_evaluate(context, build_id, config.recipe, storage, embedding)
        result = analyse_build(
            inputs.decisions, inputs.pool, inputs.pool_vectors, inputs.selection, inputs.eval_set, settings, counted, full_pool
        )
    result.summary["build_id"] = build_id
    folder = storage.path("builds", build_id, "analyses")
    paths = write_report(str(folder), result.summary, result.tables, result.figures, "Budget sweep and ablation")
    # Machine-readable beside the page; both tables every time (empty when not run), so a rerun
    # that skips leaves no older table behind, nor an older budget curve.
    for name, columns in (("budget_sweep", SWEEP_COLUMNS), ("ablation", ABLATION_COLUMNS)):
        table = result.tables.get(name, pd.DataFrame(columns=columns))
        write_parquet(folder / f"{name}.parquet", pa.Table.from_pandas(table, preserve_index=False))
    if "budget_curve" not in result.figures and exists(folder / "budget_curve.png"):
        (folder / "budget_curve.png").unlink()
    tables = {name: MetadataValue.md(table_preview(table, list(table.columns), limit=40)) for name, table in result.tables.items()}
    return MaterializeResult(
        metadata={
            "build_id": build_id,
            **({"skipped": result.summary["skipped"]} if "skipped" in result.summary else {}),
            **tables,
            "plots": MetadataValue.md("\n\n".join(png_markdown(name, png) for name, png in result.figures.items()) or "_none_"),
            "analyses_html": MetadataValue.path(paths.html),
        }
    )
