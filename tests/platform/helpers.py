"""Shared helpers for the Dagster-layer tests: a build driver, an independent count of raw
input rows, and the quiet, offline test environment.

The driver runs the build plan (jobs/build_plan.py) through the same runner as ``dataselect
build``, in this process, against a real (SQLite) Dagster instance; single assets can still be
materialized on their own with ``run``.
"""

from __future__ import annotations

import gzip
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

# Offline model loading and no GX telemetry, before anything imports them.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

import pyarrow.parquet as pq  # noqa: E402
from dagster import AssetCheckEvaluation, DagsterInstance, ExecuteInProcessResult, materialize  # noqa: E402

from dataselect.ingest import list_landing_files  # noqa: E402
from dataselect_platform.definitions import all_assets, all_checks  # noqa: E402
from dataselect_platform.runner import BuildInputs, RunRequest, execute_run, run_plan  # noqa: E402
from jobs import selection_build_job  # noqa: E402
from jobs.build_plan import BUILD_PLAN, BuildSettings  # noqa: E402
from platform_assets.partitions import shards  # noqa: E402
from resources import EmbeddingResource, make_resources  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
# Five random seeds is the minimum the evaluation asks for; cheaper analyses than the default
# (no ablation, two budgets) keep end-to-end tests short, and none at all where a test needs none.
FAST_REPORT = {"random_seeds": [101, 102, 103, 104, 105]}
FAST_ANALYSES = {"budgets": [0.1, 0.2], "ablation": False}
NO_ANALYSES = {"budgets": [], "ablation": False}
ALL_CHECK_NAMES = {spec.name for check in all_checks for spec in check.check_specs}


def raw_row_count(path: str | os.PathLike) -> int:
    """Rows of one landing file counted without the ingest code: non-blank JSONL lines or Parquet rows."""
    path = Path(path)
    if path.name.endswith(".parquet"):
        return pq.ParquetFile(path).metadata.num_rows
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as handle:
        return sum(1 for line in handle if line.strip())


def raw_rows_in(landing: str | os.PathLike) -> int:
    return sum(raw_row_count(p) for p in Path(landing).iterdir() if not p.name.startswith("."))


@dataclass
class RunEvents:
    """One run's events read back from the instance: what tests inspect of a run the build plan launched."""

    run_id: str
    success: bool
    events: list

    @classmethod
    def read(cls, instance: DagsterInstance, run_id: str) -> "RunEvents":
        from dagster import DagsterRunStatus

        events = [entry.dagster_event for entry in instance.all_logs(run_id) if entry.dagster_event is not None]
        return cls(run_id, instance.get_run_by_id(run_id).status == DagsterRunStatus.SUCCESS, events)

    def get_asset_materialization_events(self) -> list:
        return [e for e in self.events if e.is_step_materialization]

    def get_asset_check_evaluations(self) -> list[AssetCheckEvaluation]:
        return [e.event_specific_data for e in self.events if e.event_type_value == "ASSET_CHECK_EVALUATION"]


def check_evaluations(result: ExecuteInProcessResult | RunEvents) -> list[AssetCheckEvaluation]:
    return list(result.get_asset_check_evaluations())


def materialized_keys(result: ExecuteInProcessResult | RunEvents) -> set[str]:
    return {event.asset_key.to_user_string() for event in result.get_asset_materialization_events()}


def latest_metadata(instance: DagsterInstance, asset: str) -> dict:
    from dagster import AssetKey

    event = instance.get_latest_materialization_event(AssetKey(asset))
    assert event is not None, f"{asset} was never materialized"
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def build_with_plan(instance: DagsterInstance, inputs: BuildInputs, settings: BuildSettings, **options) -> list[RunEvents]:
    """The whole build plan on ``instance``, in this process; fails the test on any failed run."""
    outcome = run_plan(instance, inputs, settings, **options)
    failed = [(r.job, r.partition, r.error, r.failed_checks) for r in outcome.runs if not r.success]
    assert not failed and not outcome.stopped, f"build failed: {failed} {outcome.stopped or ''}"
    return [RunEvents.read(instance, run_id) for run_id in outcome.run_ids]


