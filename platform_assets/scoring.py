"""Fitted scorer models (one asset each, so their lineage shows) and quality_scores per shard."""

import json

import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    AutomationCondition,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from dataselect import records as cols
from dataselect.build import decontamination_version
from dataselect.decontamination import EvaluationNgrams
from dataselect.ingest import read_reference
from dataselect.pipeline import fingerprint, make_scorers, pool_sample, records_fingerprint, score_shard
from dataselect.scorers import DEFAULT_SHARD_SCORERS, SCORERS
from dataselect.scorers.base import Batch
from dataselect.storage import parquet_metadata, parquet_num_rows, write_parquet
from platform_assets.embeddings import embeddings
from platform_assets.ingest import raw_pool, target_reference
from platform_assets.partitions import GPU_POOL, shards
from resources import InputsResource, StorageResource


class FitConfig(Config):
    sample_size: int | None = Field(
        None,
        description="Pool records sampled (content-keyed, deterministic) to fit against the target; None: the scorer's own "
        "size (5,000; 50,000 for label_classifier, whose fold models train on up to 20,000 records each).",
    )
    seed: int = Field(0, description="Seed of the sample and of the fit.")
    options: dict = Field(default_factory=dict, description="Scorer Config overrides, e.g. {'num_buckets': 20000}.")


def _summary(scorer_class) -> str:
    lines = (scorer_class.__doc__ or "").strip().splitlines()
    return lines[0] if lines else scorer_class.__name__


def fitted_model_asset(scorer_name: str) -> AssetsDefinition:
    scorer_class = SCORERS[scorer_name]

    @asset(
        name=f"{scorer_name}_model",
        deps=[target_reference, raw_pool] + ([embeddings] if scorer_class().needs_embeddings else []),
        group_name="fit",
        kinds={scorer_class.library, "safetensors"},
        pool=GPU_POOL if scorer_class.device == "gpu" else None,
        description=f"The fitted state of the '{scorer_name}' scorer ({_summary(scorer_class)}), "
        "fit on the target reference and a bounded sample of the pool. Refit by the retraining build.",
    )
    def _fit(context: AssetExecutionContext, config: FitConfig, storage: StorageResource) -> MaterializeResult:
        keys = sorted(storage.shard_files("raw_pool"))
        columns = [cols.ID, cols.TEXT, cols.CONTENT_HASH, cols.LABEL, cols.SHARD, cols.ROW]
        total = sum(parquet_num_rows(storage.shard_file("raw_pool", k)) for k in keys)
        scorer = make_scorers([scorer_name], {scorer_name: config.options})[0]
        needs_vectors = scorer.needs_embeddings  # may depend on its options (label_classifier's features)
        shard_data = ((storage.read_shard("raw_pool", k, columns), storage.read_embeddings(k) if needs_vectors else None) for k in keys)
        sample = pool_sample(shard_data, total, config.sample_size or scorer_class.fit_sample_size, config.seed)
        target_records, target_vectors = storage.read_target()
        scorer.fit(sample, Batch(target_records, target_vectors if needs_vectors else None))
        scorer.save(storage.model_dir(scorer_name))
        return MaterializeResult(
            metadata={
                "pool_sample_size": len(sample),
                "target_size": target_records.num_rows,
                "config": MetadataValue.json(vars(scorer.config)),
                "path": MetadataValue.path(str(storage.model_dir(scorer_name))),
            }
        )

    return _fit


FIT_SCORERS = [name for name, cls in SCORERS.items() if cls.needs_fit and cls.stage == "shard"]
model_assets = [fitted_model_asset(name) for name in FIT_SCORERS]
# Models the default recipe uses; the others (e.g. color_model) are fitted when a user opts in.
DEFAULT_MODEL_KEYS = [f"{name}_model" for name in FIT_SCORERS if name in DEFAULT_SHARD_SCORERS]


# quality_scores' file metadata: the version of its scoring (see scoring_version) and the fitted models' versions.
SCORED_WITH, MODELS = "scored_with", "models"
# The evaluation set a shard's decontamination.* columns were found against (decontamination_version).
DECONTAMINATED_AGAINST = "decontaminated_against"


def evaluation_records(inputs: InputsResource) -> pd.DataFrame | None:
    """The evaluation records (id, text, label), read as the evaluation_set asset reads them, so that
    pool records overlapping them are left out; None without an evaluation file."""
    path = inputs.evaluation()
    if path is None:
        return None
    records = read_reference(path).records.select([cols.ID, cols.TEXT, cols.LABEL]).to_pandas()
    return records if len(records) else None


