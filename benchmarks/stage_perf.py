"""Library-only per-stage throughput and peak memory of the selection pipeline at 10k / 100k / 1M
records: no Dagster, no CLI, no report (``benchmarks/perf.py`` times what users run).

``python -m benchmarks.stage_perf --sizes 10000 100000 --repeats 3``

Pools are synthetic ~1 KB records (:mod:`benchmarks.synthetic`), 10,000 records per landing
shard. Each stage does what its Dagster asset does, through the same core functions and the same
files, minus the orchestration (``benchmarks/refresh.py`` measures that):

- ``ingest``: ``read_shard`` per landing file -> ``raw_pool`` + ``quarantine`` Parquet (``raw_pool``)
- ``embed``: static (model2vec) embeddings per shard -> Parquet (``embeddings``)
- ``fit``: reference ingest + embedding, content-keyed pool sample, DSIR and relevance fits
  (``target_reference``, ``dsir_model``, ``relevance_model``)
- ``score``: heuristics, MinHash, DSIR, relevance per shard (``quality_scores``)
- ``select``: pool scorers (ids, exact/near duplicates, SemDeDup, label noise), decisions and the
  build files (``filtered_set``)

Every stage of every repeat runs in a fresh child process, so one stage's memory never counts
against another: the child reports its own peak RSS (``ru_maxrss``, interpreter and imports
included) and the seconds of the stage's work (imports excluded, model loading included). The
end-to-end row is the sum of the stage seconds of one repeat and the largest stage peak. Results
are appended to ``benchmarks/work/stage_perf/runs.jsonl`` as each stage finishes, and the markdown
table (medians over repeats, cost slopes between sizes) is rewritten to
``benchmarks/results/stage_perf.md`` each time, so a long run leaves partial results.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dataselect.scorers import DEFAULT_SHARD_SCORERS, SCORERS

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "benchmarks" / "work" / "stage_perf"
RESULTS = REPO / "benchmarks" / "results" / "stage_perf.md"
STAGES = ["ingest", "embed", "fit", "score", "select"]
SHARD_SCORERS = list(DEFAULT_SHARD_SCORERS)  # what quality_scores runs by default
FIT_SCORERS = [name for name in SHARD_SCORERS if SCORERS[name].needs_fit]
# Targets from the issue.
TARGET_END_TO_END_RPS = 2_000
TARGET_PEAK_RSS_MB_AT_1M = 4_096


@dataclass
class PerfConfig:
    """Knobs of one benchmark invocation (the CLI flags)."""

    sizes: tuple[int, ...] = (10_000, 100_000)
    repeats: int = 3
    stages: tuple[str, ...] = tuple(STAGES)
    records_per_shard: int = 10_000
    workers: int = 2  # processes for the per-shard stages (ingest, embed, score): one per core
    fit_sample_size: int | None = None  # None: each scorer's own, as the fit assets (FitConfig default)
    budget: float = 0.1
    seed: int = 0
    work: Path = WORK
    results: Path = RESULTS
    tag: str = ""  # free text stored with each run (e.g. the machine's state)


# --------------------------------------------------------------------------- stages (child side)


def _store(work: Path) -> str:
    return str(work / "store")


def _shard_keys(store: str) -> list[str]:
    return sorted(p.stem for p in (Path(store) / "raw_pool").glob("*.parquet"))


# State the parent sets up before forking the shard workers (models loaded once, inherited).
_SHARED: dict = {}


def map_shards(function, items: list, workers: int) -> list:
    """``function`` over per-shard ``items`` in ``workers`` forked processes, as Dagster runs each
    shard partition's run in its own process, side by side (1 = in this process)."""
    if workers <= 1 or len(items) <= 1:
        return [function(item) for item in items]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(min(workers, len(items)), mp_context=multiprocessing.get_context("fork")) as pool:
        return list(pool.map(function, items))


