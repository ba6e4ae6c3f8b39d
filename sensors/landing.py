"""The landing sensor: each new or changed landing file becomes a partition and one ingest run.

The run key is ``<shard key>:<file content hash>``, so one version of a file is processed
exactly once, even across daemon restarts (Dagster persists run keys and the cursor); an
edited file has a new hash and so gets a new run. A file whose current version is already in
``raw_pool`` (``dataselect build`` ingested it on this instance) gets no run.
"""

import json

from dagster import AssetRecordsFilter, DefaultSensorStatus, RunRequest, SensorEvaluationContext, SensorResult, SkipReason, sensor

from dataselect.ingest import list_landing_files
from jobs import shard_ingest_job
from platform_assets.ingest import raw_pool
from platform_assets.partitions import shards
from resources import InputsResource


def ingested_fingerprint(instance, shard: str) -> str | None:
    """The landing file version the latest raw_pool materialization of ``shard`` was parsed from."""
    records = instance.fetch_materializations(AssetRecordsFilter(asset_key=raw_pool.key, asset_partitions=[shard]), limit=1).records
    if not records:
        return None
    fingerprint = records[0].asset_materialization.metadata.get("fingerprint")
    return fingerprint.value if fingerprint is not None else None


@sensor(
    job=shard_ingest_job,
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="Watches the landing directory; adds a shard partition and requests its ingest run per new file version.",
)
def landing_sensor(context: SensorEvaluationContext, inputs: InputsResource):
    landing = inputs.landing()
    if not landing.exists():
        return SkipReason(f"landing directory {landing} does not exist yet")
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    files = list_landing_files(landing)
    changed = [f for f in files if seen.get(f.key) != f.fingerprint]
    if not changed:
        return SkipReason(f"no new or changed files among {len(files)} in {landing}")
    seen.update({f.key: f.fingerprint for f in changed})
    to_ingest = [f for f in changed if ingested_fingerprint(context.instance, f.key) != f.fingerprint]
    return SensorResult(
        run_requests=[
            RunRequest(partition_key=f.key, run_key=f"{f.key}:{f.fingerprint}", tags={"landing_file": str(f.path)}) for f in to_ingest
        ],
        dynamic_partitions_requests=[shards.build_add_request(sorted({f.key for f in changed}))],
        cursor=json.dumps(seen, sort_keys=True),
        skip_reason=None if to_ingest else SkipReason(f"{len(changed)} file(s) already ingested at their current version"),
    )
