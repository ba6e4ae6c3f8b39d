"""The team deployment on real services: the instance of deploy/dagster.yaml on a PostgreSQL
server, and per-shard steps on a Ray head, both on 127.0.0.1 (see conftest.py).

Builds go through the ``dataselect`` command in a subprocess, as a user would run it, with
DAGSTER_HOME holding deploy/dagster.yaml and the credentials only in the environment. What
they recorded is then read back from PostgreSQL, through Dagster and with plain SQL.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from dagster import AssetKey, DagsterInstance, DagsterRunStatus, build_schedule_context, build_sensor_context, execute_job
from dagster._core.definitions.reconstruct import ReconstructableRepository

import tests.platform.helpers  # noqa: F401  (offline, quiet environment first)
from dataselect.demo import write_demo
from dataselect.ingest import list_landing_files
from jobs.build_plan import BUILD_PLAN, BuildSettings
from tests.platform.deploy_services import listening_addresses, non_loopback, postgres_server, running
from tests.platform.helpers import ALL_CHECK_NAMES, ROOT, raw_rows_in

pytestmark = pytest.mark.deploy

SEED = 0
DEPLOY_YAML = ROOT / "deploy" / "dagster.yaml"
PER_SHARD = ["raw_pool", "embeddings", "quality_scores"]


def _home(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(DEPLOY_YAML, folder / "dagster.yaml")
    return folder


def _environment(server, home: Path) -> dict[str, str]:
    return {**os.environ, **server.env, "DAGSTER_HOME": str(home), "PYTHONPATH": str(ROOT)}


@contextmanager
def _instance(server, home: Path):
    """The deployment's instance as any Dagster process opens it: from DAGSTER_HOME and the environment."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {**server.env, "DAGSTER_HOME": str(home)}.items():
            patch.setenv(name, value)
        with DagsterInstance.get() as instance:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
            assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
            yield instance


def _build(env: dict, data, out: Path, budget: float, *options: str) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "dataselect_platform.cli", "build", "--landing", str(data.landing), "--reference", str(data.reference),
        "--eval", str(data.evaluation), "--budget", str(budget), "--seed", str(SEED), "--backend", "static", "--out", str(out), *options,
    ]  # fmt: skip
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen, timeout: float = 900) -> dict:
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    progress = "\n".join(line for line in stderr.splitlines() if line.startswith("[dataselect]"))
    assert process.returncode == 0, f"dataselect build failed:\n{progress}\n...\n{stderr[-3000:]}"
    return json.loads(stdout.strip().splitlines()[-1])


def _sql(server, query: str, *params) -> list[tuple]:
    with server.connect() as connection, connection.cursor() as cursor:
        cursor.execute(query, params)
        return cursor.fetchall()


def _assert_accounting(result: dict, landing: Path) -> None:
    counts = result["counts"]
    assert counts["selected"] + counts["rejected"] + counts["quarantined"] == counts["raw"] == raw_rows_in(landing)
    assert pq.read_metadata(result["selected"]).num_rows == counts["selected"]
    assert pq.read_metadata(result["decisions"]).num_rows == counts["raw"]


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory):
    return write_demo(tmp_path_factory.mktemp("deploy-data"), seed=SEED, n_records=300, n_shards=2)


@pytest.fixture(scope="module")
def postgres_build(postgres, demo_data, tmp_path_factory):
    """One full build by the ``dataselect`` command on its own database of the session's server."""
    server = postgres.create_database("full_build")
    root = tmp_path_factory.mktemp("postgres-build")
    home = _home(root / "home")
    result = _finish(_build(_environment(server, home), demo_data, root / "out", 0.2))
    return server, home, result


# --------------------------------------------------------------------------- the services themselves


@pytest.mark.parametrize("ci", ["", "true"])
def test_missing_postgres_skips_locally_and_fails_under_ci(tmp_path, monkeypatch, ci):
    monkeypatch.setenv("DATASELECT_POSTGRES_BIN", str(tmp_path))  # no initdb there
    monkeypatch.setenv("CI", ci)
    expected = pytest.fail.Exception if ci else pytest.skip.Exception
    with pytest.raises(expected, match="PostgreSQL server binaries not found"), postgres_server():
        pass