def _ingest_one(item: tuple) -> int:
    from dataselect.ingest import read_shard
    from dataselect.storage import confined, write_parquet

    store, path, key, fingerprint = item
    result = read_shard(path, key)
    meta = {"fingerprint": fingerprint, "source": str(path), "raw_count": str(result.raw_count)}
    write_parquet(confined(store, "raw_pool", f"{key}.parquet"), result.records, meta)
    write_parquet(confined(store, "quarantine", f"{key}.parquet"), result.quarantine, meta)
    return result.raw_count


def stage_ingest(work: Path, options: dict) -> int:
    from dataselect.ingest import list_landing_files

    store = _store(work)
    items = [(store, landing.path, landing.key, landing.fingerprint) for landing in list_landing_files(work / "pool" / "landing")]
    return sum(map_shards(_ingest_one, items, options["workers"]))


def _embed_one(item: tuple) -> int:
    from dataselect import records as cols
    from dataselect.embedding import vectors_to_arrow
    from dataselect.pipeline import records_fingerprint
    from dataselect.storage import confined, read_parquet, write_parquet

    store, key = item
    embedder = _SHARED["embedder"]
    records = read_parquet(confined(store, "raw_pool", f"{key}.parquet"), columns=[cols.ID, cols.TEXT, cols.CONTENT_HASH])
    source = records_fingerprint(records)
    vectors = embedder.embed(records.column(cols.TEXT).to_pylist())
    table = vectors_to_arrow(records.column(cols.ID), vectors)
    write_parquet(
        confined(store, "embeddings", f"{key}.parquet"), table, {"source": source, "backend": embedder.name, "dim": str(embedder.dim)}
    )
    return records.num_rows


def stage_embed(work: Path, options: dict) -> int:
    from dataselect.embedding import StaticEmbedder

    store = _store(work)
    _SHARED["embedder"] = StaticEmbedder()
    _SHARED["embedder"].embed(["warm up: load the model before forking"])
    return sum(map_shards(_embed_one, [(store, key) for key in _shard_keys(store)], options["workers"]))


def _read_vectors(store: str, asset: str, key: str) -> np.ndarray:
    from dataselect.embedding import arrow_to_vectors
    from dataselect.storage import confined, read_parquet

    return arrow_to_vectors(read_parquet(confined(store, asset, f"{key}.parquet")))[1]


def stage_fit(work: Path, options: dict) -> int:
    from dataselect import records as cols
    from dataselect.embedding import StaticEmbedder, vectors_to_arrow
    from dataselect.ingest import read_reference
    from dataselect.pipeline import make_scorers, pool_sample
    from dataselect.scorers import SCORERS
    from dataselect.scorers.base import Batch
    from dataselect.storage import confined, read_parquet, write_parquet

    store = _store(work)
    reference = read_reference(work / "pool" / "reference.jsonl").records
    target_vectors = StaticEmbedder().embed(reference.column(cols.TEXT).to_pylist())
    write_parquet(confined(store, "reference", "target.parquet"), reference)
    write_parquet(confined(store, "reference", "target_embeddings.parquet"), vectors_to_arrow(reference.column(cols.ID), target_vectors))
    keys = _shard_keys(store)
    columns = [cols.ID, cols.TEXT, cols.CONTENT_HASH, cols.LABEL, cols.SHARD, cols.ROW]
    total = sum(read_parquet(confined(store, "raw_pool", f"{k}.parquet"), [cols.ID]).num_rows for k in keys)
    for name in FIT_SCORERS:  # one fit asset per scorer, each drawing its own sample
        needs_vectors = SCORERS[name].needs_embeddings
        shards = (
            (
                read_parquet(confined(store, "raw_pool", f"{k}.parquet"), columns),
                _read_vectors(store, "embeddings", k) if needs_vectors else None,
            )
            for k in keys
        )
        sample = pool_sample(shards, total, options["fit_sample_size"] or SCORERS[name].fit_sample_size, options["seed"])
        scorer = make_scorers([name])[0]
        scorer.fit(sample, Batch(reference, target_vectors if needs_vectors else None))
        scorer.save(confined(store, "models", name))
    return total


