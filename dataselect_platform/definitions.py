"""The code location: every asset, check, resource, job, schedule and sensor of the platform.

Only wiring. Dagster calls :func:`defs` when it loads the location, and resources read their
environment variables when a run uses them, so importing this module reads no environment.
"""

from dagster import Definitions, definitions

from jobs import all_jobs, retraining_schedule
from platform_assets.checks import all_checks
from platform_assets.embeddings import embeddings
from platform_assets.evaluation import evaluation_analyses, evaluation_features, evaluation_full_pool_arm, evaluation_report
from platform_assets.ingest import evaluation_set, raw_pool, target_reference
from platform_assets.scoring import model_assets, quality_scores
from platform_assets.selection import filtered_set
from resources import make_resources
from sensors import automation_sensor, landing_sensor

all_assets = [
    raw_pool,
    target_reference,
    evaluation_set,
    embeddings,
    *model_assets,
    quality_scores,
    filtered_set,
    evaluation_features,
    evaluation_full_pool_arm,
    evaluation_report,
    evaluation_analyses,
]


@definitions
def defs() -> Definitions:
    return Definitions(
        assets=all_assets,
        asset_checks=all_checks,
        jobs=all_jobs,
        schedules=[retraining_schedule()],
        sensors=[landing_sensor, automation_sensor],
        resources=make_resources(),
    )
