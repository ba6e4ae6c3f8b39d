"""Jobs and the retraining schedule.

The build (``jobs/build_plan.py`` orders them; ``dataselect build`` launches them):

- ``shard_embed_job``: one shard's raw_pool -> embeddings.
- ``model_fit_job``: the target reference and the default recipe's scorer models, fit on the pool.
- ``shard_score_job``: one shard's quality_scores from the fitted models.
- ``selection_build_job``: the global steps, filtered_set -> evaluation_report (evaluation_features beside the shards'
  scoring, evaluation_full_pool_arm beside the selection, evaluation_analyses beside the report).

Launched by the platform itself:

- ``shard_ingest_job``: one new landing shard's raw_pool -> embeddings -> quality_scores (what the sensor runs).
- ``retraining_data_build_job``: refit the scorer models on the current pool, then the global steps;
  per-shard scores are refreshed by declarative automation when their models change.
- ``full_build_job``: everything (the UI's "materialize all", as one job).
"""

import os

from dagster import AssetSelection, ScheduleDefinition, define_asset_job

from jobs.executor import platform_executor
from platform_assets.partitions import shards
from platform_assets.scoring import DEFAULT_MODEL_KEYS

per_shard = AssetSelection.assets("raw_pool", "embeddings", "quality_scores")
global_steps = AssetSelection.assets(
    "filtered_set", "evaluation_set", "evaluation_features", "evaluation_full_pool_arm", "evaluation_report", "evaluation_analyses"
)
fitted_models = AssetSelection.assets("target_reference", *DEFAULT_MODEL_KEYS)


def _job(name: str, selection: AssetSelection, description: str, partitioned: bool = False):
    return define_asset_job(
        name, selection=selection, partitions_def=shards if partitioned else None, executor_def=platform_executor, description=description
    )


shard_embed_job = _job("shard_embed_job", AssetSelection.assets("raw_pool", "embeddings"), "Parse and embed one landing shard.", True)
model_fit_job = _job("model_fit_job", fitted_models, "Embed the target reference and fit the default scorer models on the pool.")
shard_score_job = _job("shard_score_job", AssetSelection.assets("quality_scores"), "Score one shard with the fitted models.", True)
selection_build_job = _job("selection_build_job", global_steps, "Select under the budget and evaluate, across all shards.")
shard_ingest_job = _job("shard_ingest_job", per_shard, "Parse, embed and score one landing shard.", True)
retraining_data_build_job = _job(
    "retraining_data_build_job",
    fitted_models | global_steps,
    "A new versioned training-data build: refit scorer models on the current pool, reselect, re-evaluate.",
)
full_build_job = _job("full_build_job", AssetSelection.all(), "Every asset.")

RETRAINING_CRON_DEFAULT = "0 3 * * *"  # daily at 03:00


def retraining_schedule() -> ScheduleDefinition:
    """The retraining schedule, on ``$DATASELECT_RETRAINING_CRON`` read when the code location loads."""
    return ScheduleDefinition(
        name="retraining_data_build",
        job=retraining_data_build_job,
        cron_schedule=os.environ.get("DATASELECT_RETRAINING_CRON", RETRAINING_CRON_DEFAULT),
        description="Scheduled retraining data build: refit, reselect and re-evaluate on everything landed so far.",
    )


all_jobs = [
    shard_embed_job,
    model_fit_job,
    shard_score_job,
    selection_build_job,
    shard_ingest_job,
    retraining_data_build_job,
    full_build_job,
]