def _score_one(item: tuple) -> int:
    from dataselect.pipeline import score_shard
    from dataselect.storage import confined, parquet_metadata, read_parquet, write_parquet

    store, key = item
    scorers = _SHARED["scorers"]
    raw = confined(store, "raw_pool", f"{key}.parquet")
    records = read_parquet(raw)
    needs_vectors = any(s.needs_embeddings for s in scorers)
    table = score_shard(records, _read_vectors(store, "embeddings", key) if needs_vectors else None, scorers)
    meta = {"scorers": ",".join(SHARD_SCORERS), "fingerprint": parquet_metadata(raw)["fingerprint"]}
    write_parquet(confined(store, "quality_scores", f"{key}.parquet"), table, meta)
    return records.num_rows


def stage_score(work: Path, options: dict) -> int:
    from dataselect.pipeline import make_scorers
    from dataselect.scorers import SCORERS
    from dataselect.storage import confined

    store = _store(work)
    _SHARED["scorers"] = [
        SCORERS[name].load(confined(store, "models", name)) if SCORERS[name].needs_fit else make_scorers([name])[0]
        for name in SHARD_SCORERS
    ]
    return sum(map_shards(_score_one, [(store, key) for key in _shard_keys(store)], options["workers"]))


def stage_select(work: Path, options: dict) -> int:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    from dataselect import records as cols
    from dataselect.build import build_id_for, make_manifest, select, write_build
    from dataselect.scorers import DEFAULT_POOL_SCORERS
    from dataselect.selection import SelectionConfig
    from dataselect.storage import confined, parquet_metadata, read_parquet

    store = _store(work)
    keys = _shard_keys(store)
    scores = pa.concat_tables([read_parquet(confined(store, "quality_scores", f"{k}.parquet")) for k in keys], promote_options="permissive")
    quarantine = pd.concat([read_parquet(confined(store, "quarantine", f"{k}.parquet")).to_pandas() for k in keys], ignore_index=True)
    vectors = np.concatenate([_read_vectors(store, "embeddings", k) for k in keys])
    fingerprints = {k: parquet_metadata(confined(store, "raw_pool", f"{k}.parquet"))["fingerprint"] for k in keys}
    selection = SelectionConfig(budget=options["budget"], seed=options["seed"])
    pool_scorers = list(DEFAULT_POOL_SCORERS)
    # The default recipe: label noise reads the shards' label_classifier probabilities, so no stage holds every text.
    pool_options: dict = {}
    decisions = select(scores, quarantine, vectors, selection, pool_scorers, pool_options, None)
    del scores, vectors
    build_id = build_id_for(selection, pool_scorers, pool_options, fingerprints)
    chosen = pa.array(decisions.loc[decisions[cols.STATUS] == cols.SELECTED, cols.ID].tolist(), pa.string())
    selected = pa.concat_tables(
        [
            t.filter(pc.is_in(t.column(cols.ID), value_set=chosen))
            for t in (read_parquet(confined(store, "raw_pool", f"{k}.parquet")) for k in keys)
        ],
        promote_options="permissive",
    )
    manifest = make_manifest(build_id, selection, pool_scorers, pool_options, fingerprints, decisions)
    write_build(store, build_id, decisions, selected, manifest)
    return len(decisions)


STAGE_FUNCTIONS = {"ingest": stage_ingest, "embed": stage_embed, "fit": stage_fit, "score": stage_score, "select": stage_select}


def _import_libraries() -> None:
    """Import what every stage uses before the clock starts: imports are a per-process constant
    (torch alone takes seconds), not throughput. Model loading stays inside the timed work."""
    import faiss  # noqa: F401
    import model2vec  # noqa: F401
    import sklearn.linear_model  # noqa: F401

    import dataselect.build  # noqa: F401
    import dataselect.embedding  # noqa: F401
    import dataselect.ingest  # noqa: F401
    import dataselect.pipeline  # noqa: F401
    import dataselect.scorers  # noqa: F401


