"""The ``dataselect`` command: a full build through Dagster, for scripting and CI.

``dataselect build`` launches the platform's named jobs in the order of ``jobs/build_plan.py``
on a Dagster instance (``DAGSTER_HOME``, else one under ``--out``), per-shard runs up to
``--max-concurrent`` at a time, as the UI or the sensor would have launched them. Progress goes
to stderr; the last line on stdout is a JSON object with the output paths, the record counts and
any landing files that could not be built. It exits non-zero when a file failed or a run of the
selection or the report did.
"""

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from pathlib import Path

EXECUTORS = ("in_process", "multiprocess", "ray")


def run_build(
    landing: str,
    reference: str,
    evaluation: str | None,
    out: str,
    budget: float,
    seed: int,
    backend: str,
    policy: str | None = None,
    *,
    max_concurrent: int | None = None,
    executor: str = "in_process",
    ray_address: str | None = None,
    strict: bool = False,
    quiet: bool = False,
    task: str | None = None,
    tune: bool = False,
    report: bool = True,
    fresh_workers_above: int | None = None,
) -> dict:
    out_dir = Path(out).resolve()
    home = os.environ.get("DAGSTER_HOME") or str(out_dir / "dagster_home")
    os.environ["DAGSTER_HOME"] = home
    Path(home).mkdir(parents=True, exist_ok=True)
    from dagster import DagsterInstance

    from dataselect_platform.progress import BuildProgress, say
    from dataselect_platform.runner import BuildInputs, Execution, default_concurrency, run_plan
    from jobs.build_plan import BuildSettings

    store = out_dir / "store"
    inputs = BuildInputs(
        str(Path(landing).resolve()),
        str(Path(reference).resolve()),
        str(Path(evaluation).resolve()) if evaluation else None,
        str(store),
        {"backend": backend},
    )
    # task None: filtered_set decides (classification when a labelled --eval is given).
    options = {**({"policy": policy} if policy else {}), **({"task": task} if task else {}), **({"tune": True} if tune else {})}
    settings = BuildSettings(seed=seed, selection={"budget": budget, **options}, with_report=report)
    execution = Execution(executor, ray_address, gpu_step_num_gpus=1.0 if executor == "ray" and _uses_cuda(backend) else 0.0)
    if fresh_workers_above is not None:
        execution = dataclasses.replace(execution, fresh_workers_above=fresh_workers_above)
    concurrency = max_concurrent or default_concurrency()
    say(f"building on the Dagster instance in {home}: up to {concurrency} runs at a time, {executor} executor", quiet)
    started = time.perf_counter()
    with DagsterInstance.get() as instance:
        outcome = run_plan(instance, inputs, settings, execution, max_concurrent=concurrency, strict=strict, progress=BuildProgress(quiet))
    return build_summary(outcome, store, home, time.perf_counter() - started)


def build_summary(outcome, store: Path, home: str, seconds: float) -> dict:
    """The CLI's last stdout line for a :class:`~dataselect_platform.runner.BuildOutcome`."""
    from dataselect.storage import read_json

    summary: dict = {"build_id": outcome.build_id}
    if outcome.build_id:
        build = store / "builds" / outcome.build_id
        manifest = read_json(build / "manifest.json")
        # The report's files only when this build's report was written (its run may have failed).
        report = _report_files(build, outcome.stopped)
        summary.update(
            selected=str(build / "selected.parquet"),
            decisions=str(build / "decisions.parquet"),
            manifest=str(build / "manifest.json"),
            **{name: str(path) for name, path in report.items()},
            counts={k: manifest["counts"][k] for k in ("raw", "selected", "rejected", "quarantined")},
            # Does the selection beat random and the full pool on the evaluation set (None: no labelled eval)?
            verdict=_verdict(report["summary"]) if report else None,
        )
        if "tune" in manifest["config"]:
            summary["tune"] = {k: manifest["config"]["tune"][k] for k in ("chosen", "held_out_accuracy", "default_held_out_accuracy")}
    summary.update(
        failed_files=sorted(f["file"] for f in outcome.failed),
        failures=outcome.failed,
        **({"stopped": outcome.stopped} if outcome.stopped else {}),
        runs=len(outcome.runs),
        dagster_home=home,
        seconds=round(seconds, 1),
    )
    return summary


def _report_files(build: Path, stopped: str | None) -> dict[str, Path]:
    files = {"report": build / "report" / "report.html", "summary": build / "report" / "summary.json"}
    if stopped or not all(path.exists() for path in files.values()):
        return {}
    analyses = build / "analyses" / "report.html"  # the budget sweep and the ablation
    return {**files, "analyses": analyses} if analyses.exists() else files


