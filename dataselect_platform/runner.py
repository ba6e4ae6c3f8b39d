"""The build runner: launches the build plan's named jobs on a Dagster instance, wave by wave.

Every run goes through ``execute_job`` on the job of the code location, tagged with its
``dagster/partition``, so the UI's Runs page lists what a build ran under the platform's job
names. Runs go to a pool of ``max_concurrent`` worker processes, a wave's runs (one per shard,
or one per asset group of a global step, for a stage and any that start with it; see
``jobs.build_plan.waves``) up to ``max_concurrent`` at a time (workers are forked
from a fork server that imported the code location once; each opens the same instance); with
``max_concurrent=1`` every run executes in this process. Inputs and the embedding settings
reach the runs as resource run config, so every run records where its data came from.

A shard whose run fails drops out of the later stages (its partition is removed, so the
selection covers the readable shards) and is reported with its landing file; ``strict`` stops
the build at the first failure instead. A failed global step ends the build.
"""

from __future__ import annotations

import os
import select
import signal
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import nullcontext
from dataclasses import dataclass, field

from dataselect.memory import release_freed_memory
from dataselect.threads import cores, limited
from dataselect_platform import fork_server
from jobs.build_plan import BUILD_PLAN, BuildSettings, waves

EXECUTORS = ("in_process", "multiprocess", "ray")
STAGE_TAG = "dataselect/stage"


@dataclass(frozen=True)
class BuildInputs:
    landing: str
    reference: str
    evaluation: str | None
    store: str
    embedding: dict = field(default_factory=lambda: {"backend": "auto"})  # EmbeddingResource config

    def resources_config(self) -> dict:
        return {
            "inputs": {"config": {"landing_dir": self.landing, "reference_path": self.reference, "evaluation_path": self.evaluation or ""}},
            "storage": {"config": {"root": self.store}},
            "embedding": {"config": dict(self.embedding)},
        }


@dataclass(frozen=True)
class Execution:
    """How each run executes its steps: ``in_process``, ``multiprocess`` or ``ray``."""

    executor: str = "in_process"
    ray_address: str | None = None
    gpu_step_num_gpus: float = 0.0
    log_level: str = "WARNING"  # Dagster's console log of each run; the event log keeps everything
    # Above this many ingested records, each wave of global steps (the fits, the selection, the
    # report) runs in workers forked for it: a worker that scored shards keeps their models and
    # embedder cached (0.8 GB at 1M records) beside the selection or the report. Below it a fresh
    # worker's start costs more than the memory it frees (the demo took 15.9 s with them, 13.6 s without).
    fresh_workers_above: int = 250_000

    def run_config(self) -> dict:
        if self.executor not in EXECUTORS:
            raise ValueError(f"unknown executor {self.executor!r}; expected one of {EXECUTORS}")
        config: dict = {}
        if self.executor == "ray":
            # Steps run in Ray jobs: they need the code, the offline switches and the instance.
            passed = [
                k
                for k in (
                    "PYTHONPATH",
                    "DAGSTER_HOME",
                    "HF_HUB_OFFLINE",
                    "TRANSFORMERS_OFFLINE",
                    "GX_ANALYTICS_ENABLED",
                    "DATASELECT_CACHE",
                )
                if k in os.environ
            ]
            config = {"address": self.ray_address, "env_vars": passed, "gpu_step_num_gpus": self.gpu_step_num_gpus}
        return {"execution": {"config": {self.executor: config}}, "loggers": {"console": {"config": {"log_level": self.log_level}}}}


@dataclass(frozen=True)
class RunRequest:
    job: str
    partition: str | None
    run_config: dict
    assets: list[str] | None
    threads: int | None = None  # the run's share of the cores (dataselect.threads.limited); None: no limit
    stage: str | None = None  # the build plan's stage, tagged on the run as ``dataselect/stage``