def test_postgres_runs_unprivileged_on_loopback_and_is_removed(postgres):
    import psutil

    postmaster = postgres.server_pids()[0]
    assert psutil.Process(postmaster).username() != "root"
    assert {ip for ip, _, _ in listening_addresses(postgres.server_pids())} == {"127.0.0.1"}
    with postgres.connect() as connection, connection.cursor() as cursor:
        cursor.execute("SHOW listen_addresses")
        assert cursor.fetchone() == ("127.0.0.1",)
    with postgres_server(database="short_lived") as server:
        data_dir, pids = server.data_dir, server.server_pids()
        assert pids and data_dir.is_dir()
    assert not data_dir.exists() and not running(pids)


# --------------------------------------------------------------------------- a full build on PostgreSQL


def _assert_every_failed_run_was_retried(runs) -> None:
    """The runner launches a run that failed outside its steps once more: such a run must have a
    successful run of the same job and partition beside it, and nothing else may have failed."""
    for failed in (run for run in runs if run.status != DagsterRunStatus.SUCCESS):
        partition = failed.tags.get("dagster/partition")
        retried = [
            run
            for run in runs
            if run.run_id != failed.run_id
            and run.status == DagsterRunStatus.SUCCESS
            and run.job_name == failed.job_name
            and run.tags.get("dagster/partition") == partition
            and run.asset_selection == failed.asset_selection
        ]
        assert retried, (failed.job_name, partition, failed.status.value)


@pytest.mark.slow
def test_full_build_is_recorded_in_postgres(postgres_build, demo_data):
    server, home, result = postgres_build
    _assert_accounting(result, demo_data.landing)
    keys = {f.key for f in list_landing_files(demo_data.landing)}
    assert len(keys) == 2

    with _instance(server, home) as instance:
        runs = instance.get_runs()
        # Every run succeeded the first time: the build creates the `gpu` pool's limit before its
        # runs start side by side, so no two runs race to insert it (that failed one build in four).
        assert runs and {run.status for run in runs} == {DagsterRunStatus.SUCCESS}
        assert "gpu" in instance.event_log_storage.get_concurrency_keys()
        assert instance.get_dynamic_partitions("shards") and set(instance.get_dynamic_partitions("shards")) == keys
        for asset in PER_SHARD:
            assert instance.get_materialized_partitions(AssetKey(asset)) == keys, asset
        for asset in ("target_reference", "dsir_model", "filtered_set", "evaluation_set", "evaluation_report"):
            assert instance.get_latest_materialization_event(AssetKey(asset)) is not None, asset
        latest = instance.get_latest_materialization_event(AssetKey("filtered_set")).asset_materialization
        assert latest.metadata["build_id"].value == result["build_id"]

    # The same facts in the database's own tables, without Dagster in between.
    statuses = _sql(server, "SELECT status, count(*) FROM runs GROUP BY status")
    assert dict(statuses) == dict(Counter(run.status.value for run in runs))
    materialized = _sql(server, "SELECT asset_key, partition FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'")
    for asset in PER_SHARD:
        assert {partition for key, partition in materialized if key == json.dumps([asset])} == keys, asset
    checks = _sql(server, "SELECT check_name, partition, execution_status FROM asset_check_executions")
    assert {name for name, _, _ in checks} == ALL_CHECK_NAMES
    assert {status for _, _, status in checks} == {"SUCCEEDED"}
    assert sorted(partition for name, partition, _ in checks if name == "raw_pool_valid") == sorted(keys)
    passed = _sql(
        server,
        "SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_CHECK_EVALUATION' AND event::json #>> "
        "'{dagster_event,event_specific_data,success}' = 'true'",  # serialized as "success"
    )
    assert passed == [(len(checks),)]


# --------------------------------------------------------------------------- sensor and schedule on PostgreSQL


def _code_location_job(name: str):
    return ReconstructableRepository.for_module(
        "dataselect_platform.definitions", "defs", working_directory=str(ROOT)
    ).get_reconstructable_job(name)


def _resources(data, store: str) -> dict:
    return {
        "inputs": {
            "config": {"landing_dir": str(data.landing), "reference_path": str(data.reference), "evaluation_path": str(data.evaluation)}
        },
        "storage": {"config": {"root": store}},
        "embedding": {"config": {"backend": "static", "device": "cpu"}},
    }