def run_child(stage: str, work: Path, options: dict, result_path: Path) -> None:
    """Run one stage in this (fresh) process and write seconds, records and peak RSS as JSON."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    _import_libraries()
    started = time.perf_counter()
    cpu_started = time.process_time()
    children_started = os.times()
    records = STAGE_FUNCTIONS[stage](work, options)
    seconds = time.perf_counter() - started
    children = os.times()
    children_cpu = (children.children_user - children_started.children_user) + (children.children_system - children_started.children_system)
    # Kilobytes on Linux. Workers run side by side, so the peak is bounded by this process's peak
    # plus every worker at the largest worker's peak (an upper bound: forked pages are shared).
    own_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    worker_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss if children_cpu > 0 else 0
    result_path.write_text(
        json.dumps(
            {
                "stage": stage,
                "records": int(records),
                "seconds": seconds,
                "cpu_seconds": time.process_time() - cpu_started + children_cpu,
                "peak_rss_mb": (own_kb + options["workers"] * worker_kb) / 1024,
            }
        )
    )


# --------------------------------------------------------------------------- driver (parent side)


def measure_stage(stage: str, work: Path, options: dict) -> dict:
    """One stage in a child process; raises with the child's stderr when it fails."""
    result_path = work / f".{stage}.result.json"
    result_path.unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        "benchmarks.stage_perf",
        "--child",
        stage,
        "--work",
        str(work),
        "--options",
        json.dumps(options),
        "--child-result",
        str(result_path),
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    load = os.getloadavg()[0]
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"stage {stage} failed ({completed.returncode}):\n{completed.stderr[-4000:]}")
    result = json.loads(result_path.read_text())
    result.update(process_seconds=time.perf_counter() - started, load_before=load)
    return result


def prepare_pool(size: int, config: PerfConfig) -> tuple[Path, dict]:
    from benchmarks.synthetic import SyntheticConfig, write_pool

    work = config.work / f"n{size}"
    started = time.perf_counter()
    description = write_pool(work / "pool", SyntheticConfig(n_records=size, records_per_shard=config.records_per_shard, seed=config.seed))
    description["write_seconds"] = round(time.perf_counter() - started, 1)
    return work, description


def run_benchmark(config: PerfConfig) -> list[dict]:
    """Every (size, repeat, stage) in order; each result is appended to runs.jsonl as it lands."""
    config.work.mkdir(parents=True, exist_ok=True)
    runs_path = config.work / "runs.jsonl"
    runs: list[dict] = []
    options = {"fit_sample_size": config.fit_sample_size, "budget": config.budget, "seed": config.seed, "workers": config.workers}
    for size in config.sizes:
        work, description = prepare_pool(size, config)
        for repeat in range(config.repeats):
            shutil.rmtree(work / "store", ignore_errors=True)  # every repeat starts from the landing files
            for stage in config.stages:
                result = measure_stage(stage, work, options)
                result.update(
                    size=size,
                    repeat=repeat,
                    bytes_per_record=description["bytes_per_record"],
                    tag=config.tag,
                    workers=config.workers,
                    time=time.strftime("%Y-%m-%dT%H:%M:%S"),
                )
                runs.append(result)
                with runs_path.open("a") as handle:
                    handle.write(json.dumps(result) + "\n")
                print(
                    f"[perf] n={size} repeat={repeat} {stage}: {result['seconds']:.1f}s "
                    f"({result['records'] / max(result['seconds'], 1e-9):,.0f} rec/s), peak {result['peak_rss_mb']:,.0f} MB",
                    flush=True,
                )
                write_markdown(load_runs(runs_path), config.results)
    return runs


