"""Which materialization of an upstream asset a step works from: the one its own run made."""

from dagster import AssetKey, AssetMaterialization, DagsterEventType, Failure


def upstream_materialization(context, key: AssetKey) -> AssetMaterialization:
    """The materialization of ``key`` made earlier in this run, so two builds running at once each
    read their own build; a run that did not rebuild ``key`` (a check or report launched on its
    own) reads the asset's current materialization, the version Dagster shows as its lineage."""
    records = context.instance.get_records_for_run(context.run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION).records
    own = [r.asset_materialization for r in records if r.asset_materialization and r.asset_materialization.asset_key == key]
    if own:
        return own[-1]
    current = context.instance.fetch_materializations(key, limit=1).records
    if not current:
        raise Failure(f"{key.to_user_string()} has not been materialized yet")
    return current[0].asset_materialization
