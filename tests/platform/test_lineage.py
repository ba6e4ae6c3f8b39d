"""A step finds its build through the materialization its own run made, not the latest one: when
another build's filtered_set lands while this run is between steps, this run still reads its own."""

from dagster import AssetMaterialization, MaterializeResult, asset, instance_for_test, materialize

from platform_assets.lineage import upstream_materialization


@asset(key="filtered_set")
def this_runs_build() -> MaterializeResult:
    return MaterializeResult(metadata={"build_id": "mine"})


@asset(deps=[this_runs_build])
def reader(context) -> MaterializeResult:
    # A concurrent build's selection finishes between our two steps.
    context.instance.report_runless_asset_event(AssetMaterialization("filtered_set", metadata={"build_id": "theirs"}))
    latest = context.instance.get_latest_materialization_event(this_runs_build.key).asset_materialization
    own = upstream_materialization(context, this_runs_build.key)
    return MaterializeResult(metadata={"latest": latest.metadata["build_id"].value, "own": own.metadata["build_id"].value})


@asset(deps=[this_runs_build])
def later_reader(context) -> MaterializeResult:
    return MaterializeResult(metadata={"current": upstream_materialization(context, this_runs_build.key).metadata["build_id"].value})


def test_a_step_reads_its_own_runs_build_even_when_another_landed_later():
    with instance_for_test() as instance:
        result = materialize([this_runs_build, reader], instance=instance)
        [metadata] = [m.metadata for m in result.asset_materializations_for_node("reader")]
        assert metadata["latest"].value == "theirs"  # what a "latest" lookup would have read
        assert metadata["own"].value == "mine"
        # A run that does not rebuild filtered_set (a report launched on its own) reads its current version.
        later = materialize([this_runs_build, later_reader], selection=[later_reader], instance=instance)
        [metadata] = [m.metadata for m in later.asset_materializations_for_node("later_reader")]
        assert metadata["current"].value == "theirs"
