"""What users run, timed: ``dataselect build`` with the default recipe, as a subprocess.

``python -m benchmarks.perf --pool synthetic realtext --sizes 100000 --repeats 3``
(the 1M-record real-text build: ``--pool realtext --sizes 1000000 --repeats 1 --cold-only``)

Each repeat runs the command a user types (``python -m dataselect_platform.cli build --landing ...
--reference ... --eval ... --budget 0.1 --out ...``) in a fresh process, so the wall clock includes
the interpreter start, every import, every Dagster run and check, and the evaluation report.

- **cold**: into a fresh ``--out`` folder (new Dagster instance and store);
- **warm**: the same build again into that folder (instance and store exist, files are in the
  page cache);
- **no report**: cold, with ``--no-report`` (the same decontaminated selection, no report runs), so
  the report's share of the build is what it adds to the wall clock: 1 - no report / cold, medians.

Peak memory is sampled from the whole process tree (the CLI and every worker it starts) every
0.2 s: the largest sum of RSS over the tree, and the largest single process (per step: the largest
single process while the step ran, which says which step holds the memory); the sum of PSS every
second. Stage seconds come
from the Dagster event log of the build's own instance: for each asset step, the sum of its step
durations over all runs and its span (first start to last end; shorter than the sum when
partitions run concurrently). Pools: :mod:`benchmarks.synthetic` (closed vocabulary) and
:mod:`benchmarks.realtext` (real 20 Newsgroups and Amazon text, spliced and edited).
Every run is appended to ``benchmarks/work/perf/runs.jsonl``; the table in
``benchmarks/results/perf.md`` is rewritten from all runs after each one.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "benchmarks" / "work" / "perf"
RESULTS = REPO / "benchmarks" / "results" / "perf.md"
TARGET_RPS = {"synthetic": 2_000, "realtext": 1_000}  # records/s of wall time at 100k
TARGET_PEAK_MB_AT_1M = 4_096
TARGET_DEMO_SECONDS = 15
TARGET_REPORT_SHARE = 0.15  # of the cold build's wall clock, at 100k
NO_REPORT = "no report"


def prepare_pool(kind: str, size: int, work: Path, seed: int = 0) -> dict:
    """Landing shards, a reference and (for realtext) an evaluation file; cached by config."""
    folder = work / f"{kind}-{size}"
    if kind == "demo":  # dataselect demo writes its own data into each --out
        return {"kind": kind, "folder": folder, "landing": None, "reference": None, "eval": None, "bytes_per_record": float("nan")}
    if kind == "synthetic":
        from benchmarks.synthetic import SyntheticConfig, write_pool

        description = write_pool(folder, SyntheticConfig(n_records=size, seed=seed))
    else:
        from benchmarks.realtext import RealTextConfig, write_pool

        description = write_pool(folder, RealTextConfig(n_records=size, seed=seed))
    evaluation = folder / "eval.jsonl"
    return {
        "kind": kind,
        "folder": folder,
        "landing": folder / "landing",
        "reference": folder / "reference.jsonl",
        "eval": evaluation if evaluation.exists() else None,
        "bytes_per_record": description["bytes_per_record"],
    }


def _tree_memory(process: psutil.Process, proportional: bool = True) -> tuple[int, int, int]:
    """(sum of RSS, largest RSS, sum of PSS) over a process and its descendants, in bytes. The workers
    fork from a server that imported the platform, so each RSS counts those shared pages again; PSS
    divides each shared page among the processes that map it, so its sum is the tree's own memory.
    ``proportional=False`` leaves PSS at 0: reading it walks every mapping of every process."""
    rss, pss = [], []
    for member in [process, *process.children(recursive=True)]:
        try:
            info = member.memory_full_info() if proportional else member.memory_info()
        except psutil.Error:
            continue
        rss.append(info.rss)
        pss.append(getattr(info, "pss", info.rss) if proportional else 0)  # PSS is Linux's; elsewhere RSS stands in
    return sum(rss), max(rss, default=0), sum(pss)


# RSS is sampled every 0.2 s, PSS every fifth sample: read every 0.2 s, the PSS of the build's
# processes took 12% of a core (6% of this 2-core machine) away from the build it measured.
_SAMPLE_SECONDS, _PSS_EVERY = 0.2, 5


def build_command(pool: dict, out: Path, budget: float, report: bool = True) -> list[str]:
    """``dataselect build`` as a user types it (``dataselect demo`` for the demo pool)."""
    cli = [sys.executable, "-m", "dataselect_platform.cli"]
    if pool["kind"] == "demo":
        return [*cli, "demo", "--out", str(out), "--budget", str(budget)]
    command = [*cli, "build", "--landing", str(pool["landing"]), "--reference", str(pool["reference"])]
    command += ["--budget", str(budget), "--out", str(out), *([] if report else ["--no-report"])]
    return command + (["--eval", str(pool["eval"])] if pool["eval"] is not None else [])


def run_build(pool: dict, out: Path, budget: float, log_path: Path, code: Path = REPO, report: bool = True) -> dict:
    """One build subprocess: wall seconds, peak tree RSS, and its JSON summary. ``code``: the checkout
    whose platform runs (the interpreter imports it from its working directory)."""
    command = build_command(pool, out, budget, report)
    environment = {**os.environ, "DAGSTER_HOME": str(out / "dagster_home")}
    peak_sum = peak_max = peak_pss = 0
    samples = []  # (epoch seconds, largest process RSS in MB): which step held the memory
    started = time.perf_counter()
    with log_path.open("w") as log:
        child = subprocess.Popen(command, cwd=code, env=environment, stdout=subprocess.PIPE, stderr=log, text=True)
        watched = psutil.Process(child.pid)
        while child.poll() is None:
            total, largest, proportional = _tree_memory(watched, len(samples) % _PSS_EVERY == 0)
            peak_sum, peak_max, peak_pss = max(peak_sum, total), max(peak_max, largest), max(peak_pss, proportional)
            samples.append((time.time(), largest / 2**20))
            time.sleep(_SAMPLE_SECONDS)
        stdout = child.stdout.read()
    seconds = time.perf_counter() - started
    log_path.write_text(log_path.read_text() + stdout)
    # A failed build (e.g. killed for memory) is still a measurement: its wall clock and peak so far.
    summary = json.loads(stdout.strip().splitlines()[-1]) if child.returncode == 0 else None
    return {
        "seconds": seconds,
        "peak_tree_mb": peak_sum / 2**20,
        "peak_process_mb": peak_max / 2**20,
        "peak_tree_pss_mb": peak_pss / 2**20,
        "summary": summary,
        "returncode": child.returncode,
        "samples": samples,
    }


def stage_seconds(dagster_home: Path, samples: list[tuple[float, float]] = ()) -> dict[str, dict]:
    """Per asset step: runs, summed step seconds and span, read from the build's event log, and the
    largest process RSS ``samples`` saw while it ran (another step's process, when one ran beside it)."""
    from dagster import DagsterEventType, DagsterInstance

    steps: dict[str, dict] = {}
    with DagsterInstance.from_config(str(dagster_home)) as instance:
        for run in instance.get_runs():
            starts: dict[str, float] = {}
            records = instance.get_records_for_run(
                run.run_id, of_type={DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS}, limit=100_000
            ).records
            for record in records:
                entry = record.event_log_entry
                if entry.dagster_event.event_type == DagsterEventType.STEP_START:
                    starts[entry.step_key] = entry.timestamp
                elif entry.step_key in starts:
                    step = steps.setdefault(entry.step_key, {"runs": 0, "sum": 0.0, "first": entry.timestamp, "last": 0.0})
                    step["runs"] += 1
                    step["sum"] += entry.timestamp - starts[entry.step_key]
                    step["first"] = min(step["first"], starts[entry.step_key])
                    step["last"] = max(step["last"], entry.timestamp)
                    during = [mb for at, mb in samples if starts[entry.step_key] <= at <= entry.timestamp]
                    step["peak_mb"] = max([step.get("peak_mb", 0.0), *during])
    return {
        key: {"runs": s["runs"], "sum": round(s["sum"], 2), "span": round(s["last"] - s["first"], 2), "peak_mb": round(s.get("peak_mb", 0))}
        for key, s in steps.items()
    }


def run_overheads(dagster_home: Path) -> dict:
    """What Dagster itself costs per run: each run's duration minus its steps' (median and sum),
    and the build's span from the first run's start to the last run's end."""
    from dagster import DagsterEventType, DagsterInstance

    overheads, starts, ends = [], [], []
    with DagsterInstance.from_config(str(dagster_home)) as instance:
        for run in instance.get_runs():
            stats = instance.get_run_stats(run.run_id)
            if not stats.start_time or not stats.end_time:
                continue
            records = instance.get_records_for_run(
                run.run_id, of_type={DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS}, limit=100_000
            ).records
            step_starts: dict[str, float] = {}
            steps = 0.0
            for record in records:
                entry = record.event_log_entry
                if entry.dagster_event.event_type == DagsterEventType.STEP_START:
                    step_starts[entry.step_key] = entry.timestamp
                elif entry.step_key in step_starts:
                    steps += entry.timestamp - step_starts[entry.step_key]
            overheads.append(stats.end_time - stats.start_time - steps)
            starts.append(stats.start_time)
            ends.append(stats.end_time)
    return {
        "runs": len(overheads),
        "median_run_overhead": round(_median(overheads), 2),
        "sum_run_overhead": round(sum(overheads), 2),
        "runs_span": round(max(ends) - min(starts), 2) if starts else float("nan"),
    }


def gx_seconds() -> tuple[float, float]:
    """(import, ephemeral context creation) seconds of Great Expectations in a fresh process."""
    code = (
        "import time; t = time.perf_counter(); import great_expectations; i = time.perf_counter() - t; "
        "from platform_assets.expectations import _context; t = time.perf_counter(); _context(); "
        "print(i, time.perf_counter() - t)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    imported, created = out.stdout.strip().splitlines()[-1].split()
    return float(imported), float(created)


def measure(
    kind: str, size: int, repeats: int, budget: float, work: Path, results: Path = RESULTS, cold_only: bool = False, bare: bool = True
) -> list[dict]:
    pool = prepare_pool(kind, size, work)
    runs = []
    temperatures = ["cold"] + ([] if cold_only else ["warm"]) + ([] if kind == "demo" or not bare else [NO_REPORT])
    for repeat in range(repeats):
        for temperature in temperatures:
            out = work / "builds" / f"{kind}-{size}-{repeat}{'-no-report' if temperature == NO_REPORT else ''}"
            if temperature != "warm":  # a fresh --out: new instance and store (warm rebuilds the cold one's)
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir(parents=True)
            result = run_build(pool, out, budget, out / f"{temperature.replace(' ', '-')}.log", report=temperature != NO_REPORT)
            samples = result.pop("samples")
            if temperature == "cold":
                result["stages"] = stage_seconds(out / "dagster_home", samples)
                result["overheads"] = run_overheads(out / "dagster_home")
            result.update(
                pool=kind,
                size=result["summary"]["counts"]["raw"] if kind == "demo" and result["summary"] else size,
                repeat=repeat,
                temperature=temperature,
                budget=budget,
                bytes_per_record=pool["bytes_per_record"],
                load=os.getloadavg()[0],
                time=time.strftime("%Y-%m-%dT%H:%M:%S"),
                commit=_commit(),
            )
            result["summary"] = {k: (result["summary"] or {}).get(k) for k in ("counts", "seconds")}
            runs.append(result)
            with (work / "runs.jsonl").open("a") as handle:
                handle.write(json.dumps(result) + "\n")
            print(
                f"[perf] {kind} n={size} repeat={repeat} {temperature}: {result['seconds']:.1f}s "
                f"({size / result['seconds']:,.0f} rec/s), peak tree {result['peak_tree_mb']:,.0f} MB",
                flush=True,
            )
            write_markdown(load_runs(work / "runs.jsonl"), results)
            if result["returncode"] != 0:
                raise RuntimeError(f"dataselect build failed ({result['returncode']}); see the logs in {out}")
    return runs


def _commit() -> str:
    """The checkout measured (with "+" when its tracked code has uncommitted changes; results and prose do not count)."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", ".", ":!benchmarks/results", ":!*.md"], cwd=REPO).returncode != 0
    return head + ("+" if dirty else "")


def load_runs(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _bytes(value: float) -> str:
    return "–" if value != value else f"{value:,.0f}"  # NaN: the demo writes its own pool


def _report_share_lines(groups: dict[tuple, list[dict]]) -> list[str]:
    """What the report adds to the cold build: its runs, and whatever they slow down beside them."""
    rows = []
    for (kind, size, temperature), without in sorted(groups.items()):
        with_report = groups.get((kind, size, "cold"))
        if temperature != NO_REPORT or not with_report:
            continue
        full, bare = _median([r["seconds"] for r in with_report]), _median([r["seconds"] for r in without])
        share = 1 - bare / full
        target = f"≤ {TARGET_REPORT_SHARE:.0%}: {'met' if share <= TARGET_REPORT_SHARE else 'not met'}" if size == 100_000 else ""
        rows.append(f"| {kind} | {size:,} | {full:.1f} | {bare:.1f} | {full - bare:.1f} | {share:.1%} | {target} |")
    if not rows:
        return []
    return [
        "",
        "## The report's share of the build",
        "",
        "Cold builds with and without `--no-report` (the same decontaminated selection; no run counts the pool's terms, trains "
        "an arm or writes the report). Share = 1 - without / with, medians: the wall clock the report adds, including what its "
        "runs slow down beside them.",
        "",
        "| pool | records | with report s | without s | report adds s | share | target |",
        "|---|---:|---:|---:|---:|---:|---|",
        *rows,
    ]


def write_markdown(runs: list[dict], path: Path = RESULTS) -> str:
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault((run["pool"], run["size"], run["temperature"]), []).append(run)
    lines = [
        "# `dataselect build` end to end (`python -m benchmarks.perf`)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}. Default recipe, budget 10%, "
        "the CLI's default embedding backend. Wall clock of the whole command (interpreter start, imports, every Dagster run "
        "and check, the report); median over repeats. Peak = the largest sum of RSS over the CLI's process tree, sampled every "
        "0.2 s (largest single process in brackets); it counts the pages the workers share with the fork server they forked "
        "from once per worker. PSS = the largest sum of proportional set sizes over the tree (each shared page divided among "
        "the processes mapping it), sampled every second: the memory the build itself occupies. Load = the 1-minute load average when the run ended; "
        "commit = the code measured.",
        "",
        "| pool | records | B/record | run | repeats | wall s (median) | records/s | target | peak MB [process] | PSS MB | load | commit |",
        "|---|---:|---:|---|---:|---:|---:|---|---:|---:|---:|---|",
    ]
    for (kind, size, temperature), group in sorted(groups.items()):
        seconds = _median([r["seconds"] for r in group])
        rps = size / seconds
        target = TARGET_RPS.get(kind) if size == 100_000 and temperature != NO_REPORT else None
        target_text = f"≥ {target:,} rec/s: {'met' if rps >= target else 'not met'}" if target else ""
        if kind == "demo":
            target_text = f"≤ {TARGET_DEMO_SECONDS} s: {'met' if seconds <= TARGET_DEMO_SECONDS else 'not met'}"
        peak = max(r["peak_tree_mb"] for r in group)
        if size >= 1_000_000 and temperature != NO_REPORT:
            target_text = f"peak ≤ {TARGET_PEAK_MB_AT_1M:,} MB: {'met' if peak <= TARGET_PEAK_MB_AT_1M else 'not met'}"
        pss = f"{max(r['peak_tree_pss_mb'] for r in group):,.0f}" if all("peak_tree_pss_mb" in r for r in group) else "–"
        failed = [r["returncode"] for r in group if r.get("returncode", 0) != 0]
        if failed:
            target_text = f"**failed** (exit {failed[0]}) in {len(failed)} of {len(group)}; " + target_text
        lines.append(
            f"| {kind} | {size:,} | {_bytes(group[0]['bytes_per_record'])} | {temperature} | {len(group)} | {seconds:.1f} | "
            f"{rps:,.0f} | {target_text} | {peak:,.0f} [{max(r['peak_process_mb'] for r in group):,.0f}] | {pss} | "
            f"{_median([r['load'] for r in group]):.1f} | {', '.join(sorted({r.get('commit', '?') for r in group}))} |"
        )
    slopes = []
    for kind in sorted({k for k, _, _ in groups}):
        sizes = sorted(s for k, s, t in groups if k == kind and t == "cold")
        for small, large in zip(sizes, sizes[1:]):
            a = _median([r["seconds"] for r in groups[(kind, small, "cold")]])
            b = _median([r["seconds"] for r in groups[(kind, large, "cold")]])
            slopes.append(
                f"- {kind}: cost slope d log(time) / d log(records) from {small:,} to {large:,}: {math.log(b / a) / math.log(large / small):.2f}"
            )
    if slopes:
        lines += ["", *slopes]
    lines += _report_share_lines(groups)
    lines += ["", "## Fixed costs of the cold builds (from the event log)", ""]
    lines += [
        "Per-run overhead = a run's duration minus its steps' (run setup, event writes, teardown). Outside runs = "
        "wall clock minus the span from the first run's start to the last run's end (interpreter start, imports, the "
        "fork server, input checks, writing the summary).",
        "",
        "| pool | records | runs | median per-run overhead s | sum of run overheads s | outside runs s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for (kind, size, temperature), group in sorted(groups.items()):
        cold = [r for r in group if temperature == "cold" and "overheads" in r]
        if cold:
            o = cold[0]["overheads"]
            outside = _median([r["seconds"] - r["overheads"]["runs_span"] for r in cold])
            lines.append(
                f"| {kind} | {size:,} | {o['runs']} | {o['median_run_overhead']:.2f} | {o['sum_run_overhead']:.1f} | {outside:.1f} |"
            )
    lines += ["", "## Stages of the cold builds (seconds from the Dagster event log; span < sum when partitions overlap)", ""]
    lines += [
        "Largest process = the largest single-process RSS sampled while the step ran: its own process, or another "
        "step's beside it (– : no sample fell inside the step, which took less than the 0.2 s between samples).",
        "",
        "| pool | records | step | runs | sum s | span s | largest process MB |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for (kind, size, temperature), group in sorted(groups.items()):
        if temperature != "cold" or "stages" not in group[0]:
            continue
        for step, stage in sorted(group[0]["stages"].items(), key=lambda item: -item[1]["sum"]):
            peak = f"{stage['peak_mb']:,}" if stage.get("peak_mb") else "–"
            lines.append(f"| {kind} | {size:,} | {step} | {stage['runs']} | {stage['sum']:.1f} | {stage['span']:.1f} | {peak} |")
    text = "\n".join(lines) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", nargs="+", default=["demo", "synthetic", "realtext"], choices=["demo", "synthetic", "realtext"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[100_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget", type=float, default=0.1)
    parser.add_argument("--work", type=Path, default=WORK)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--report-only", action="store_true", help="rewrite results/perf.md from runs.jsonl")
    parser.add_argument("--cold-only", action="store_true", help="skip the warm rebuild (for builds that take many minutes)")
    parser.add_argument("--skip-no-report", action="store_true", help="skip the --no-report build (the report's share)")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        for kind in args.pool:
            for size in [0] if kind == "demo" else args.sizes:  # the demo writes its own 3,540-row pool
                measure(kind, size, args.repeats, args.budget, args.work, args.results, args.cold_only, not args.skip_no_report)
    text = write_markdown(load_runs(args.work / "runs.jsonl"), args.results)
    gx = [gx_seconds() for _ in range(3)]
    text += (
        f"\nGreat Expectations in a fresh process (median of 3): import {statistics.median(g[0] for g in gx):.2f} s, "
        f"ephemeral context {statistics.median(g[1] for g in gx):.3f} s. The build's fork server imports GX once for "
        "all workers; each worker creates its context once, at its first check.\n"
    )
    args.results.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
