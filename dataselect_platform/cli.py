"""The ``dataselect`` command: a full build through Dagster, for scripting and CI.

``dataselect build`` materializes the same assets as the UI, in dependency order, against a
Dagster instance under ``--out`` (unless DAGSTER_HOME is set), and prints progress then, on
its last line, a JSON object with the output paths and the record counts.
"""


import argparse
import json
import os
import sys
import time
from pathlib import Path


def _progress(message: str) -> None:
    print(f"[dataselect] {message}", flush=True)


def run_build(landing: str, reference: str, evaluation: str | None, out: str, budget: float, seed: int,
              backend: str, policy: str | None = None) -> dict:
    out_dir = Path(out).resolve()
    home = os.environ.get("DAGSTER_HOME") or str(out_dir / "dagster_home")
    os.environ["DAGSTER_HOME"] = home
    Path(home).mkdir(parents=True, exist_ok=True)

    from dagster import DagsterInstance, materialize

    from dataselect.ingest import list_landing_files
    from dataselect_platform.definitions import all_assets, all_checks, make_resources
    from platform_assets.partitions import shards
    from platform_assets.scoring import DEFAULT_MODEL_KEYS
    from platform_assets.selection import filtered_set

    resources = make_resources(landing, reference, evaluation or "", str(out_dir / "store"), backend)
    instance = DagsterInstance.get()
    files = list_landing_files(landing)
    if not files:
        raise SystemExit(f"no supported shard files (.jsonl, .jsonl.gz, .parquet, .csv) in {landing}")
    instance.add_dynamic_partitions(shards.name, [f.key for f in files])
    selection_config = {"budget": budget, "seed": seed, **({"policy": policy} if policy else {})}
    definitions = [*all_assets, *all_checks]

    def run(selection: list[str], partition_key: str | None = None, run_config: dict | None = None) -> None:
        started = time.perf_counter()
        result = materialize(definitions, selection=selection, partition_key=partition_key, instance=instance,
                             resources=resources, run_config=run_config or {}, raise_on_error=False)
        where = f" [{partition_key}]" if partition_key else ""
        if not result.success:
            failures = [e for e in result.all_events if e.is_step_failure]
            error = failures[0].step_failure_data.error if failures else None
            while error is not None and error.cause is not None:
                error = error.cause  # the user's exception, not Dagster's wrapper around it
            failure = error.message.strip() if error is not None else "see the Dagster event log"
            raise SystemExit(f"materializing {selection}{where} failed: {failure}")
        _progress(f"{', '.join(selection)}{where}: done in {time.perf_counter() - started:.1f}s")

    started = time.perf_counter()
    for f in files:
        run(["raw_pool", "embeddings"], f.key)
    model_keys = DEFAULT_MODEL_KEYS
    run(["target_reference", *model_keys], run_config={"ops": {k: {"config": {"seed": seed}} for k in model_keys}})
    for f in files:
        run(["quality_scores"], f.key)
    run(["filtered_set", "evaluation_set", "evaluation_report"], run_config={"ops": {"filtered_set": {"config": selection_config}}})

    from dataselect.storage import read_json

    store = resources["storage"]
    event = instance.get_latest_materialization_event(filtered_set.key).asset_materialization
    build_id = event.metadata["build_id"].value
    manifest = read_json(store.path("builds", build_id, "manifest.json"))
    report_dir = store.path("builds", build_id, "report")
    return {
        "build_id": build_id,
        "selected": str(store.path("builds", build_id, "selected.parquet")),
        "decisions": str(store.path("builds", build_id, "decisions.parquet")),
        "manifest": str(store.path("builds", build_id, "manifest.json")),
        "report": str(report_dir / "report.html"),
        "summary": str(report_dir / "summary.json"),
        "counts": {k: manifest["counts"][k] for k in ("raw", "selected", "rejected", "quarantined")},
        "dagster_home": home,
        "seconds": round(time.perf_counter() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dataselect", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="write the synthetic demo data and run a full build on it")
    demo.add_argument("--out", default="demo-build")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--budget", type=float, default=0.1)
    demo.add_argument("--backend", default="auto", choices=["auto", "static", "transformer"])
    build = commands.add_parser("build", help="run a full build on your own data")
    build.add_argument("--landing", required=True, help="folder of raw shards (.jsonl, .jsonl.gz, .parquet, .csv)")
    build.add_argument("--reference", required=True, help="target reference file or folder (JSONL/Parquet with text)")
    build.add_argument("--eval", default=None, help="labelled evaluation file (text, label); optional")
    build.add_argument("--budget", type=float, default=0.1, help="≤ 1: fraction of raw records; > 1: a count")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--policy", default=None, help="top_k | gumbel_top_k | threshold | cluster_balanced | ccs | sensitivity")
    build.add_argument("--backend", default="auto", choices=["auto", "static", "transformer"])
    build.add_argument("--out", required=True, help="output folder: the store, the builds and a Dagster home")
    args = parser.parse_args(argv)

    # Before any heavy import (Dagster, torch): a bad call fails at once, naming what is wrong.
    from dataselect.build_inputs import InputError, check_build_inputs, check_run_arguments

    try:
        if args.command == "build":
            check_build_inputs(args.landing, args.reference, args.eval, args.out, args.budget, args.seed)
        else:
            check_run_arguments(args.out, args.budget, args.seed)
    except InputError as error:
        print(f"dataselect {args.command}: {error}", file=sys.stderr)
        return 2

    if args.command == "demo":
        from dataselect.demo import write_demo

        paths = write_demo(Path(args.out) / "data", seed=args.seed)
        _progress(f"demo data written under {Path(args.out) / 'data'} (synthetic, seeded)")
        result = run_build(str(paths.landing), str(paths.reference), str(paths.evaluation), args.out, args.budget, args.seed, args.backend)
    else:
        result = run_build(args.landing, args.reference, args.eval, args.out, args.budget, args.seed, args.backend, args.policy)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