@pytest.mark.slow
def test_landing_sensor_and_retraining_schedule_tick_against_postgres(postgres_build, demo_data, tmp_path):
    from dagster import partition_loading_context

    from dataselect_platform.definitions import defs
    from resources import InputsResource
    from sensors import landing_sensor

    definitions = defs()
    [schedule] = [s for s in definitions.schedules if s.name == "retraining_data_build"]
    server, home, result = postgres_build
    store = str(Path(result["selected"]).parents[2])
    landing = Path(tmp_path / "landing")
    shutil.copytree(demo_data.landing, landing)
    data = replace(demo_data, landing=str(landing))
    inputs = {"inputs": InputsResource(landing_dir=str(landing))}

    with _instance(server, home) as instance:
        with build_sensor_context(instance=instance, resources=inputs, definitions=definitions) as context:
            first = landing_sensor(context)
        # A file lands after the build: the next tick asks for exactly that file, once.
        newest = landing / "late-arrival.jsonl"
        newest.write_text("".join(
            json.dumps({"id": f"late-{i}", "text": f"A late landing document number {i} about telescopes, spectra and the"
                        f" orbits of distant planets, written to be long enough to pass the heuristic filters."}) + "\n"
            for i in range(12)
        ))  # fmt: skip
        with build_sensor_context(instance=instance, resources=inputs, definitions=definitions, cursor=first.cursor) as context:
            tick = landing_sensor(context)
        [request] = tick.run_requests
        assert request.partition_key == "late-arrival"
        for add in tick.dynamic_partitions_requests:
            instance.add_dynamic_partitions(add.partitions_def_name, list(add.partition_keys))
        # Dagster's own tick validation, with the partitions read back from PostgreSQL.
        with (
            partition_loading_context(dynamic_partitions_store=instance),
            build_sensor_context(instance=instance, resources=inputs, definitions=definitions, cursor=first.cursor) as context,
        ):
            validated = landing_sensor.evaluate_tick(context)
        assert [(r.partition_key, r.run_key) for r in validated.run_requests] == [("late-arrival", request.run_key)]
        assert "late-arrival" in _sql(server, "SELECT partition FROM dynamic_partitions WHERE partitions_def_name = 'shards'")[-1]

        resources = _resources(data, store)
        tags = {**request.tags, "dagster/partition": request.partition_key, "dagster/run_key": request.run_key}
        run_config = {"resources": resources, "execution": {"config": {"in_process": {}}}}
        with execute_job(_code_location_job("shard_ingest_job"), instance, run_config=run_config, tags=tags) as ingest:
            assert ingest.success
        assert instance.get_materialized_partitions(AssetKey("quality_scores")) >= {"late-arrival"}

        schedule_tick = schedule.evaluate_tick(
            build_schedule_context(instance=instance, scheduled_execution_time=datetime(2030, 1, 2, 3, 0, tzinfo=UTC))
        )
        [scheduled] = schedule_tick.run_requests
        ops = {"filtered_set": {"config": {"budget": 0.2, "seed": SEED}}}
        run_config = {**(scheduled.run_config or {}), "resources": resources, "ops": ops, "execution": {"config": {"in_process": {}}}}
        with execute_job(_code_location_job(schedule.job_name), instance, run_config=run_config, tags=scheduled.tags) as rebuild:
            assert rebuild.success
        build_id = instance.get_latest_materialization_event(AssetKey("filtered_set")).asset_materialization.metadata["build_id"].value

    manifest = json.loads((Path(store) / "builds" / build_id / "manifest.json").read_text())
    assert build_id != result["build_id"]  # the late file is part of the new build
    assert manifest["counts"]["raw"] == raw_rows_in(landing) == result["counts"]["raw"] + 12
    rows = _sql(server, "SELECT r.pipeline_name, r.status FROM runs r JOIN run_tags t ON t.run_id = r.run_id "
                        "WHERE t.key = 'dagster/run_key' AND t.value = %s", request.run_key)  # fmt: skip
    assert rows == [("shard_ingest_job", "SUCCESS")]
    assert ("retraining_data_build_job", "SUCCESS") in _sql(server, "SELECT pipeline_name, status FROM runs")


# --------------------------------------------------------------------------- two builds at once


