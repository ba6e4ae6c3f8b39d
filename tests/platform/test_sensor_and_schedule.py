"""The landing sensor (new/changed files -> partitions + runs, exactly once per file version)
and the retraining schedule, evaluated through Dagster's own contexts on a real instance."""

from __future__ import annotations

import gzip
import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from dagster import (
    AddDynamicPartitionsRequest,
    SensorResult,
    SkipReason,
    build_schedule_context,
    build_sensor_context,
    instance_for_test,
    partition_loading_context,
)

from dataselect_platform.definitions import all_assets, defs
from jobs import RETRAINING_CRON_DEFAULT, retraining_data_build_job, shard_ingest_job
from resources import InputsResource
from sensors import landing_sensor


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_jsonl(path: Path, texts: list[str]) -> None:
    path.write_text("".join(json.dumps({"id": f"{path.stem}-{i}", "text": t}) + "\n" for i, t in enumerate(texts)))


@pytest.fixture
def instance():
    with instance_for_test() as instance:
        yield instance


def _evaluate(instance, landing: Path, cursor: str | None):
    with build_sensor_context(instance=instance, cursor=cursor, resources={"inputs": InputsResource(landing_dir=str(landing))}) as context:
        return landing_sensor(context)


def test_sensor_requests_each_file_version_exactly_once(tmp_path, instance):
    landing = tmp_path / "landing"
    landing.mkdir()
    first = landing / "alpha.jsonl"
    _write_jsonl(first, ["one document", "another document"])
    (landing / ".beta.jsonl.1234.tmp").write_text("half-written upload")  # hidden: an in-flight atomic write
    (landing / "notes.txt").write_text("not a shard format")

    result = _evaluate(instance, landing, None)
    assert isinstance(result, SensorResult)
    assert [(r.partition_key, r.run_key) for r in result.run_requests] == [("alpha", f"alpha:{_sha256(first)}")]
    [add] = result.dynamic_partitions_requests
    assert isinstance(add, AddDynamicPartitionsRequest)
    assert add.partitions_def_name == "shards" and list(add.partition_keys) == ["alpha"]
    assert json.loads(result.cursor) == {"alpha": _sha256(first)}

    # Same files, the returned cursor: nothing to do.
    again = _evaluate(instance, landing, result.cursor)
    assert isinstance(again, SkipReason)
    assert "no new or changed files" in again.skip_message

    # An edited file is a new version: a new run key for the same partition.
    old_key = result.run_requests[0].run_key
    _write_jsonl(first, ["one document", "another document", "a third document"])
    edited = _evaluate(instance, landing, result.cursor)
    assert [(r.partition_key, r.run_key) for r in edited.run_requests] == [("alpha", f"alpha:{_sha256(first)}")]
    assert edited.run_requests[0].run_key != old_key

    # A second new file: exactly one new request, for it alone.
    second = landing / "beta.jsonl.gz"
    second.write_bytes(gzip.compress(b'{"id": "b0", "text": "compressed shard"}\n'))
    added = _evaluate(instance, landing, edited.cursor)
    assert [(r.partition_key, r.run_key) for r in added.run_requests] == [("beta", f"beta:{_sha256(second)}")]
    assert list(added.dynamic_partitions_requests[0].partition_keys) == ["beta"]
    assert json.loads(added.cursor) == {"alpha": _sha256(first), "beta": _sha256(second)}
    assert isinstance(_evaluate(instance, landing, added.cursor), SkipReason)


def test_sensor_tick_is_valid_once_its_partitions_are_added(tmp_path, instance):
    # As the daemon does: apply the tick's dynamic-partition requests, then Dagster's own
    # evaluate_tick validates that every run request targets an existing partition of the job.
    landing = tmp_path / "landing"
    landing.mkdir()
    _write_jsonl(landing / "gamma.jsonl", ["text"])
    inputs = {"inputs": InputsResource(landing_dir=str(landing))}
    with build_sensor_context(instance=instance, resources=inputs, definitions=defs()) as context:
        first = landing_sensor(context)
    for request in first.dynamic_partitions_requests:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    assert instance.get_dynamic_partitions("shards") == ["gamma"]
    with (
        partition_loading_context(dynamic_partitions_store=instance),
        build_sensor_context(instance=instance, resources=inputs, definitions=defs()) as context,
    ):
        tick = landing_sensor.evaluate_tick(context)
    assert landing_sensor.job_name == shard_ingest_job.name
    assert [(r.partition_key, r.run_key) for r in tick.run_requests] == [("gamma", f"gamma:{_sha256(landing / 'gamma.jsonl')}")]

    missing = _evaluate(instance, tmp_path / "not-there", None)
    assert isinstance(missing, SkipReason) and "does not exist" in missing.skip_message


def _retraining_schedule():
    [schedule] = [s for s in defs().schedules if s.name == "retraining_data_build"]
    return schedule


def test_schedule_requests_the_retraining_job(monkeypatch):
    monkeypatch.delenv("DATASELECT_RETRAINING_CRON", raising=False)
    schedule = _retraining_schedule()
    context = build_schedule_context(scheduled_execution_time=datetime(2030, 1, 2, 3, 0, tzinfo=timezone.utc))
    tick = schedule.evaluate_tick(context)
    assert len(tick.run_requests) == 1
    assert schedule.job_name == "retraining_data_build_job"
    assert tick.run_requests[0].job_name in (None, "retraining_data_build_job")
    # The retraining job refits the models and rebuilds the global steps, never re-ingests shards.
    selected = {k.to_user_string() for k in retraining_data_build_job.selection.resolve(all_assets)}
    assert {"target_reference", "dsir_model", "filtered_set", "evaluation_set", "evaluation_report"} <= selected
    assert not selected & {"raw_pool", "embeddings", "quality_scores"}


def test_schedule_cron_comes_from_the_environment_when_the_location_loads(monkeypatch):
    monkeypatch.setenv("DATASELECT_RETRAINING_CRON", "15 4 * * 1")
    overridden = _retraining_schedule()
    assert overridden.cron_schedule == "15 4 * * 1"
    assert overridden.job_name == "retraining_data_build_job"
    monkeypatch.delenv("DATASELECT_RETRAINING_CRON")
    assert _retraining_schedule().cron_schedule == RETRAINING_CRON_DEFAULT