@dataclass
class RunOutcome:
    job: str
    partition: str | None
    run_id: str | None
    success: bool
    seconds: float
    records: int = 0  # rows the run's largest materialization wrote
    build_id: str | None = None  # the build a selection run materialized
    error: str | None = None  # the user-facing error of the first failed step
    step_failed: bool = False  # a step of the run failed (not only the executor around it)
    failed_checks: list[str] = field(default_factory=list)  # "<check>: <description>" of failed blocking checks


@dataclass
class BuildOutcome:
    runs: list[RunOutcome] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)  # {file, shard, job, run_id, error} per failed shard
    stopped: str | None = None  # why the build stopped before its last stage, if it did

    @property
    def run_ids(self) -> list[str]:
        return [r.run_id for r in self.runs if r.run_id]

    @property
    def build_id(self) -> str | None:
        return next((r.build_id for r in reversed(self.runs) if r.build_id), None)


# --------------------------------------------------------------------------- one run


_worker_instance = None


def _init_worker(instance_ref, build_pid: int) -> None:
    global _worker_instance
    _die_with(build_pid)
    from dagster import DagsterInstance

    import dataselect_platform.definitions  # noqa: F401  (already imported by the fork server)

    _worker_instance = DagsterInstance.from_ref(instance_ref)


def _die_with(build_pid: int) -> None:
    """A killed build must not leave workers writing on. Their parent is the fork server, which
    lives as long as they do, so each worker watches the build's own process."""

    def watch() -> None:
        try:
            select.select([os.pidfd_open(build_pid)], [], [])  # readable once the process has exited
        except AttributeError:  # no pidfd (not Linux): poll
            while _alive(build_pid):
                time.sleep(0.5)
        except OSError:  # already gone
            pass
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="die-with-build", daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _execute_in_worker(request: RunRequest) -> RunOutcome:
    try:
        return execute_run(_worker_instance, request)
    finally:
        release_freed_memory()  # the next run in this worker, or the one beside it, gets the pages back


def execute_run(instance, request: RunRequest) -> RunOutcome:
    """One run of a named job of the code location, on ``instance``, summarised in plain values."""
    from dagster import AssetKey, execute_job
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    repository = ReconstructableRepository.for_module(fork_server.CODE_LOCATION_MODULE, "defs", working_directory=os.getcwd())
    job = repository.get_reconstructable_job(request.job)
    tags = {"dagster/partition": request.partition} if request.partition else {}
    if request.stage:
        tags[STAGE_TAG] = request.stage
    assets = [AssetKey(a) for a in request.assets] if request.assets else None
    started = time.perf_counter()
    with (
        limited(request.threads) if request.threads else nullcontext(),
        execute_job(job, instance, run_config=request.run_config, tags=tags, raise_on_error=False, asset_selection=assets) as result,
    ):
        events = result.all_events
        outcome = RunOutcome(request.job, request.partition, result.run_id, result.success, round(time.perf_counter() - started, 2))
    row_counts = [
        int(e.materialization.metadata["dagster/row_count"].value)
        for e in events
        if e.is_step_materialization and "dagster/row_count" in e.materialization.metadata
    ]
    outcome.records = max(row_counts, default=0)
    outcome.build_id = next(
        (
            e.materialization.metadata["build_id"].value
            for e in events
            if e.is_step_materialization and "build_id" in e.materialization.metadata
        ),
        None,
    )
    if not outcome.success:
        outcome.error = _first_error(events)
        outcome.step_failed = any(e.is_step_failure for e in events)
        outcome.failed_checks = [
            f"{e.event_specific_data.check_name}: {e.event_specific_data.description or 'failed'}"
            for e in events
            if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.event_specific_data.passed and e.event_specific_data.blocking
        ]
    return outcome


def _first_error(events) -> str:
    for event in events:
        if event.is_step_failure or event.is_step_up_for_retry:
            error = event.event_specific_data.error
            while error is not None and error.cause is not None:
                error = error.cause  # the user's exception, not Dagster's wrapper around it
            if error is not None:
                return error.message.strip()
    return next((e.message for e in events if e.is_failure and e.message), "see the run's event log")


