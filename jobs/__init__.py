"""Jobs and the retraining schedule.

- ``shard_ingest_job``: one shard's raw_pool -> embeddings -> quality_scores (what the sensor runs).
- ``selection_build_job``: the global steps, filtered_set -> evaluation_report.
- ``retraining_data_build_job``: refit the scorer models on the current pool, then the global steps;
  per-shard scores are refreshed by declarative automation when their models change.
- ``full_build_job``: everything (the UI's "materialize all", as one job).
"""


import os

from dagster import AssetSelection, ScheduleDefinition, define_asset_job

from platform_assets.partitions import shards
from platform_assets.scoring import DEFAULT_MODEL_KEYS

per_shard = AssetSelection.assets("raw_pool", "embeddings", "quality_scores")
global_steps = AssetSelection.assets("filtered_set", "evaluation_set", "evaluation_report")
fitted_models = AssetSelection.assets("target_reference", *DEFAULT_MODEL_KEYS)

shard_ingest_job = define_asset_job(
    "shard_ingest_job", selection=per_shard, partitions_def=shards, description="Parse, embed and score one landing shard."
)
selection_build_job = define_asset_job(
    "selection_build_job", selection=global_steps, description="Select under the budget and evaluate, across all shards."
)
retraining_data_build_job = define_asset_job(
    "retraining_data_build_job",
    selection=fitted_models | global_steps,
    description="A new versioned training-data build: refit scorer models on the current pool, reselect, re-evaluate.",
)
full_build_job = define_asset_job("full_build_job", selection=AssetSelection.all(), description="Every asset.")

RETRAINING_CRON_DEFAULT = "0 3 * * *"  # daily at 03:00


def retraining_schedule() -> ScheduleDefinition:
    """The retraining schedule, on ``$DATASELECT_RETRAINING_CRON`` read when the code location loads."""
    return ScheduleDefinition(
        name="retraining_data_build",
        job=retraining_data_build_job,
        cron_schedule=os.environ.get("DATASELECT_RETRAINING_CRON", RETRAINING_CRON_DEFAULT),
        description="Scheduled retraining data build: refit, reselect and re-evaluate on everything landed so far.",
    )


all_jobs = [shard_ingest_job, selection_build_job, retraining_data_build_job, full_build_job]