def exit_code(result: dict) -> int:
    """0 only for a build that ran every stage on every landing file: a stopped build (a failed
    selection or report run) or a file left out is a failure, whatever it did make."""
    return 0 if result["build_id"] and not result["failed_files"] and not result.get("stopped") else 1


def _verdict(summary_path: Path) -> dict | None:
    from dataselect.storage import read_json

    verdict = read_json(summary_path).get("verdict") if summary_path.exists() else None
    return {k: verdict[k] for k in ("beats_random", "beats_full")} if verdict else None


def _uses_cuda(backend: str) -> bool:
    """Whether the embedding steps will run on a GPU (and so should ask Ray for one)."""
    device = os.environ.get("DATASELECT_DEVICE", "auto")
    if device != "auto":
        return device == "cuda"
    import torch

    return backend != "static" and torch.cuda.is_available()


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
    build.add_argument(
        "--task",
        default=None,
        choices=["classification", "language_modeling"],
        help="classification rejects unlabelled records before the budget; default: classification with --eval",
    )
    build.add_argument(
        "--tune",
        action="store_true",
        help="choose the recipe on half of the labelled --eval file (see dataselect.tuning), report on the other half",
    )
    build.add_argument(
        "--no-report",
        dest="report",
        action="store_false",
        help="make the selection only: no evaluation report, no budget sweep (an --eval file still decontaminates the pool)",
    )
    build.add_argument("--backend", default="auto", choices=["auto", "static", "transformer"])
    build.add_argument("--out", required=True, help="output folder: the store, the builds and a Dagster home")
    build.add_argument(
        "--strict",
        action="store_true",
        help="stop at the first file that fails (default: build from the readable files, exit non-zero, list the failed ones)",
    )
    for command in (demo, build):
        command.add_argument("--max-concurrent", type=int, default=None, help="runs at a time per stage (default: the number of cores)")
        command.add_argument("--executor", default="in_process", choices=EXECUTORS, help="how each run executes its steps")
        command.add_argument("--ray-address", default=None, help="Ray dashboard address for --executor ray, e.g. http://127.0.0.1:8265")
        command.add_argument("--quiet", action="store_true", help="no progress; only failures (stderr) and the JSON summary (stdout)")
        command.add_argument(
            "--fresh-workers-above",
            type=int,
            default=None,
            help="above this many records, the global steps run in workers of their own, freeing the shard workers' "
            "caches (default 250000; 0: always)",
        )
    args = parser.parse_args(argv)
    run_options = {
        "max_concurrent": args.max_concurrent,
        "executor": args.executor,
        "ray_address": args.ray_address,
        "quiet": args.quiet,
        "fresh_workers_above": args.fresh_workers_above,
    }

    # Before any heavy import (Dagster, torch): a bad call fails at once, naming what is wrong.
    from dataselect.build_inputs import InputError, check_build_inputs, check_policy, check_run_arguments

    try:
        if args.command == "build":
            check_build_inputs(args.landing, args.reference, args.eval, args.out, args.budget, args.seed)
            check_policy(args.policy)
        else:
            check_run_arguments(args.out, args.budget, args.seed)
    except InputError as error:
        print(f"dataselect {args.command}: {error}", file=sys.stderr)
        return 2
    from dataselect.threads import cores

    if (args.max_concurrent or cores()) > 1:
        from dataselect_platform import fork_server

        fork_server.start()  # it imports the code location for the workers while this process goes on

    if args.command == "demo":
        from dataselect.demo import write_demo
        from dataselect_platform.progress import say

        paths = write_demo(Path(args.out) / "data", seed=args.seed)
        say(f"demo data written under {Path(args.out) / 'data'} (synthetic, seeded)", args.quiet)
        result = run_build(
            str(paths.landing), str(paths.reference), str(paths.evaluation), args.out, args.budget, args.seed, args.backend, **run_options
        )
    else:
        result = run_build(
            args.landing,
            args.reference,
            args.eval,
            args.out,
            args.budget,
            args.seed,
            args.backend,
            args.policy,
            strict=args.strict,
            task=args.task,
            tune=args.tune,
            report=args.report,
            **run_options,
        )
    print(json.dumps(result), flush=True)
    return exit_code(result)


def run() -> None:
    """The console script: ``main()``, then exit without the interpreter's teardown of every
    imported module (about 1 s with Dagster loaded). Everything is written and closed by then."""
    code = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
