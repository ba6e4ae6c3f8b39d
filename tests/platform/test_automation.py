"""Declarative automation: a rescored shard rebuilds the selection; a refitted model rescores every shard."""

import dagster as dg

from dataselect_platform.definitions import defs
from platform_assets.scoring import DEFAULT_MODEL_KEYS

GLOBAL_STEPS = ["filtered_set", "evaluation_features", "evaluation_full_pool_arm", "evaluation_report", "evaluation_analyses"]


def requested(result, keys):
    return {k: result.get_num_requested(dg.AssetKey(k)) for k in keys if result.get_num_requested(dg.AssetKey(k))}


def test_automation_rebuilds_selection_and_rescores_on_model_refit():
    definitions = defs()
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("shards", ["a", "b"])

    def materialized(key, partition=None):
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition=partition))

    for key in ["raw_pool", "embeddings", "quality_scores"]:
        for shard in "ab":
            materialized(key, shard)
    for key in ["target_reference", *DEFAULT_MODEL_KEYS, "evaluation_set", *GLOBAL_STEPS]:
        materialized(key)

    everything_current = dg.evaluate_automation_conditions(defs=definitions, instance=instance)
    assert everything_current.total_requested == 0

    materialized("quality_scores", "b")  # e.g. the sensor's ingest run for a changed shard
    rescored = dg.evaluate_automation_conditions(defs=definitions, instance=instance, cursor=everything_current.cursor)
    # The pool's term counts depend on raw_pool alone: new scores leave them as they are.
    assert requested(rescored, ["quality_scores", *GLOBAL_STEPS]) == {"filtered_set": 1, "evaluation_report": 1, "evaluation_analyses": 1}

    for key in GLOBAL_STEPS:
        materialized(key)
    settled = dg.evaluate_automation_conditions(defs=definitions, instance=instance, cursor=rescored.cursor)
    assert settled.total_requested == 0

    materialized("relevance_model")  # the retraining build refit a scorer model
    refit = dg.evaluate_automation_conditions(defs=definitions, instance=instance, cursor=settled.cursor)
    assert requested(refit, ["quality_scores"]) == {"quality_scores": 2}
    assert refit.get_requested_partitions(dg.AssetKey("quality_scores")) == {"a", "b"}