def load_runs(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def summarize(runs: list[dict]) -> list[dict]:
    """Median seconds and peak RSS per (size, stage), plus the end-to-end row per size.

    Only the latest invocation's runs of a (size, stage, repeat) count when a run was repeated
    across invocations; the end-to-end row needs every stage of a repeat.
    """
    latest: dict[tuple[int, str, int], dict] = {}
    for run in runs:
        latest[(run["size"], run["stage"], run["repeat"])] = run
    rows = []
    for size in sorted({k[0] for k in latest}):
        per_stage = {}
        for stage in STAGES:
            items = [r for (n, s, _), r in latest.items() if n == size and s == stage]
            if not items:
                continue
            seconds = float(np.median([r["seconds"] for r in items]))
            per_stage[stage] = items
            rows.append(
                {
                    "size": size,
                    "stage": stage,
                    "runs": len(items),
                    "seconds": seconds,
                    "records_per_second": items[0]["records"] / seconds if seconds else float("nan"),
                    "peak_rss_mb": float(np.median([r["peak_rss_mb"] for r in items])),
                    "max_peak_rss_mb": float(max(r["peak_rss_mb"] for r in items)),
                    "cpu_seconds": float(np.median([r.get("cpu_seconds", float("nan")) for r in items])),
                    "load": float(np.median([r.get("load_before", float("nan")) for r in items])),
                }
            )
        repeats = sorted({rep for (n, _, rep) in latest if n == size})
        complete = [rep for rep in repeats if all((size, s, rep) in latest for s in STAGES)]
        if complete:
            totals = [sum(latest[(size, s, rep)]["seconds"] for s in STAGES) for rep in complete]
            cpu_totals = [sum(latest[(size, s, rep)].get("cpu_seconds", float("nan")) for s in STAGES) for rep in complete]
            peaks = [max(latest[(size, s, rep)]["peak_rss_mb"] for s in STAGES) for rep in complete]
            seconds = float(np.median(totals))
            rows.append(
                {
                    "size": size,
                    "stage": "end_to_end",
                    "runs": len(complete),
                    "seconds": seconds,
                    "records_per_second": size / seconds,
                    "peak_rss_mb": float(np.median(peaks)),
                    "max_peak_rss_mb": float(max(peaks)),
                    "cpu_seconds": float(np.median(cpu_totals)),
                    "load": float("nan"),
                }
            )
    # Cost slope d log(seconds) / d log(records) against the next smaller size: 1.0 is linear.
    by_stage: dict[str, list[dict]] = {}
    for row in rows:
        by_stage.setdefault(row["stage"], []).append(row)
    for items in by_stage.values():
        items.sort(key=lambda r: r["size"])
        for smaller, larger in zip(items, items[1:]):
            larger["slope"] = float(np.log(larger["seconds"] / smaller["seconds"]) / np.log(larger["size"] / smaller["size"]))
    return rows


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    return f"{value:,.{digits}f}"


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| records | stage | runs | median s | records/s | records per CPU-s | peak RSS MB (median / max) | slope vs smaller | load avg |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['size']:,} | {row['stage']} | {row['runs']} | {_fmt(row['seconds'], 1)} | {_fmt(row['records_per_second'])} | "
            f"{_fmt(row['size'] / row['cpu_seconds'] if row['cpu_seconds'] > 0 else float('nan'))} | "
            f"{_fmt(row['peak_rss_mb'])} / {_fmt(row['max_peak_rss_mb'])} | {_fmt(row.get('slope'), 2)} | {_fmt(row['load'], 1)} |"
        )
    return "\n".join(lines)