@pytest.mark.slow
def test_two_builds_at_once_on_different_budgets(postgres, demo_data, tmp_path):
    """Two commands on one PostgreSQL instance at the same time: each gets its own budget, nothing is lost."""
    server = postgres.create_database("two_builds")
    home = _home(tmp_path / "home")
    env = _environment(server, home)
    budgets = {"small": 40, "large": 90}
    processes = {name: _build(env, demo_data, tmp_path / name, budget) for name, budget in budgets.items()}
    results = {name: _finish(process) for name, process in processes.items()}

    for name, budget in budgets.items():
        assert results[name]["counts"]["selected"] == budget, name
        _assert_accounting(results[name], demo_data.landing)
    assert results["small"]["build_id"] != results["large"]["build_id"]
    small = set(pq.read_table(results["small"]["selected"], columns=["id"]).column("id").to_pylist())
    large = set(pq.read_table(results["large"]["selected"], columns=["id"]).column("id").to_pylist())
    assert len(small) == 40 and len(large) == 90

    with _instance(server, home) as instance:
        runs = instance.get_runs()
        _assert_every_failed_run_was_retried(runs)
        builds = [
            record.asset_materialization.metadata["build_id"].value
            for record in instance.fetch_materializations(AssetKey("filtered_set"), limit=10).records
        ]
    assert sorted(builds) == sorted(r["build_id"] for r in results.values())
    # Each command recorded its own complete set of runs: twice the successful runs of one build
    # (beside any run that failed outside its steps and was launched again, checked above).
    assert dict(_sql(server, "SELECT status, count(*) FROM runs GROUP BY status")) == dict(Counter(run.status.value for run in runs))
    shards = [f.key for f in list_landing_files(demo_data.landing)]
    per_build = sum(len(step.runs(BuildSettings(), shards)) for step in BUILD_PLAN)
    assert sum(run.status == DagsterRunStatus.SUCCESS for run in runs) == 2 * per_build


# --------------------------------------------------------------------------- per-shard steps on Ray


def _finished_ray_jobs(address: str, timeout: float = 120.0) -> list:
    """Every Ray job once none is still pending or running. A step's Ray job reports the step's success to
    the run before its process exits, so the build can end while that job is still shutting down."""
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(address)
    deadline = time.monotonic() + timeout
    while True:
        jobs = client.list_jobs()
        if all(job.status.is_terminal() for job in jobs) or time.monotonic() > deadline:
            return jobs
        time.sleep(1.0)


@pytest.mark.slow
def test_per_shard_steps_on_ray_give_the_in_process_bytes(postgres, ray_cluster, postgres_build, demo_data, tmp_path):
    """The same build with its per-shard steps as Ray jobs, on the instance the Ray workers share,
    against the in-process build of ``postgres_build`` (same inputs, budget, seed and backend)."""
    home = _home(tmp_path / "home")
    env = _environment(postgres, home)  # the session database: the one the Ray workers' environment names
    in_process = postgres_build[2]
    # While the build runs, every few seconds: the listening sockets of every process of the head's tree
    # (job supervisors and step workers come and go) and of the PostgreSQL server and its backends.
    seen: set[tuple[str, int, int]] = set()
    idle = set(ray_cluster.pids())
    processes: set[int] = set()
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            pids = ray_cluster.pids() + postgres.server_pids()
            processes.update(pids)
            seen.update(listening_addresses(pids))
            done.wait(2.0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        on_ray = _finish(_build(env, demo_data, tmp_path / "ray", 0.2, "--executor", "ray", "--ray-address", ray_cluster.dashboard_url))
    finally:
        done.set()
        sampler.join()
    assert seen and not non_loopback(seen)
    assert len(processes - idle) >= 2  # the samples saw the build's own Ray processes, not only the idle head

    assert on_ray["build_id"] == in_process["build_id"]
    for name in ("selected", "decisions", "manifest"):
        assert Path(on_ray[name]).read_bytes() == Path(in_process[name]).read_bytes(), name
    _assert_accounting(on_ray, demo_data.landing)

    # The per-shard steps really ran as Ray jobs, each one a `dagster api execute_step` that succeeded.
    jobs = _finished_ray_jobs(ray_cluster.dashboard_url)
    steps = [job.metadata["dagster/op"] for job in jobs if job.status == "SUCCEEDED" and "execute_step" in job.entrypoint]
    assert not [(job.submission_id, job.status, job.message) for job in jobs if job.status != "SUCCEEDED"]
    n_shards = len(list_landing_files(demo_data.landing))
    for asset in PER_SHARD:
        assert steps.count(asset) == n_shards, (asset, steps)

    assert not non_loopback(listening_addresses(ray_cluster.pids() + postgres.server_pids()))