# --------------------------------------------------------------------------- the plan


def run_plan(
    instance,
    inputs: BuildInputs,
    settings: BuildSettings = BuildSettings(),
    execution: Execution = Execution(),
    *,
    max_concurrent: int = 1,
    strict: bool = False,
    progress=None,
) -> BuildOutcome:
    """Run ``BUILD_PLAN`` on ``instance``, wave by wave (a stage, or stages that start together):
    a wave's runs (per shard, or per asset group) concurrently, then the next wave."""
    from dataselect.ingest import list_landing_files
    from platform_assets.partitions import shards

    files = {f.key: str(f.path) for f in list_landing_files(inputs.landing)}
    instance.add_dynamic_partitions(shards.name, sorted(files))
    _create_pools(instance)
    base_config = {**execution.run_config(), "resources": inputs.resources_config()}
    outcome = BuildOutcome()
    live = sorted(files)
    trains_arms = inputs.evaluation is not None  # without a labelled evaluation file the report trains no arm
    pool, retired = None, False  # retired: a pool was shut down, so global runs go to a new one, not this process
    try:
        for wave in waves(BUILD_PLAN):
            pool_records = _pool_records(inputs.store, outcome.build_id)
            runs = [(step, key, assets) for step in wave for key, assets in step.runs(settings, live, pool_records, trains_arms)]
            if not runs:  # e.g. the report's step of a build without a report
                continue
            # Side-by-side runs share the cores; a lone run has them all (see dataselect.threads).
            threads = max(1, cores() // min(max_concurrent, len(runs))) if max_concurrent > 1 else None
            requests = [
                RunRequest(
                    step.job,
                    key,
                    {**base_config, **step.run_config(settings, assets, outcome.build_id)},
                    assets,
                    step.threads(assets, threads),
                    step.stage,
                )
                for step, key, assets in runs
            ]
            global_wave = all(request.partition is None for request in requests)
            if pool is not None and global_wave and _ingested_records(inputs.store, live) > execution.fresh_workers_above:
                # Workers of its own, forked as its runs start (see Execution.fresh_workers_above).
                pool.shutdown()
                pool, retired = None, True
            if max_concurrent > 1 and (len(requests) > 1 or retired) and pool is None:
                pool = ProcessPoolExecutor(
                    max_workers=max_concurrent,
                    mp_context=fork_server.context(),
                    initializer=_init_worker,
                    initargs=(instance.get_ref(), os.getpid()),
                )
            stages = {step.stage: progress.stage(step, sum(r.stage == step.stage for r in requests)) for step in wave} if progress else {}
            # Global steps go to the pool too once it exists: its workers have the code location imported.
            results = _run_wave(instance, requests, pool, max_concurrent, strict, stages)
            outcome.runs.extend(results)
            failed = [r for r in results if not r.success]
            for run in failed:
                if run.partition is not None:
                    outcome.failed.append(
                        {"file": files[run.partition], "shard": run.partition, "job": run.job, "run_id": run.run_id, "error": run.error}
                    )
            # A failed global run ends the build; a failed shard only drops out (unless strict).
            fatal = [r for r in failed if strict or r.partition is None]
            if fatal:
                first = fatal[0]
                where = f" [{first.partition}]" if first.partition else ""
                checks = "".join(f"; blocking check {c}" for c in first.failed_checks)
                outcome.stopped = f"{first.job}{where} failed in run {first.run_id}: {first.error}{checks}"
                break
            if failed:
                dropped = [r.partition for r in failed]
                live = [k for k in live if k not in dropped]
                for key in dropped:  # the selection covers the registered partitions: the readable ones
                    instance.delete_dynamic_partition(shards.name, key)
                if not live:
                    outcome.stopped = "no shard could be processed"
                    break
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return outcome


def _ingested_records(store: str, shards: list[str]) -> int:
    """Records in the shards' raw_pool files (their footers only)."""
    from dataselect.storage import confined, exists, parquet_num_rows, safe_name

    paths = [confined(store, "raw_pool", f"{safe_name(key)}.parquet") for key in shards]
    return sum(parquet_num_rows(path) for path in paths if exists(path))


def _pool_records(store: str, build_id: str | None) -> int | None:
    """The records the build's selection decided on (raw minus quarantined), once it has made one."""
    if build_id is None:
        return None
    from dataselect.build import decided_records
    from dataselect.storage import confined, read_json

    return decided_records(read_json(confined(store, "builds", build_id, "manifest.json")))


def _create_pools(instance) -> None:
    """Give the code location's concurrency pool its default limit now, before runs start
    side by side. Otherwise the first step of each concurrent run in a pool creates the limit
    itself: two runs race to insert the same row and, on PostgreSQL, the loser's run fails outside
    its steps (a unique-key violation, then an aborted transaction, in Dagster 1.13)."""
    from platform_assets.partitions import GPU_POOL

    storage = instance.event_log_storage
    if instance.global_op_concurrency_default_limit is None or not storage.supports_global_concurrency_limits:
        return  # no default limit: Dagster creates no limit rows
    if GPU_POOL not in storage.get_concurrency_keys():
        try:
            storage.initialize_concurrency_limit_to_default(GPU_POOL)
        except Exception:  # another build on this instance created it first
            if GPU_POOL not in storage.get_concurrency_keys():
                raise


def _run_wave(instance, requests: list[RunRequest], pool, max_concurrent: int, strict: bool, stages: dict) -> list[RunOutcome]:
    """The runs of one wave, at most ``max_concurrent`` at a time in the pool (one at a time in this
    process without one), in the order of ``requests``; with ``strict``, none is started after a
    failure. ``stages`` holds the progress of each of the wave's stages, by name."""

    def launch(request: RunRequest) -> Future:
        if pool is not None:
            return pool.submit(_execute_in_worker, request)
        future = Future()
        try:
            future.set_result(execute_run(instance, request))
        except Exception as error:
            future.set_exception(error)
        return future

    def show(stage: str) -> None:
        if stage in stages:
            queued = 0 if stop else sum(r.stage == stage for r in waiting)
            stages[stage].update(queued=queued, running=sum(r.stage == stage for r in running.values()))

    limit = max_concurrent if pool is not None else 1
    # Global runs first: short, and the next wave needs them; they then overlap the shards' runs.
    waiting = sorted(requests, key=lambda r: r.partition is not None)
    running, results, stop = {}, {}, False
    retried: set[int] = set()  # requests already launched a second time
    while waiting or running:
        while waiting and not stop and len(running) < limit:
            request = waiting.pop(0)
            running[launch(request)] = request
            show(request.stage)
        if not running:
            break
        finished, _ = wait(running, return_when=FIRST_COMPLETED)
        for future in finished:
            request = running.pop(future)
            try:
                result = future.result()
            except Exception as error:  # no run summary came back: bad config, or a worker that died (e.g. out of memory)
                result = RunOutcome(request.job, request.partition, None, False, 0.0, error=f"{type(error).__name__}: {error}")
            if result.run_id and not result.success and not result.step_failed and id(request) not in retried:
                # The run failed around its steps (the executor lost a worker or a Ray job), not in
                # them: launch it once more, as Dagster's own run retries would. The failed run stays
                # in the instance, so the UI shows both.
                retried.add(id(request))
                waiting.insert(0, request)
                if request.stage in stages:
                    stages[request.stage].retrying(result)
                continue
            results[id(request)] = result
            stop = stop or (strict and not result.success)
            if request.stage in stages:
                stages[request.stage].done(result)
            show(request.stage)
    for stage in stages.values():
        stage.close()
    return [results[id(r)] for r in requests if id(r) in results]


def default_concurrency() -> int:
    return cores()