def target_lines(rows: list[dict]) -> list[str]:
    end_to_end = {r["size"]: r for r in rows if r["stage"] == "end_to_end"}
    lines = []
    if 100_000 in end_to_end:
        rate = end_to_end[100_000]["records_per_second"]
        verdict = "met" if rate >= TARGET_END_TO_END_RPS else "NOT met"
        lines.append(
            f"- End to end at 100k records, static backend: {rate:,.0f} records/s against ≥ {TARGET_END_TO_END_RPS:,}: **{verdict}**."
        )
    else:
        lines.append("- End to end at 100k records: not run yet.")
    million = [r for r in rows if r["size"] == 1_000_000]
    if million:
        peak = max(r["max_peak_rss_mb"] for r in million)
        stages = sorted({r["stage"] for r in million} - {"end_to_end"})
        verdict = "met" if peak <= TARGET_PEAK_RSS_MB_AT_1M else "NOT met"
        lines.append(
            f"- 1M records: peak RSS {peak:,.0f} MB over the stages run ({', '.join(stages)}) against ≤ {TARGET_PEAK_RSS_MB_AT_1M:,} MB: **{verdict}**."
        )
    else:
        lines.append("- 1M records: not run.")
    slopes = [r for r in rows if "slope" in r]
    if slopes:
        worst = max(slopes, key=lambda r: r["slope"])
        lines.append(f"- Cost slopes (1.0 = linear): worst {worst['slope']:.2f} ({worst['stage']}, up to {worst['size']:,} records).")
    return lines


def write_markdown(runs: list[dict], path: Path = RESULTS) -> str:
    rows = summarize(runs)
    sizes = sorted({r["size"] for r in runs})
    bytes_per_record = {r["size"]: r.get("bytes_per_record") for r in runs}
    text = "\n".join(
        [
            "# Library-only pipeline throughput and memory (`python -m benchmarks.stage_perf`; no Dagster, no report)",
            "",
            f"Machine: {platform.machine()}, {os.cpu_count()} CPUs shared with other jobs (load average per row: the 1-minute load "
            f"before the stage started), Python {platform.python_version()}. Static (model2vec) embedding backend. Synthetic pools "
            f"(`benchmarks/synthetic.py`) of {', '.join(f'{s:,}' for s in sizes)} records, "
            + ", ".join(f"{bytes_per_record[s]:,.0f} B/record of JSONL at {s:,}" for s in sizes if bytes_per_record.get(s))
            + ", 10,000 records per landing shard. Each stage runs in a fresh process; the per-shard stages (ingest, embed, score) "
            f"fan their shards out over {max(r.get('workers', 1) for r in runs) if runs else 1} forked worker processes, one per core, "
            "as Dagster runs each shard partition's run in its own process. Seconds exclude the interpreter start and imports. Peak RSS is the "
            "stage process's `ru_maxrss` (imports included) plus, for the per-shard stages, the number of workers times the largest "
            "worker's `ru_maxrss`: an upper bound on the memory in use at once (forked pages are shared). End to end = the sum of the "
            "five stages' seconds in one repeat (median over repeats); its peak = the largest stage peak of the repeat. Records per "
            "CPU-s divides by the CPU time (user + system) of the stage process and its workers. Slope = d log(time) / d log(records) "
            "against the next smaller size.",
            "",
            markdown_table(rows),
            "",
            "## Targets",
            "",
            *target_lines(rows),
            "",
        ]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(PerfConfig.sizes))
    parser.add_argument("--repeats", type=int, default=PerfConfig.repeats)
    parser.add_argument("--stages", nargs="+", default=STAGES, choices=STAGES)
    parser.add_argument("--records-per-shard", type=int, default=PerfConfig.records_per_shard)
    parser.add_argument("--workers", type=int, default=PerfConfig.workers)
    parser.add_argument("--work", type=Path, default=WORK)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--tag", default="")
    parser.add_argument("--report-only", action="store_true", help="rewrite the markdown from runs.jsonl")
    # Internal: one stage in a child process.
    parser.add_argument("--child", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--options", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--child-result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run_child(args.child, args.work, json.loads(args.options), args.child_result)
        return 0
    config = PerfConfig(
        sizes=tuple(args.sizes),
        repeats=args.repeats,
        stages=tuple(args.stages),
        records_per_shard=args.records_per_shard,
        workers=args.workers,
        work=args.work,
        results=args.results,
        tag=args.tag,
    )
    if args.report_only:
        print(write_markdown(load_runs(config.work / "runs.jsonl"), config.results))
        return 0
    run_benchmark(config)
    print(write_markdown(load_runs(config.work / "runs.jsonl"), config.results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
