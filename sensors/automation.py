"""The automation sensor: evaluates the assets' automation conditions (rescore, reselect)."""

from dagster import AssetSelection, AutomationConditionSensorDefinition, DefaultSensorStatus

automation_sensor = AutomationConditionSensorDefinition(
    "automation",
    target=AssetSelection.all(),
    default_status=DefaultSensorStatus.RUNNING,
    description="Rescores shards when scorer models change and rebuilds the selection after per-shard assets change.",
)
