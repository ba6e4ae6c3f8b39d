"""Shared helpers for the Dagster-layer tests: a build driver over real ``materialize`` calls,
an independent count of raw input rows, and the quiet, offline test environment.

The driver runs the assets in the order ``dataselect build`` uses (see dataselect_platform/cli.py):
per shard raw_pool + embeddings, then target_reference + the default models, then
quality_scores per shard, then filtered_set + evaluation_set + evaluation_report, each with
its asset checks, against a real (SQLite) Dagster instance.
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
from dataselect_platform.definitions import all_assets, all_checks, make_resources  # noqa: E402
from platform_assets.partitions import shards  # noqa: E402
from platform_assets.scoring import DEFAULT_MODEL_KEYS  # noqa: E402
from resources import EmbeddingResource  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
# A cheaper report than the default (no ablation, two budgets) keeps end-to-end tests short;
# five random seeds is the minimum the evaluation asks for.
FAST_REPORT = {"random_seeds": [101, 102, 103, 104, 105], "budgets": [0.1, 0.2], "ablation": False}
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


def check_evaluations(result: ExecuteInProcessResult) -> list[AssetCheckEvaluation]:
    return list(result.get_asset_check_evaluations())


def materialized_keys(result: ExecuteInProcessResult) -> set[str]:
    return {event.asset_key.to_user_string() for event in result.get_asset_materialization_events()}


def latest_metadata(instance: DagsterInstance, asset: str) -> dict:
    from dagster import AssetKey

    event = instance.get_latest_materialization_event(AssetKey(asset))
    assert event is not None, f"{asset} was never materialized"
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


@dataclass
class PlatformBuild:
    """Materializes the platform's assets step by step on one instance, store and set of inputs."""

    instance: DagsterInstance
    landing: str
    reference: str
    evaluation: str | None
    store: str
    backend: str = "static"
    embedding_options: dict = field(default_factory=dict)
    results: list[ExecuteInProcessResult] = field(default_factory=list)
    seconds: list[tuple[str, float]] = field(default_factory=list)  # (what, wall seconds) per materialize call

    def __post_init__(self):
        self.resources = make_resources(self.landing, self.reference, self.evaluation or "", self.store, self.backend)
        if self.embedding_options:
            self.resources["embedding"] = EmbeddingResource(backend=self.backend, **self.embedding_options)
        self.keys = [f.key for f in list_landing_files(self.landing)]
        self.instance.add_dynamic_partitions(shards.name, self.keys)

    def run(self, selection: list[str], partition_key: str | None = None, run_config: dict | None = None) -> ExecuteInProcessResult:
        started = time.perf_counter()
        result = materialize(
            [*all_assets, *all_checks], selection=selection, partition_key=partition_key, instance=self.instance,
            resources=self.resources, run_config=run_config or {}, raise_on_error=False,
        )
        self.seconds.append((f"{','.join(selection)}[{partition_key or ''}]", round(time.perf_counter() - started, 1)))
        failures = [e.message for e in result.all_events if e.is_failure]
        assert result.success, f"{selection} [{partition_key}] failed: {failures}"
        self.results.append(result)
        return result

    def ingest_and_fit(self, seed: int = 0) -> None:
        for key in self.keys:
            self.run(["raw_pool", "embeddings"], key)
        self.run(["target_reference", *DEFAULT_MODEL_KEYS], run_config={"ops": {k: {"config": {"seed": seed}} for k in DEFAULT_MODEL_KEYS}})
        for key in self.keys:
            self.run(["quality_scores"], key)

    def select_and_report(self, selection_config: dict, report_config: dict | None = None) -> ExecuteInProcessResult:
        ops = {"filtered_set": {"config": selection_config}, "evaluation_report": {"config": report_config or FAST_REPORT}}
        return self.run(["filtered_set", "evaluation_set", "evaluation_report"], run_config={"ops": ops})

    def build_paths(self, build_id: str) -> dict[str, Path]:
        build = Path(self.store) / "builds" / build_id
        return {
            "selected": build / "selected.parquet",
            "decisions": build / "decisions.parquet",
            "manifest": build / "manifest.json",
            "report": build / "report" / "report.html",
            "summary": build / "report" / "summary.json",
        }
