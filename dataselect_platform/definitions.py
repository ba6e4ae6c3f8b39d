"""The code location: every asset, check, resource, job, schedule and sensor of the platform.

Resource settings come from environment variables (with local defaults), so the same
definitions serve ``dagster dev``, the daemon and the ``dataselect`` command.
"""


import os

from dagster import AssetSelection, AutomationConditionSensorDefinition, DefaultSensorStatus, Definitions

from jobs import all_jobs, all_schedules
from platform_assets.checks import all_checks
from platform_assets.embeddings import embeddings
from platform_assets.evaluation import evaluation_report
from platform_assets.ingest import evaluation_set, raw_pool, target_reference
from platform_assets.scoring import model_assets, quality_scores
from platform_assets.selection import filtered_set
from resources import EmbeddingResource, InputsResource, StorageResource
from sensors import landing_sensor

all_assets = [raw_pool, target_reference, evaluation_set, embeddings, *model_assets, quality_scores, filtered_set, evaluation_report]


def make_resources(
    landing_dir: str | None = None,
    reference_path: str | None = None,
    evaluation_path: str | None = None,
    store: str | None = None,
    embedding_backend: str | None = None,
) -> dict:
    env = os.environ.get
    return {
        "inputs": InputsResource(
            landing_dir=landing_dir or env("DATASELECT_LANDING", "data/landing"),
            reference_path=reference_path or env("DATASELECT_REFERENCE", "data/reference.jsonl"),
            evaluation_path=evaluation_path or env("DATASELECT_EVAL", "data/eval.jsonl"),
        ),
        "storage": StorageResource(root=store or env("DATASELECT_STORE", "data/store")),
        "embedding": EmbeddingResource(
            backend=embedding_backend or env("DATASELECT_EMBEDDING_BACKEND", "auto"),
            device=env("DATASELECT_DEVICE", "auto"),
        ),
    }


automation_sensor = AutomationConditionSensorDefinition(
    "automation",
    target=AssetSelection.all(),
    default_status=DefaultSensorStatus.RUNNING,
    description="Rescores shards when scorer models change and rebuilds the selection after per-shard assets change.",
)

defs = Definitions(
    assets=all_assets,
    asset_checks=all_checks,
    jobs=all_jobs,
    schedules=all_schedules,
    sensors=[landing_sensor, automation_sensor],
    resources=make_resources(),
)
