"""Where the evaluation report's time goes, on a store that ``benchmarks.perf`` built (library-only).

``python -m benchmarks.report_cost [--store benchmarks/work/perf/builds/realtext-100000-0/store]``

Reads the newest build of the store as the ``evaluation_report`` asset does (with the pool's term
counts that ``evaluation_features`` stored while the shards were scored, and the full pool's predictions
that ``evaluation_full_pool_arm`` stored beside the selection),
then times (1) the whole of :func:`dataselect.build_report.evaluate_build`, wall clock and CPU (user
+ system of this process, every thread), and (2) each of its TF-IDF arms alone on one thread:
featurising the arm from the pool's term counts, then fitting the fixed recipe (the full pool's
too, which the report reads instead when it was stored), and (3) what ``evaluation_features`` does,
alone on one thread: counting the pool's terms, then storing them. The counting, the fits and the
arms are the CPU the report's recipe needs at the least at this pool size, however its runs are
placed. Writes
``benchmarks/results/report_cost.md``.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

import dataselect  # noqa: F401  (the build's memory defaults)
from dataselect import evaluation, pool_terms, threads
from dataselect import records as cols
from dataselect.build_report import ReportConfig, evaluate_build, record_keys
from platform_assets.evaluation import pool_texts, read_build, stored_full_pool_arm, stored_pool_terms
from resources import StorageResource

REPO = Path(__file__).resolve().parents[1]
STORE = REPO / "benchmarks" / "work" / "perf" / "builds" / "realtext-100000-0" / "store"
RESULTS = REPO / "benchmarks" / "results" / "report_cost.md"
COUNTING = "count the pool's terms, alone on one thread"


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(store_root: Path) -> list[tuple[str, int, float, float]]:
    """(part, training records, wall s, CPU s) rows."""
    store = StorageResource(root=str(store_root))
    newest = sorted((p for p in store.path("builds").iterdir() if (p / "manifest.json").exists()), key=lambda p: p.stat().st_mtime)[-1]
    rows = []
    wall, cpu = time.perf_counter(), _cpu()
    build = read_build(store, newest.name)  # as the evaluation_report asset reads it
    counted = stored_pool_terms(store, build.manifest)
    if counted is None or build.eval_set is None:
        raise SystemExit(f"{store_root}: no labelled evaluation set or no matching evaluation_features (run benchmarks.perf on realtext)")
    full_pool = stored_full_pool_arm(store)
    rows.append(("read the build, pool, embeddings and term counts", len(build.pool), time.perf_counter() - wall, _cpu() - cpu))

    wall, cpu = time.perf_counter(), _cpu()
    inputs = (build.decisions, build.pool, build.pool_vectors, build.target_texts, build.target_vectors, build.selection)
    summary = evaluate_build(*inputs, build.eval_set, None, ReportConfig(), counted, full_pool).summary
    part = f"evaluate_build (arms on threads, metrics, plots; full-pool arm: {summary['full_pool_arm']})"
    rows.append((part, len(build.pool), time.perf_counter() - wall, _cpu() - cpu))

    # Each arm alone, on one thread: what its fit costs in CPU.
    good = build.decisions[build.decisions[cols.STATUS] != cols.QUARANTINED].reset_index(drop=True)
    keyed = build.pool.assign(**{cols.ID: record_keys(good).to_numpy()})
    evaluator = evaluation.ArmEvaluator(keyed, build.eval_set, config=evaluation.Config(n_jobs=1), pool_terms=counted)
    selected = evaluator.rows_of(keyed.loc[(good[cols.STATUS] == cols.SELECTED).to_numpy(), cols.ID])
    arms = [("selected", selected), ("one random arm", evaluator.random_rows(len(selected), 101))]
    arms += [("one stratified arm", evaluator.stratified_rows(len(selected), 101)), ("full pool", np.arange(evaluator.n_pool))]
    for name, arm_rows in arms:
        wall, cpu = time.perf_counter(), _cpu()
        evaluator.train_rows(arm_rows, name)
        rows.append((f"arm: {name}, alone on one thread", len(arm_rows), time.perf_counter() - wall, _cpu() - cpu))

    # evaluation_features' work, on the one thread a build gives it beside the scoring runs: the
    # counting, which the recipe needs wherever it runs, then the storing, which only handing the
    # counts to other runs needs.
    texts = pool_texts(store, sorted(build.manifest["input_shards"]))
    recipe = evaluation.Config()
    with threads.limited(1), tempfile.TemporaryDirectory() as folder:
        wall, cpu = time.perf_counter(), _cpu()
        counts = pool_terms.count(texts, recipe.ngram_range, recipe.min_df, counted.fingerprint)
        rows.append((COUNTING, len(texts), time.perf_counter() - wall, _cpu() - cpu))
        wall, cpu = time.perf_counter(), _cpu()
        pool_terms.write(folder, counts)
        rows.append(("store the pool's term counts (Parquet), alone on one thread", len(texts), time.perf_counter() - wall, _cpu() - cpu))
    return rows


def floor_cpu(rows: list[tuple[str, int, float, float]]) -> float:
    """CPU seconds the report's runs need at the least: the counting, the full pool's fit and every arm of the report."""
    config, cpu = ReportConfig(), {name: cpu for name, _, _, cpu in rows}
    arms = cpu["arm: selected, alone on one thread"] + len(config.random_seeds) * cpu["arm: one random arm, alone on one thread"]
    arms += config.stratified_seeds * cpu["arm: one stratified arm, alone on one thread"]
    return cpu[COUNTING] + cpu["arm: full pool, alone on one thread"] + arms


def write_markdown(store_root: Path, rows: list[tuple[str, int, float, float]], path: Path = RESULTS) -> str:
    lines = [
        "# Where the evaluation report's time goes (`python -m benchmarks.report_cost`, library-only)",
        "",
        f"Store: `{store_root.relative_to(REPO) if store_root.is_relative_to(REPO) else store_root}` (its newest build), "
        f"{time.strftime('%Y-%m-%d')}, 2 CPU cores. The default report (random arm: 5 seeds; stratified: 2; the full pool) "
        "with the pool's term counts from `evaluation_features` and the full pool's predictions from `evaluation_full_pool_arm`. "
        "CPU = user + system seconds "
        "of the process, every thread. The arms alone are each trained here, the full pool's too.",
        "",
        "| part | records | wall s | CPU s |",
        "|---|---:|---:|---:|",
        *[f"| {name} | {n:,} | {wall:.1f} | {cpu:.1f} |" for name, n, wall, cpu in rows],
        "",
        f"At the least, the report's runs need **{floor_cpu(rows):.1f} CPU s** (counting, the full pool's fit, the selected "
        f"arm, {len(ReportConfig().random_seeds)} random and {ReportConfig().stratified_seeds} stratified arms, each as alone "
        f"on one thread above): **{floor_cpu(rows) / 2:.1f} s** of wall clock on 2 cores with nothing idle, before storing "
        "or reading the counts, metrics, plots or run overheads.",
        "",
    ]
    text = "\n".join(lines)
    path.write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=STORE)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    print(write_markdown(args.store.resolve(), measure(args.store), args.results))


if __name__ == "__main__":
    main()