def scoring_version(scorers: list[str], options: dict, models: dict[str, str]) -> str:
    """What a shard's scores depend on besides its records: the scorers, their settings and the
    fitted models' versions. Shards of one version have comparable scores."""
    return fingerprint("scoring-v1", list(scorers), options, dict(sorted(models.items())))[:16]


class ScoringConfig(Config):
    scorers: list[str] = Field(default_factory=lambda: list(DEFAULT_SHARD_SCORERS), description="Shard-stage scorers to run.")
    options: dict = Field(
        default_factory=dict, description="Per-scorer Config overrides for unfitted scorers, e.g. {'heuristics': {'min_words': 20}}."
    )


@asset(
    partitions_def=shards,
    # Lineage to the default recipe's models; an opt-in scorer's model (e.g. color_model) is
    # read when configured but not a dependency, so automation never waits for an unfitted one.
    deps=[raw_pool, embeddings, *[a for a in model_assets if a.key.to_user_string() in DEFAULT_MODEL_KEYS]],
    # Rescore a shard when its embeddings or a scorer model is newer than its scores.
    automation_condition=AutomationCondition.eager(),
    group_name="score",
    kinds={"python", "parquet"},
    description="Per-record quality and relevance scores of one shard: heuristic rules (each value and pass/fail), "
    "DSIR importance log-weight, learned target relevance, MinHash signatures, and with an evaluation file the records "
    "sharing long word n-grams with it (decontamination); one row per raw_pool record.",
)
def quality_scores(
    context: AssetExecutionContext, config: ScoringConfig, storage: StorageResource, inputs: InputsResource
) -> MaterializeResult:
    key = context.partition_key
    records = storage.read_shard("raw_pool", key)
    scorers, models = [], {}
    for name in config.scorers:
        cls = SCORERS[name]
        if cls.stage != "shard":
            raise ValueError(f"scorer {name!r} runs on the whole pool, not per shard; configure it on filtered_set")
        if cls.needs_fit:
            model = storage.model_dir(name)
            if not (model / f"{name}.json").exists():
                raise FileNotFoundError(f"scorer {name!r} has no fitted model at {model}: materialize {name}_model first")
            scorer, models[name] = cls.load_versioned(model)
            scorers.append(scorer)
        else:
            scorers.extend(make_scorers([name], config.options))
    needs_vectors = any(s.needs_embeddings for s in scorers)
    vectors = None
    if needs_vectors:
        embedded_from = parquet_metadata(storage.shard_file("embeddings", key)).get("source")
        if embedded_from != records_fingerprint(records):
            raise Failure(
                f"shard {key!r}: embeddings are from another version of raw_pool; materialize embeddings first", allow_retries=False
            )
        vectors = storage.read_embeddings(key)
    # Decontamination here rather than in the selection: it reads the tokens the n-gram scorers cut.
    evaluation = evaluation_records(inputs)
    found_against = (
        EvaluationNgrams(evaluation[cols.ID].astype(str).tolist(), evaluation[cols.TEXT].tolist()) if evaluation is not None else None
    )
    table = score_shard(records, vectors, scorers, found_against)
    target = storage.shard_file("quality_scores", key)
    # The raw shard version these scores belong to, and what scored it (scorers, settings, fitted
    # models' versions): the selection refuses shards of mixed versions of either.
    source = parquet_metadata(storage.shard_file("raw_pool", key))["fingerprint"]
    scored_with = scoring_version(config.scorers, config.options, models)
    file_metadata = {"scorers": ",".join(config.scorers), "fingerprint": source, SCORED_WITH: scored_with, MODELS: json.dumps(models)}
    if evaluation is not None:
        file_metadata[DECONTAMINATED_AGAINST] = decontamination_version(evaluation)
    write_parquet(target, table, file_metadata)
    keep_columns = [c for c in table.column_names if c.endswith(".keep")]
    frame = table.select(keep_columns).to_pandas() if keep_columns else None
    return MaterializeResult(
        metadata={
            "dagster/row_count": table.num_rows,
            "scorers": ", ".join(config.scorers),
            "scored_with": scored_with,
            "model_versions": MetadataValue.json(models),
            "hard_filter_pass_rate": MetadataValue.json(
                {c: round(float(frame[c].mean()), 4) for c in keep_columns} if frame is not None else {}
            ),
            "path": MetadataValue.path(str(target)),
        }
    )