@dataclass
class PlatformBuild:
    """Runs the build plan, or single assets, on one instance, store and set of inputs."""

    instance: DagsterInstance
    landing: str
    reference: str
    evaluation: str | None
    store: str
    backend: str = "static"
    embedding_options: dict = field(default_factory=dict)
    results: list[ExecuteInProcessResult | RunEvents] = field(default_factory=list)
    seconds: list[tuple[str, float]] = field(default_factory=list)  # (what, wall seconds) per materialize call

    def __post_init__(self):
        self.resources = make_resources(self.landing, self.reference, self.evaluation or "", self.store, self.backend)
        if self.embedding_options:
            self.resources["embedding"] = EmbeddingResource(backend=self.backend, **self.embedding_options)
        self.inputs = BuildInputs(
            self.landing, self.reference, self.evaluation, self.store, {"backend": self.backend, **self.embedding_options}
        )
        self.keys = [f.key for f in list_landing_files(self.landing)]
        self.instance.add_dynamic_partitions(shards.name, self.keys)

    def run(self, selection: list[str], partition_key: str | None = None, run_config: dict | None = None) -> ExecuteInProcessResult:
        started = time.perf_counter()
        result = materialize(
            [*all_assets, *all_checks],
            selection=selection,
            partition_key=partition_key,
            instance=self.instance,
            resources=self.resources,
            run_config=run_config or {},
            raise_on_error=False,
        )
        self.seconds.append((f"{','.join(selection)}[{partition_key or ''}]", round(time.perf_counter() - started, 1)))
        failures = [e.message for e in result.all_events if e.is_failure]
        assert result.success, f"{selection} [{partition_key}] failed: {failures}"
        self.results.append(result)
        return result

    def build(self, seed: int, selection_config: dict, analyses_config: dict | None = None) -> list[RunEvents]:
        """The whole build plan, as ``dataselect build`` runs it."""
        settings = BuildSettings(seed=seed, selection=selection_config, report=FAST_REPORT, analyses=analyses_config or FAST_ANALYSES)
        results = build_with_plan(self.instance, self.inputs, settings)
        self.results.extend(results)
        return results

    def select_and_report(self, selection_config: dict, analyses_config: dict | None = None) -> list[RunEvents]:
        """The plan's selection and report steps again (e.g. on another budget), one run after another."""
        seed = selection_config.get("seed", 0)
        settings = BuildSettings(seed=seed, selection=selection_config, report=FAST_REPORT, analyses=analyses_config or FAST_ANALYSES)
        base = {"resources": self.inputs.resources_config(), "execution": {"config": {"in_process": {}}}}
        runs, build_id = [], None
        for step in (s for s in BUILD_PLAN if s.job == selection_build_job.name):
            for _, assets in step.runs(settings, []):
                config = {**base, **step.run_config(settings, assets, build_id)}
                outcome = execute_run(self.instance, RunRequest(step.job, None, config, assets))
                assert outcome.success, f"{step.job} {assets} failed: {outcome.error} {outcome.failed_checks}"
                build_id = build_id or outcome.build_id
                runs.append(RunEvents.read(self.instance, outcome.run_id))
        self.results.extend(runs)
        return runs

    def build_paths(self, build_id: str) -> dict[str, Path]:
        build = Path(self.store) / "builds" / build_id
        return {
            "selected": build / "selected.parquet",
            "decisions": build / "decisions.parquet",
            "manifest": build / "manifest.json",
            "report": build / "report" / "report.html",
            "summary": build / "report" / "summary.json",
            "analyses": build / "analyses" / "report.html",
            "budget_sweep": build / "analyses" / "budget_sweep.parquet",
        }
