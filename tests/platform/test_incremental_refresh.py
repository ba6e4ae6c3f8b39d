"""Incremental refresh through Dagster: a new shard costs one shard of work, not a rebuild.

Five synthetic shards of 100 records are built with ``dataselect build``'s plan; a
sixth lands and is refreshed the way the landing sensor's ``shard_ingest_job`` does it, then the
selection build runs again. Work is counted from the assets' own metadata (``records_embedded``,
``dagster/row_count``), and the other shards' files are compared byte for byte and by mtime.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

from dagster import AssetKey, instance_for_test  # noqa: E402

from benchmarks.refresh import Driver  # noqa: E402
from benchmarks.synthetic import SyntheticConfig, write_pool  # noqa: E402

SHARDS, PER_SHARD = 6, 100
# ~15 Dagster runs: about 40 s on 2 idle cores, two minutes when the cores are shared.
pytestmark = pytest.mark.slow


def _snapshot(store: Path, asset: str, keys: list[str]) -> dict[str, tuple[int, bytes]]:
    return {k: ((store / asset / f"{k}.parquet").stat().st_mtime_ns, (store / asset / f"{k}.parquet").read_bytes()) for k in keys}


def _latest(instance, asset: str, partition: str | None = None) -> dict:
    event = instance.get_latest_materialization_event(AssetKey(asset)) if partition is None else None
    if partition is not None:
        records = instance.fetch_materializations(AssetKey(asset), limit=100).records
        event = next(r.event_log_entry for r in records if r.event_log_entry.dagster_event.partition == partition)
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


@pytest.fixture(scope="module")
def refreshed(tmp_path_factory):
    root = tmp_path_factory.mktemp("refresh")
    pool = write_pool(root / "pool", SyntheticConfig(n_records=SHARDS * PER_SHARD, records_per_shard=PER_SHARD, seed=7), reference_size=60)
    keys = pool["shards"]
    landing = root / "landing"
    landing.mkdir()
    for key in keys[:-1]:
        shutil.copy(root / "pool" / "landing" / f"{key}.jsonl", landing / f"{key}.jsonl")
    store = root / "store"
    with instance_for_test() as instance:
        driver = Driver(instance, str(landing), str(root / "pool" / "reference.jsonl"), str(store))
        driver.build_all(("filtered_set",))
        state = {
            "initial": (driver.records_embedded, driver.records_scored),
            "first_build": _latest(instance, "filtered_set")["build_id"],
            "embeddings": _snapshot(store, "embeddings", keys[:-1]),
            "quality_scores": _snapshot(store, "quality_scores", keys[:-1]),
        }
        driver.records_embedded = driver.records_scored = 0
        shutil.copy(root / "pool" / "landing" / f"{keys[-1]}.jsonl", landing / f"{keys[-1]}.jsonl")
        driver.refresh_shard(keys[-1], ("filtered_set",))
        state.update(
            refresh=(driver.records_embedded, driver.records_scored),
            second_build=_latest(instance, "filtered_set"),
            embeddings_after=_snapshot(store, "embeddings", keys[:-1]),
            quality_scores_after=_snapshot(store, "quality_scores", keys[:-1]),
        )
        # An unchanged shard's embeddings materialized again: the model is skipped.
        driver.records_embedded = 0
        driver.run(["embeddings"], keys[0])
        state.update(
            rerun=_latest(instance, "embeddings", keys[0]),
            rerun_embedded=driver.records_embedded,
            embeddings_rerun=_snapshot(store, "embeddings", keys[:1]),
        )
        # A model refit with other settings: until every shard is rescored with it, the scores of
        # the shards are on two scales and the selection must refuse them.
        driver.run(["dsir_model"], run_config={"ops": {"dsir_model": {"config": {"options": {"num_buckets": 20_000}}}}})
        driver.run(["quality_scores"], keys[-1])
        with pytest.raises(RuntimeError) as mixed:
            driver.run_global(("filtered_set",))
        for key in keys[:-1]:
            driver.run(["quality_scores"], key)
        driver.run_global(("filtered_set",))
        state.update(mixed_error=str(mixed.value), rescored_build=_latest(instance, "filtered_set"))
        yield {"keys": keys, "store": store, **state}


def test_full_build_embeds_and_scores_every_record_once(refreshed):
    assert refreshed["initial"] == ((SHARDS - 1) * PER_SHARD, (SHARDS - 1) * PER_SHARD)


def test_refresh_embeds_and_scores_only_the_new_shard(refreshed):
    assert refreshed["refresh"] == (PER_SHARD, PER_SHARD)
    new = refreshed["keys"][-1]
    assert (refreshed["store"] / "embeddings" / f"{new}.parquet").exists()
    assert (refreshed["store"] / "quality_scores" / f"{new}.parquet").exists()


def test_other_shards_files_are_untouched(refreshed):
    # Same mtime and same bytes: not rewritten, not even with identical content.
    assert refreshed["embeddings_after"] == refreshed["embeddings"]
    assert refreshed["quality_scores_after"] == refreshed["quality_scores"]


def test_global_steps_rebuild_over_all_shards(refreshed):
    build = refreshed["second_build"]
    assert build["build_id"] != refreshed["first_build"]
    assert build["raw"] == SHARDS * PER_SHARD
    assert build["selected"] == round(0.1 * SHARDS * PER_SHARD)  # the default budget over every raw record
    assert sorted(build["manifest"]["input_shards"]) == refreshed["keys"]


def test_unchanged_shard_reuses_its_embeddings(refreshed):
    assert refreshed["rerun"]["reused_previous"] is True
    assert refreshed["rerun"]["records_embedded"] == 0 and refreshed["rerun_embedded"] == 0
    assert refreshed["embeddings_rerun"] == {k: refreshed["embeddings"][k] for k in refreshed["keys"][:1]}


def test_shards_scored_with_different_model_versions_are_refused(refreshed):
    error = refreshed["mixed_error"]
    assert "scored with different scorers, settings or fitted models" in error
    assert f"1 shard(s) ({refreshed['keys'][-1]})" in error  # the one rescored with the refit model, by name
    assert "Rescore every shard" in error


def test_the_build_records_its_model_versions_and_a_refit_makes_another_build(refreshed):
    before, after = refreshed["second_build"], refreshed["rescored_build"]
    models_before, models_after = (b["manifest"]["scored_with"]["models"] for b in (before, after))
    assert set(models_before) == {"dsir", "relevance", "ngram_relevance", "label_prior", "label_classifier"}
    # Only the refit model's version moved, and with it the build's id (same shards, same config).
    assert {name for name in models_before if models_before[name] != models_after[name]} == {"dsir"}
    assert after["manifest"]["input_shards"] == before["manifest"]["input_shards"]
    assert after["build_id"].split("-")[0] == before["build_id"].split("-")[0]
    assert after["build_id"] != before["build_id"]


def test_label_noise_from_the_shards_is_cross_validation_over_the_pool(refreshed):
    """The first build's label noise read the probabilities each shard's quality_scores holds (the
    global step read no text); with the fit sample the whole pool, they are the out-of-fold
    probabilities of fitting the folds over the pool in one call, bit for bit."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dataselect.scorers.base import Batch
    from dataselect.scorers.label_noise import LabelNoise

    store, keys = refreshed["store"], refreshed["keys"][:-1]
    pool = pa.concat_tables([pq.read_table(store / "raw_pool" / f"{k}.parquet") for k in keys])
    expected = LabelNoise(proba_column=None).score(Batch(pool))
    decisions = pd.read_parquet(store / "builds" / refreshed["first_build"] / "decisions.parquet")
    found = pool.select(["shard", "row"]).to_pandas().merge(decisions, on=["shard", "row"], how="left")
    np.testing.assert_array_equal(found["label_noise.self_confidence"].to_numpy(float), expected["self_confidence"])
    assert found["label_noise.is_issue"].astype(bool).tolist() == expected["is_issue"].tolist()
    assert expected["is_issue"].sum() > 0  # the synthetic pool plants flipped labels
    scores = pq.read_table(store / "quality_scores" / f"{keys[0]}.parquet")
    assert "label_classifier.proba" in scores.column_names
