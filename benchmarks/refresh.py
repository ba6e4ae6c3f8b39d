"""One new shard refreshed through Dagster against a full rebuild of the same pool.

``python -m benchmarks.refresh --shards 10 --records-per-shard 2000 --repeats 3``

Both sides run the platform's real assets with ``dagster.materialize`` on a fresh instance and
store, static embedding backend, asset checks included:

- full rebuild: the build plan of ``dataselect build`` (``jobs/build_plan.py``), in this process;
- refresh: the first ``shards - 1`` shards are built as above (not timed); the last shard then
  lands and is processed the way the landing sensor's ``shard_ingest_job`` does it (``raw_pool``,
  ``embeddings``, ``quality_scores`` for that partition alone), followed by the global steps.

The work done is counted from the assets' own metadata: ``records_embedded`` of every
``embeddings`` materialization and ``dagster/row_count`` of every ``quality_scores`` one.
Global steps default to ``filtered_set`` (the selection build); ``--global-steps`` can add
``evaluation_set evaluation_report``. Writes ``benchmarks/results/refresh.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.synthetic import SyntheticConfig, write_pool

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "benchmarks" / "work" / "refresh"
RESULTS = REPO / "benchmarks" / "results" / "refresh.md"
TARGET_RATIO = 0.15


@dataclass
class RefreshConfig:
    shards: int = 10
    records_per_shard: int = 2_000
    repeats: int = 3
    global_steps: tuple[str, ...] = ("filtered_set",)
    seed: int = 0
    work: Path = WORK
    results: Path = RESULTS


@dataclass
class Driver:
    """Materializes assets on one instance/store and counts the records each run embedded and scored."""

    instance: object
    landing: str
    reference: str
    store: str
    resources: dict = field(init=False)
    records_embedded: int = 0
    records_scored: int = 0
    runs: int = 0

    def __post_init__(self) -> None:
        from dataselect_platform.definitions import make_resources

        self.resources = make_resources(self.landing, self.reference, "", self.store, "static")

    def register(self, keys: list[str]) -> None:
        from platform_assets.partitions import shards

        self.instance.add_dynamic_partitions(shards.name, keys)

    def run(self, selection: list[str], partition_key: str | None = None, run_config: dict | None = None) -> None:
        from dagster import materialize

        from dataselect_platform.definitions import all_assets, all_checks

        result = materialize(
            [*all_assets, *all_checks],
            selection=selection,
            partition_key=partition_key,
            instance=self.instance,
            resources=self.resources,
            run_config=run_config or {},
            raise_on_error=False,
        )
        if not result.success:
            failures = [e for e in result.all_events if e.is_step_failure]
            failure = (
                failures[0].step_failure_data.error.message if failures and failures[0].step_failure_data.error else "see the event log"
            )
            raise RuntimeError(f"{selection} [{partition_key}] failed: {failure}")
        self._count(result.get_asset_materialization_events())

    def _count(self, materializations) -> None:
        self.runs += 1
        for event in materializations:
            metadata = event.materialization.metadata
            name = event.asset_key.to_user_string()
            if name == "embeddings":
                self.records_embedded += int(metadata["records_embedded"].value)
            elif name == "quality_scores":
                self.records_scored += int(metadata["dagster/row_count"].value)

    def build_all(self, global_steps: tuple[str, ...], seed: int = 0) -> None:
        """The build plan (``dataselect build``'s runs), in this process, over every landing file."""
        from dataselect_platform.runner import BuildInputs, run_plan
        from jobs.build_plan import BuildSettings

        ops = _global_config(global_steps, seed)["ops"]
        settings = BuildSettings(
            seed,
            ops["filtered_set"]["config"],
            ops.get("evaluation_report", {}).get("config"),
            with_report="evaluation_report" in global_steps,
        )
        outcome = run_plan(self.instance, BuildInputs(self.landing, self.reference, None, self.store, {"backend": "static"}), settings)
        failed = [(r.job, r.partition, r.error) for r in outcome.runs if not r.success]
        if failed:
            raise RuntimeError(f"build failed: {failed}")
        for run_id in outcome.run_ids:
            events = [e.dagster_event for e in self.instance.all_logs(run_id) if e.dagster_event is not None]
            self._count([e for e in events if e.is_step_materialization])

    def refresh_shard(self, key: str, global_steps: tuple[str, ...], seed: int = 0) -> None:
        self.register([key])
        self.run(["raw_pool", "embeddings", "quality_scores"], key)
        self.run_global(global_steps, seed)

    def run_global(self, global_steps: tuple[str, ...], seed: int = 0) -> None:
        """The global steps over every shard, configured as the builds above configure them."""
        self.run(list(global_steps), run_config=_global_config(global_steps, seed))


def _global_config(global_steps: tuple[str, ...], seed: int) -> dict:
    ops = {"filtered_set": {"config": {"seed": seed}}}
    if "evaluation_report" in global_steps:
        ops["evaluation_report"] = {"config": {"random_seeds": [101, 102, 103, 104, 105]}}
    return {"ops": ops}


def _environment() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")


def newest_build(store: Path) -> Path:
    index = json.loads((store / "builds" / "index.json").read_text())
    return store / "builds" / index[-1]["build_id"]


def build_digests(store: Path) -> dict[str, str]:
    """sha256 of the newest build's selected, decisions and manifest files."""
    import hashlib

    build = newest_build(store)
    return {
        name: hashlib.sha256((build / name).read_bytes()).hexdigest() for name in ("selected.parquet", "decisions.parquet", "manifest.json")
    }


def build_models(store: Path) -> dict[str, str]:
    """The versions of the fitted models that scored the newest build's shards (from its manifest)."""
    return json.loads((newest_build(store) / "manifest.json").read_text())["scored_with"]["models"]


def one_repeat(config: RefreshConfig, pool_dir: Path, keys: list[str], scratch: Path) -> dict:
    """A full rebuild and a one-shard refresh, each on a fresh instance and store."""
    from dagster import instance_for_test

    reference = str(pool_dir / "reference.jsonl")
    full_landing = pool_dir / "landing"
    with instance_for_test() as instance:
        driver = Driver(instance, str(full_landing), reference, str(scratch / "full-store"))
        started = time.perf_counter()
        driver.build_all(config.global_steps, config.seed)
        full = {
            "seconds": time.perf_counter() - started,
            "records_embedded": driver.records_embedded,
            "records_scored": driver.records_scored,
            "runs": driver.runs,
            "outputs": build_digests(scratch / "full-store"),
        }

    landing = scratch / "refresh-landing"
    landing.mkdir()
    for key in keys[:-1]:
        shutil.copy(full_landing / f"{key}.jsonl", landing / f"{key}.jsonl")
    with instance_for_test() as instance:
        driver = Driver(instance, str(landing), reference, str(scratch / "refresh-store"))
        driver.build_all(config.global_steps, config.seed)
        shutil.copy(full_landing / f"{keys[-1]}.jsonl", landing / f"{keys[-1]}.jsonl")  # the new shard lands
        before = (driver.records_embedded, driver.records_scored, driver.runs)
        started = time.perf_counter()
        driver.refresh_shard(keys[-1], config.global_steps, config.seed)
        refresh = {
            "seconds": time.perf_counter() - started,
            "records_embedded": driver.records_embedded - before[0],
            "records_scored": driver.records_scored - before[1],
            "runs": driver.runs - before[2],
            "outputs": build_digests(scratch / "refresh-store"),
        }
    # Not timed: the same shards built from scratch with the refresh's fitted models instead of
    # refitting them, which tells whether the refresh differs from a rebuild by anything but the models.
    pinned_store = scratch / "pinned-store"
    shutil.copytree(scratch / "refresh-store" / "models", pinned_store / "models")
    with instance_for_test() as instance:
        driver = Driver(instance, str(full_landing), reference, str(pinned_store))
        driver.register(keys)
        for key in keys:
            driver.run(["raw_pool", "embeddings", "quality_scores"], key)
        driver.run_global(config.global_steps, config.seed)
    models = {side: build_models(scratch / f"{side}-store") for side in ("full", "refresh")}
    return {
        "full": full,
        "refresh": refresh,
        "ratio": refresh["seconds"] / full["seconds"],
        "identical_outputs": refresh["outputs"] == full["outputs"],
        "models_refit_by_the_rebuild": sorted(name for name in models["full"] if models["full"][name] != models["refresh"].get(name)),
        "identical_to_a_rebuild_with_the_same_models": refresh["outputs"] == build_digests(pinned_store),
    }


def markdown(config: RefreshConfig, repeats: list[dict], description: dict) -> str:
    ratio = float(np.median([r["ratio"] for r in repeats]))
    full_s = float(np.median([r["full"]["seconds"] for r in repeats]))
    refresh_s = float(np.median([r["refresh"]["seconds"] for r in repeats]))
    first = repeats[0]
    verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
    per_repeat = ", ".join(f"{r['ratio']:.1%}" for r in repeats)
    return "\n".join(
        [
            "# One-shard refresh vs full rebuild, through Dagster (`python -m benchmarks.refresh`)",
            "",
            f"{config.shards} synthetic shards × {config.records_per_shard:,} records (~{description['bytes_per_record']:,.0f} B/record), "
            f"static embeddings, asset checks on, global steps: {', '.join(config.global_steps)}, the default recipe. Medians of {len(repeats)} repeats "
            f"on {os.cpu_count()} shared CPUs (load average now {os.getloadavg()[0]:.1f}).",
            "",
            "| | seconds (median) | Dagster runs | records embedded | records scored |",
            "|---|---:|---:|---:|---:|",
            f"| full rebuild ({config.shards} shards) | {full_s:.1f} | {first['full']['runs']} | {first['full']['records_embedded']:,} | {first['full']['records_scored']:,} |",
            f"| refresh (1 new shard + global steps) | {refresh_s:.1f} | {first['refresh']['runs']} | {first['refresh']['records_embedded']:,} | {first['refresh']['records_scored']:,} |",
            "",
            f"Refresh / full rebuild: **{ratio:.1%}** (per repeat: {per_repeat}); target ≤ {TARGET_RATIO:.0%}: **{verdict}**.",
            "",
            "Outputs of the refresh byte-identical to the rebuild's (selected.parquet, decisions.parquet, manifest.json, "
            f"by sha256): **{'yes' if all(r['identical_outputs'] for r in repeats) else 'NO'}** in "
            f"{sum(r['identical_outputs'] for r in repeats)} of {len(repeats)} repeats. The refresh scores the new shard "
            "with the models fitted before it landed; the rebuild refits them on a sample of the grown pool, and the "
            f"models whose versions differ ({', '.join(first['models_refit_by_the_rebuild']) or 'none'}) give the rebuild "
            "another build id.",
            "",
            "The same shards built from scratch with the refresh's models instead of refitting them (not timed): outputs "
            f"byte-identical to the refresh's: **{'yes' if all(r['identical_to_a_rebuild_with_the_same_models'] for r in repeats) else 'NO'}** "
            f"in {sum(r['identical_to_a_rebuild_with_the_same_models'] for r in repeats)} of {len(repeats)} repeats.",
            "",
        ]
    )


def run(config: RefreshConfig) -> list[dict]:
    _environment()
    pool_dir = config.work / f"{config.shards}x{config.records_per_shard}"
    description = write_pool(
        pool_dir,
        SyntheticConfig(n_records=config.shards * config.records_per_shard, records_per_shard=config.records_per_shard, seed=config.seed),
    )
    keys = description["shards"]
    repeats = []
    for _ in range(config.repeats):
        scratch = Path(tempfile.mkdtemp(prefix="refresh-", dir=config.work))
        try:
            repeats.append(one_repeat(config, pool_dir, keys, scratch))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        print(f"[refresh] {json.dumps(repeats[-1])}", flush=True)
        text = markdown(config, repeats, description)
        config.results.parent.mkdir(parents=True, exist_ok=True)
        config.results.write_text(text)
    print(text)
    return repeats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=RefreshConfig.shards)
    parser.add_argument("--records-per-shard", type=int, default=RefreshConfig.records_per_shard)
    parser.add_argument("--repeats", type=int, default=RefreshConfig.repeats)
    parser.add_argument(
        "--global-steps",
        nargs="+",
        default=list(RefreshConfig.global_steps),
        choices=["filtered_set", "evaluation_set", "evaluation_report"],
    )
    parser.add_argument("--work", type=Path, default=WORK)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    run(
        RefreshConfig(
            shards=args.shards,
            records_per_shard=args.records_per_shard,
            repeats=args.repeats,
            global_steps=tuple(args.global_steps),
            work=args.work,
            results=args.results,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
