"""Methods benchmark on two corpora: every selection method alone, the baselines, the default
recipe, and the dev grid that chose the default. ``python -m benchmarks.methods [--quick]``.

Setup (see :mod:`benchmarks.newsgroups`): a corrupted training pool; the labelled target data split
by seed into reference / dev / test. Corpora: 20 Newsgroups (target ``sci.*``, predict the
newsgroup) and the multi-domain Amazon reviews (target kitchen, predict the sentiment). Recipe
fixed per corpus (DataComp-style, Gadre et al. 2023): ``tfidf_logreg`` of
:mod:`dataselect.evaluation` trained on the selected records' (possibly flipped) labels, its C
and n-gram range chosen on dev. Every choice reads dev only; test is read for the headline.

Every platform method runs through the same core functions as the Dagster assets: scorers fitted
on :func:`~dataselect.pipeline.pool_sample`, :func:`~dataselect.pipeline.score_shard` per landing
shard, :func:`~dataselect.pipeline.score_pool`, then :func:`~dataselect.selection.decide`; the
default recipe is :func:`dataselect.build.select` with the registry defaults, as ``filtered_set``
calls it. The authors' DSIR (``data_selection.HashedNgramDSIR``, Xie et al. 2023) runs on the same
pool and reference, written as JSONL files.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import multiprocessing
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy import stats
from sklearn.metrics import roc_auc_score

from benchmarks.newsgroups import (
    CORPORA,
    IN_TARGET,
    REPO,
    WORK_DIR,
    Benchmark,
    PoolConfig,
    build_benchmark,
    cached_embeddings,
    code_fingerprint,
)
from dataselect import records as cols
from dataselect.build import select as build_select
from dataselect.corruption import (
    IS_EXACT_DUP,
    IS_FLIPPED,
    IS_JUNK,
    IS_NEAR_DUP,
    SOURCE_ID,
)
from dataselect.embedding import StaticEmbedder
from dataselect.evaluation import ArmEvaluator
from dataselect.evaluation import Config as EvaluationConfig
from dataselect.pipeline import make_scorers, pool_sample, score_pool, score_shard
from dataselect.scorers import DEFAULT_POOL_SCORERS, DEFAULT_SHARD_SCORERS
from dataselect.scorers.base import Batch
from dataselect.scorers.dsir import DSIRImportance, kl_reduction
from dataselect.scorers.label_noise import LabelNoise
from dataselect.selection import SelectionConfig, decide
from dataselect.tuning import grid as tuning_grid
from dataselect.tuning import tune, tune_table, with_label_filter_strength

RESULTS_DIR = REPO / "benchmarks" / "results"
ALL_FILTERS = ["heuristics", "exact_dup", "near_dup", "semdedup", "label_noise"]
RANDOM_COLUMN = "uniform.log_weight"  # constant log weight: gumbel_top_k on it is uniform sampling
SHARD_SCORERS = ["heuristics", "minhash", "dsir", "relevance", "ngram_relevance", "label_prior", "label_classifier", "color"]


@dataclass
class BenchConfig:
    """Benchmark knobs; the pool itself is :class:`PoolConfig`."""

    seed: int = 0  # selection seed (Gumbel noise, k-means, CCS) and fit seed
    budget: float = 0.1  # fraction of all raw records, as the platform counts it
    fit_sample_size: int | None = None  # None: each scorer's own, as the Dagster fit assets (FitConfig default)
    random_seeds: tuple[int, ...] = (1, 2, 3, 4, 5)  # random-10% rows, and "+ random" methods
    throughput_runs: int = 3  # DSIR vs data-selection, median of this many
    corpora: tuple[str, ...] = CORPORA
    # The evaluation recipe's hyper-parameters, chosen on dev: C, word n-grams up to 2 or unigrams
    # (TF-IDF on the pool's 1-2-gram counts either way), and the solver (SGD for the report's
    # default epochs, or saga to convergence).
    model_c_grid: tuple[float, ...] = (1.0, 10.0, 100.0)
    ngram_grid: tuple[tuple[int, int], ...] = ((1, 2), (1, 1))
    solver_grid: tuple[str, ...] = ("sgd", "saga")
    # SGD epochs of the report's own recipe (evaluation.Config): the fewest at which no arm's dev
    # accuracy falls more than report_epochs_tolerance below the most epochs' (choose_report_epochs).
    report_epochs_grid: tuple[int, ...] = (2, 3, 5)
    report_epochs_tolerance: float = 0.01
    grid_limit: int | None = None  # run only the first this many dev-grid recipes (quick mode)
    workers: int = 2  # corpora run in parallel processes
    color: dict[str, Any] = field(default_factory=dict)  # CoLoR-Filter config overrides (none: its defaults)
    include_color: bool = True
    use_cache: bool = True  # reuse cached scores (benchmarks/work) when inputs and dataselect code are unchanged
    work_dir: Path = WORK_DIR  # scratch: landing shards, cached embeddings and scores
    pool: PoolConfig = field(default_factory=PoolConfig)


def quick_config() -> BenchConfig:
    """A small subsample for the smoke test: seconds, not minutes; numbers are not meaningful."""
    return BenchConfig(
        random_seeds=(1, 2),
        throughput_runs=1,
        model_c_grid=(10.0,),
        ngram_grid=((1, 2),),
        solver_grid=("sgd",),
        report_epochs_grid=(2, 5),
        grid_limit=3,  # the rows share selection_row with the methods table; three keep the path covered
        workers=1,
        fit_sample_size=500,
        include_color=False,  # its fit alone takes ~30 s even tiny; tests/test_color_filter.py covers it
        use_cache=False,
        pool=PoolConfig(pool_limit=400, eval_limit=100, n_shards=2),
    )


# --------------------------------------------------------------------------- scoring
class Timer:
    """Seconds per named stage (fit and score per scorer, embeddings), summed for each method."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    def total(self, stages: list[str]) -> float:
        return float(sum(self.seconds.get(s, 0.0) for s in stages))


def shard_embeddings(bench: Benchmark, embeddings: np.ndarray) -> list[np.ndarray]:
    bounds = np.cumsum([0] + [s.num_rows for s in bench.shards])
    return [embeddings[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:])]


def fit_and_score_shards(
    bench: Benchmark, embeddings: np.ndarray, target_embeddings: np.ndarray, config: BenchConfig, timer: Timer, names: list[str]
) -> pa.Table:
    """Fit every shard scorer on the pool sample + reference, then ``score_shard`` per shard."""
    per_shard = shard_embeddings(bench, embeddings)
    total = sum(s.num_rows for s in bench.shards)
    scorers = make_scorers(names, {"color": config.color, "label_classifier": {"seed": config.seed}})
    for scorer in scorers:
        if scorer.needs_fit:
            started = time.perf_counter()
            sample = pool_sample(zip(bench.shards, per_shard), total, config.fit_sample_size or scorer.fit_sample_size, config.seed)
            target = Batch(bench.reference, target_embeddings if scorer.needs_embeddings else None)
            scorer.fit(sample, target)
            timer.add(f"{scorer.name}.fit", time.perf_counter() - started)
    tables = []
    for records, vectors in zip(bench.shards, per_shard):
        parts = []
        for scorer in scorers:  # one scorer at a time, only to time each; same columns as one call
            started = time.perf_counter()
            parts.append(score_shard(records, vectors, [scorer]))
            timer.add(f"{scorer.name}.score", time.perf_counter() - started)
        table = parts[0]
        for part in parts[1:]:
            for name in part.column_names:
                if name not in table.column_names:
                    table = table.append_column(part.schema.field(name), part.column(name))  # with its metadata
        tables.append(table)
    return pa.concat_tables(tables)


def score_all_pool(scores: pa.Table, embeddings: np.ndarray, texts: list[str], seed: int, timer: Timer) -> pd.DataFrame:
    """Pool scorers in the default order, then label noise on embeddings under ``label_noise_emb``
    (its own folds' models: the shards' label_classifier column holds the TF-IDF ones)."""
    table = scores
    frame = None
    runs = [(name, make_scorers([name])[0]) for name in ("exact_dup", "near_dup", "semdedup")]
    runs.append(("label_noise", LabelNoise(features="tfidf", seed=seed)))
    runs.append(("label_noise_emb", LabelNoise(features="embeddings", seed=seed, proba_column=None)))
    for stage, scorer in runs:
        started = time.perf_counter()
        frame = score_pool(table, embeddings, [scorer], texts if scorer.needs_text_given(table.column_names) else None)
        timer.add(f"{stage}.score", time.perf_counter() - started)
        # score_pool names columns by scorer name, so both label-noise runs write "label_noise.*".
        for column in [c for c in frame.columns if c.startswith(f"{scorer.name}.")]:
            name = column.replace("label_noise.", "label_noise_emb.") if stage == "label_noise_emb" else column
            values = frame[column].to_numpy()
            table = table.append_column(name, pa.array(values, from_pandas=True))
    frame = table.drop_columns([c for c in table.column_names if c.endswith(".signature")]).to_pandas()
    frame[RANDOM_COLUMN] = 0.0
    return frame


# --------------------------------------------------------------------------- the authors' DSIR
def _write_jsonl(path: Path, ids: list[str], texts: list[str]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for record_id, text in zip(ids, texts):
            handle.write(json.dumps({"id": record_id, "text": text}) + "\n")


def authors_dsir(
    ids: list[str], texts: list[str], target_texts: list[str], k: int, seed: int, work_dir: Path, fit_and_score_only: bool = False
):
    """``data_selection.HashedNgramDSIR`` on the same pool/target, one process per core (our DSIR
    uses one thread per core: the same 2 cores each).

    Returns ``(seconds for fit + importance weights, selected ids or None)``. The selection is its
    own ``resample`` (Gumbel top-k, with its default 100-token minimum length filter).
    """
    from data_selection import HashedNgramDSIR

    work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work_dir) as scratch:
        scratch = Path(scratch)
        _write_jsonl(scratch / "raw.jsonl", ids, texts)
        _write_jsonl(scratch / "target.jsonl", [str(i) for i in range(len(target_texts))], target_texts)
        dsir = HashedNgramDSIR(
            [str(scratch / "raw.jsonl")], [str(scratch / "target.jsonl")], str(scratch / "cache"), num_proc=len(os.sched_getaffinity(0))
        )
        started = time.perf_counter()
        dsir.fit_importance_estimator(num_tokens_to_fit="all")
        dsir.compute_importance_weights()
        seconds = time.perf_counter() - started
        if fit_and_score_only:
            return seconds, None
        np.random.seed(seed)  # resample draws its Gumbel noise from numpy's global generator
        dsir.resample(out_dir=str(scratch / "out"), num_to_sample=k, cache_dir=str(scratch / "resample_cache"))
        chosen = [json.loads(line)["id"] for file in sorted((scratch / "out").glob("*.jsonl")) for line in open(file)]
    return seconds, chosen


def dsir_throughput(bench: Benchmark, runs: int, seed: int, k: int, work_dir: Path) -> dict[str, Any]:
    """Records/s of fit + score, ours vs the authors', alternating in one process; median of runs.

    The authors' first run also resamples ``k`` records: that is their method row's selection.
    """
    from dataselect.selection.sampling import gumbel_top_k

    ids = bench.records.column(cols.ID).to_pylist()
    texts = bench.texts
    target_texts = bench.reference.column(cols.TEXT).to_pylist()
    pool_batch = Batch(bench.records.select([cols.ID, cols.TEXT]))
    target_batch = Batch(bench.reference)
    ours, theirs, theirs_selected = [], [], None
    for run_index in range(runs):
        started = time.perf_counter()
        scorer = DSIRImportance().fit(pool_batch, target_batch)
        log_weight = scorer.score(pool_batch)["log_weight"]
        ours.append(time.perf_counter() - started)
        seconds, chosen = authors_dsir(ids, texts, target_texts, k, seed, work_dir, fit_and_score_only=run_index > 0)
        theirs.append(seconds)
        theirs_selected = theirs_selected or chosen
    return {
        "records": len(ids),
        "ours_seconds": float(np.median(ours)),
        "theirs_seconds": float(np.median(theirs)),
        "ours_rps": len(ids) / float(np.median(ours)),
        "theirs_rps": len(ids) / float(np.median(theirs)),
        "ours_selected": list(np.asarray(ids, dtype=object)[gumbel_top_k(log_weight, k, seed)]),
        "theirs_selected": theirs_selected,
        "theirs_first_seconds": theirs[0],
        "runs": runs,
    }


# --------------------------------------------------------------------------- methods
@dataclass
class Method:
    name: str
    stages: list[str]  # timer stages the method depends on (for its wall time)
    selection: SelectionConfig | None = None  # decide() on the precomputed scores
    special: str | None = None  # "full", "random", "stratified", "authors_dsir"
    note: str = ""


def _stages(*scorers: str, embeddings: bool = False) -> list[str]:
    stages = ["embed"] if embeddings else []
    for name in scorers:
        stages += [f"{name}.fit", f"{name}.score"]
    return stages


FILTER_STAGES = {
    "heuristics": _stages("heuristics"),
    "exact_dup": _stages("exact_dup"),
    "near_dup": _stages("minhash", "near_dup"),
    "semdedup": _stages("semdedup", embeddings=True),
    "label_noise": _stages("label_classifier", "label_noise"),
    "label_noise_emb": _stages("label_noise_emb", embeddings=True),
}
SCORE_STAGES = {
    "dsir.score": _stages("dsir"),
    "dsir.log_weight": _stages("dsir"),
    "relevance.score": _stages("relevance", embeddings=True),
    "ngram_relevance.score": _stages("ngram_relevance"),
    "color.score": _stages("color"),
    "label_noise.score": _stages("label_classifier", "label_noise"),
    RANDOM_COLUMN: [],
}


def _uniform(hard_filters: list[str], seed: int) -> SelectionConfig:
    return SelectionConfig(policy="gumbel_top_k", log_weight_column=RANDOM_COLUMN, hard_filters=hard_filters, weights={}, seed=seed)


def _combo(name: str, filters: list[str], weights: dict[str, float], seed: int, **options: Any) -> Method:
    stages = [s for f in filters for s in FILTER_STAGES[f]] + [s for w in weights for s in SCORE_STAGES[w]]
    if options.get("policy") in ("cluster_balanced", "sensitivity"):
        stages.append("embed")
    if options.get("policy") == "gumbel_top_k":
        stages += SCORE_STAGES[options.get("log_weight_column", "dsir.log_weight")]
    # A method alone ranks over all labels; the default's label quotas are its own row.
    selection = SelectionConfig(hard_filters=filters, weights=weights, seed=seed, **{"label_quota_column": None, **options})
    return Method(name, sorted(set(stages)), selection)


def single_methods(seed: int, include_color: bool) -> list[Method]:
    """Each method alone (no hard filter unless the method is a filter, then random fill)."""
    default_weights = SelectionConfig().weights
    methods = [
        Method("full pool", [], special="full"),
        Method("random 10%", [], special="random"),
        Method("stratified random 10%", [], special="stratified"),
        _combo("DSIR (ours, Gumbel top-k on dsir.log_weight)", [], {}, seed, policy="gumbel_top_k"),
        Method("DSIR (authors' data-selection)", ["authors_dsir.fit"], special="authors_dsir"),
        _combo("embedding relevance top-k", [], {"relevance.score": 1.0}, seed),
        _combo("n-gram relevance top-k", [], {"ngram_relevance.score": 1.0}, seed),
    ]
    if include_color:
        methods.append(_combo("CoLoR-Filter top-k", [], {"color.score": 1.0}, seed))
    for name, label in [
        ("heuristics", "heuristics + random"),
        ("exact_dup", "exact dedup + random"),
        ("near_dup", "near dedup + random"),
        ("semdedup", "SemDeDup + random"),
        ("label_noise", "label noise (tfidf) + random"),
        ("label_noise_emb", "label noise (embeddings) + random"),
    ]:
        methods.append(Method(label, FILTER_STAGES[name], _uniform([name], seed)))
    methods += [
        _combo("cluster-balanced (default fused score)", [], default_weights, seed, policy="cluster_balanced"),
        _combo("CCS (difficulty = -default fused score)", [], default_weights, seed, policy="ccs"),
        Method("sensitivity sampling", ["embed"], SelectionConfig(policy="sensitivity", hard_filters=[], weights={}, seed=seed)),
    ]
    return methods


# --------------------------------------------------------------------------- the dev grid
@dataclass
class Recipe:
    """One candidate default: a selection config plus the label-noise filter's strength."""

    name: str
    selection: SelectionConfig
    min_self_confidence: float = 0.0  # LabelNoise.Config.min_self_confidence
    require_top_label: bool = False  # LabelNoise.Config.require_top_label


GRID_WEIGHTS = {
    "rel+ngram": {"relevance.score": 1.0, "ngram_relevance.score": 1.0},
    "rel+ngram+dsir": {"relevance.score": 1.0, "ngram_relevance.score": 1.0, "dsir.score": 1.0},
    "ngram+dsir": {"ngram_relevance.score": 1.0, "dsir.score": 1.0},
    "rel+dsir": {"relevance.score": 1.0, "dsir.score": 1.0},
}
GRID_LABEL_WEIGHTS = (0.0, 0.5, 1.0)  # weight of label_noise.score (self-confidence) in the fused score
# The label-noise filter: confident learning alone, also p(given) < 0.5, or also "given label is not the top class".
GRID_FILTERS = {"min p(label) 0": (0.0, False), "min p(label) 0.5": (0.5, False), "top label": (0.0, True)}
QUOTAS = "label_prior.target_share"  # top_k's per-label quotas: the target's estimated label mix


def dev_grid(seed: int) -> list[Recipe]:
    """The recipes tried on dev: fusion weights x self-confidence in the fused score x filter rule,
    all top-k over every hard filter; with the top-label rule also with and without label quotas;
    then the other policies on the base weights."""
    recipes = []
    for weights_name, weights in GRID_WEIGHTS.items():
        for label_weight in GRID_LABEL_WEIGHTS:
            fused = {**weights, **({"label_noise.score": label_weight} if label_weight else {})}
            for filter_name, (strength, top_label) in GRID_FILTERS.items():
                for quotas in (None, QUOTAS) if top_label else (None,):
                    name = f"{weights_name}, self-confidence {label_weight:g}, {filter_name}{', label quotas' if quotas else ''}"
                    selection = SelectionConfig(hard_filters=ALL_FILTERS, weights=fused, seed=seed, label_quota_column=quotas)
                    recipes.append(Recipe(name, selection, strength, top_label))
    base = {**GRID_WEIGHTS["rel+ngram"], "label_noise.score": 0.5}
    recipes += [
        Recipe(
            "rel+ngram, self-confidence 0.5, cluster-balanced (top 2k)",
            SelectionConfig(hard_filters=ALL_FILTERS, weights=base, policy="cluster_balanced", candidate_factor=2.0, seed=seed),
        ),
        Recipe(
            "rel+ngram, self-confidence 0.5, label noise only in the score (no filter)",
            SelectionConfig(hard_filters=[f for f in ALL_FILTERS if f != "label_noise"], weights=base, seed=seed, label_quota_column=None),
        ),
        Recipe("all filters + Gumbel top-k dsir", SelectionConfig(hard_filters=ALL_FILTERS, weights={}, policy="gumbel_top_k", seed=seed)),
    ]
    return recipes


def default_recipe(seed: int) -> Recipe:
    """The registry defaults, as ``filtered_set`` runs them."""
    from dataselect.scorers import SCORERS

    label_noise = SCORERS["label_noise"].Config()
    return Recipe("default", SelectionConfig(seed=seed), label_noise.min_self_confidence, label_noise.require_top_label)


def is_default(recipe: Recipe, default: Recipe) -> bool:
    """Same recipe as the registry default (every hard filter = the default's None: all present)."""
    filters = None if recipe.selection.hard_filters == ALL_FILTERS else recipe.selection.hard_filters
    same = dataclasses.replace(recipe.selection, hard_filters=filters) == default.selection
    same_filter = (recipe.min_self_confidence, recipe.require_top_label) == (default.min_self_confidence, default.require_top_label)
    return same and same_filter


# --------------------------------------------------------------------------- measuring
@dataclass
class Context:
    bench: Benchmark
    frame: pd.DataFrame  # precomputed scores, one row per good record (shard order)
    embeddings: np.ndarray
    evaluator: ArmEvaluator  # pool -> dev + test (dev rows first)
    oracle: ArmEvaluator  # clean in-target training records -> dev + test
    truth: pd.DataFrame  # indexed by id
    pool_texts: list[str]
    target_texts: list[str]
    k: int
    authors_selected: list[str] = field(default_factory=list)

    @property
    def n_dev(self) -> int:
        return len(self.bench.dev)


def split_accuracy(ctx: Context, result) -> tuple[float, float]:
    """(dev accuracy, test accuracy) of one trained arm: its eval set is dev then test."""
    correct = np.asarray(result.correct, bool)
    test = correct[ctx.n_dev :]  # empty in a dev-only context
    return float(correct[: ctx.n_dev].mean()), float(test.mean()) if len(test) else float("nan")


def train(ctx: Context, ids: list[str], name: str, seed: int = 0) -> tuple[float, float]:
    return split_accuracy(ctx, ctx.evaluator.train_rows(ctx.evaluator.rows_of(ids), arm=name, seed=seed))


def selection_row(ctx: Context, name: str, ids: list[str], seconds: float) -> dict[str, Any]:
    truth = ctx.truth.loc[ids]
    position = pd.Index(ctx.frame[cols.ID]).get_indexer(ids)
    dev, test = train(ctx, ids, name)
    selected_texts = [ctx.pool_texts[i] for i in position]
    return {
        "method": name,
        "n": len(ids),
        "dev": dev,
        "test": test,
        "test_band": None,
        "in_target": float(truth[IN_TARGET].mean()) if len(ids) else float("nan"),
        # Redundant copies: selected records whose planted family (source) is already represented.
        "duplicates": int(len(ids) - truth[SOURCE_ID].nunique()),
        "flips": int(truth[IS_FLIPPED].sum()),
        "junk": int(truth[IS_JUNK].sum()),
        "kl_reduction": kl_reduction(selected_texts, ctx.pool_texts, ctx.target_texts) if len(ids) else float("nan"),
        "wall_s": seconds,
    }


def prediction_band(values: list[float]) -> tuple[float, float]:
    """95% band where one more random draw's accuracy falls (Student t prediction interval)."""
    values = np.asarray(values, float)
    if len(values) < 2:
        return float("nan"), float("nan")
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) * np.sqrt(1 + 1 / len(values))
    return float(values.mean() - half), float(values.mean() + half)


def mean_row(ctx: Context, name: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Rows of several seeds: means, and the test accuracy's 95% band."""
    keys = ("dev", "test", "in_target", "duplicates", "flips", "junk", "kl_reduction", "wall_s")
    summary = {key: float(np.mean([r[key] for r in rows])) for key in keys}
    summary.update(method=f"{name} ({len(rows)} seeds)", n=rows[0]["n"], test_band=prediction_band([r["test"] for r in rows]))
    return summary


def selected_ids(decisions: pd.DataFrame) -> list[str]:
    return decisions.loc[decisions[cols.STATUS] == cols.SELECTED, cols.ID].astype(str).tolist()


def oracle_accuracy(ctx: Context, seed: int) -> tuple[float, float]:
    """(dev, test) accuracy of one clean in-target oracle draw: k uncorrupted target-domain training records, true labels."""
    return split_accuracy(ctx, ctx.oracle.train_rows(ctx.oracle.random_rows(ctx.k, seed), "oracle", seed))


def oracle_row(ctx: Context, seeds: tuple[int, ...]) -> dict[str, Any]:
    """Clean in-target oracle: k of the uncorrupted target-domain training records, true labels."""
    accuracy = [oracle_accuracy(ctx, s) for s in seeds]
    n = min(ctx.k, ctx.oracle.n_pool)
    dev, test = (float(np.mean([a[i] for a in accuracy])) for i in (0, 1))
    return {
        "method": f"clean in-target oracle ({len(seeds)} seeds)",
        "n": n,
        "dev": dev,
        "test": test,
        "test_band": prediction_band([a[1] for a in accuracy]),
        "in_target": 1.0,
        "duplicates": 0,
        "flips": 0,
        "junk": 0,
        "kl_reduction": float("nan"),
        "wall_s": 0.0,
    }


def run_method(ctx: Context, method: Method, timer: Timer, config: BenchConfig) -> dict[str, Any]:
    if method.special == "full":
        return selection_row(ctx, method.name, ctx.frame[cols.ID].astype(str).tolist(), 0.0)
    if method.special in ("random", "stratified"):
        draw = ctx.evaluator.random_rows if method.special == "random" else ctx.evaluator.stratified_rows
        rows = [selection_row(ctx, method.name, list(ctx.evaluator.pool_ids[draw(ctx.k, seed)]), 0.0) for seed in config.random_seeds]
        return mean_row(ctx, method.name, rows)
    if method.special == "authors_dsir":
        # Selected by the first run of dsir_throughput (same pool, target, k and seed).
        return selection_row(ctx, method.name, ctx.authors_selected, timer.total(method.stages))
    uniform_fill = method.selection.policy == "gumbel_top_k" and method.selection.log_weight_column == RANDOM_COLUMN
    seeds = list(config.random_seeds) if uniform_fill else [method.selection.seed]
    rows = []
    for seed in seeds:  # "+ random" fills are random: averaged over the random-arm seeds like the random row
        started = time.perf_counter()
        decisions = decide(ctx.frame, ctx.bench.quarantine, dataclasses.replace(method.selection, seed=seed), ctx.embeddings)
        seconds = time.perf_counter() - started
        rows.append(selection_row(ctx, method.name, selected_ids(decisions), timer.total(method.stages) + seconds))
    return rows[0] if len(rows) == 1 else {**mean_row(ctx, method.name, rows), "method": method.name}


def run_recipe(ctx: Context, recipe: Recipe) -> dict[str, Any]:
    """One dev-grid recipe on the cached scores: dev accuracy (test is computed but not chosen on)."""
    frame = with_label_filter_strength(ctx.frame, recipe.min_self_confidence, require_top_label=recipe.require_top_label)
    started = time.perf_counter()
    decisions = decide(frame, ctx.bench.quarantine, recipe.selection, ctx.embeddings)
    return selection_row(ctx, recipe.name, selected_ids(decisions), time.perf_counter() - started)


def run_default(ctx: Context, scores: pa.Table, timer: Timer, config: BenchConfig) -> tuple[dict[str, Any], pd.DataFrame]:
    """The default recipe exactly as ``filtered_set`` runs it: ``build.select`` with the defaults."""
    selection = SelectionConfig(budget=config.budget, seed=config.seed)
    started = time.perf_counter()
    texts = ctx.pool_texts if "label_noise" in DEFAULT_POOL_SCORERS else None
    decisions = build_select(scores, ctx.bench.quarantine, ctx.embeddings, selection, list(DEFAULT_POOL_SCORERS), {}, texts)
    seconds = time.perf_counter() - started
    shard_stages = [s for name in DEFAULT_SHARD_SCORERS for s in _stages(name)] + ["embed"]
    return selection_row(ctx, "**default recipe**", selected_ids(decisions), timer.total(shard_stages) + seconds), decisions


def run_tune(ctx: Context, config: BenchConfig) -> dict[str, Any]:
    """``--tune`` as a user would run it: the evaluation file is the test split (as
    ``write_build_inputs`` writes ``eval.jsonl``), halved into tune and held-out parts."""
    default = default_recipe(config.seed)
    # The benchmark's frame also holds label_noise_emb.*; the platform's default filters are these.
    base = dataclasses.replace(default.selection, budget=config.budget, hard_filters=ALL_FILTERS)
    pool = pd.DataFrame({cols.ID: ctx.frame[cols.ID], cols.TEXT: ctx.pool_texts, cols.LABEL: ctx.frame[cols.LABEL]})
    started = time.perf_counter()
    result = tune(
        ctx.frame,
        ctx.bench.quarantine,
        ctx.embeddings,
        pool,
        ctx.bench.test,
        tuning_grid(base, default.min_self_confidence, default.require_top_label),
    )
    return {**result.summary(), "seconds": time.perf_counter() - started}


def _model_name(options: dict[str, Any]) -> str:
    low, high = options["ngram_range"]
    return f"{low}-{high}-grams, C={options['C']:g}, {options['solver']}"


def choose_model(ctx: Context, config: BenchConfig, log: Callable[[str], None]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The evaluation recipe's n-gram range, C and solver, by mean dev accuracy of budget-sized
    arms that no selection recipe shapes (random draws of the pool, the clean oracle); ties go to
    the smaller C, then to the grid's order (wider n-gram range, then the default solver)."""
    rows = []
    base = ctx.evaluator
    base_oracle = ctx.oracle
    grid = [
        {"ngram_range": ngram_range, "C": c, "solver": solver}
        for ngram_range in config.ngram_grid
        for c in config.model_c_grid
        for solver in config.solver_grid
    ]
    for options in grid:
        ctx.evaluator, ctx.oracle = base.with_model(**options), base_oracle.with_model(**options)
        arms = {}
        for seed in config.random_seeds[:2]:
            arms[f"random {seed}"] = train(ctx, list(ctx.evaluator.pool_ids[ctx.evaluator.random_rows(ctx.k, seed)]), "random", seed)
            arms[f"oracle {seed}"] = split_accuracy(ctx, ctx.oracle.train_rows(ctx.oracle.random_rows(ctx.k, seed), "oracle", seed))
        mean = float(np.mean([d for d, _ in arms.values()]))
        rows.append({"options": options, **{name: dev for name, (dev, _) in arms.items()}, "mean dev": mean})
        log(f"  {_model_name(options)}: mean dev {mean:.3f}")
    best = max(enumerate(rows), key=lambda ir: (round(ir[1]["mean dev"], 4), -ir[1]["options"]["C"], -ir[0]))[1]["options"]
    ctx.evaluator, ctx.oracle = base.with_model(**best), base_oracle.with_model(**best)
    return best, rows


def report_epochs_rows(ctx: Context, config: BenchConfig, selected: list[str]) -> list[dict[str, Any]]:
    """Dev accuracy of the report's recipe (``evaluation.Config``'s n-gram range, C and SGD) at each
    epoch count of the grid, on the arms a report trains: the default recipe's selection, budget-sized
    random draws and clean oracle samples (means of two seeds), and the full pool; with the full pool's fit seconds."""
    report = EvaluationConfig()
    options = {"ngram_range": report.ngram_range, "C": report.C, "solver": "sgd"}
    seeds = config.random_seeds[:2]
    rows = []
    for epochs in config.report_epochs_grid:
        evaluator, oracle = ctx.evaluator.with_model(**options, epochs=epochs), ctx.oracle.with_model(**options, epochs=epochs)
        started = time.perf_counter()
        full = _dev_accuracy(ctx, evaluator, np.arange(evaluator.n_pool), "full")
        rows.append(
            {
                "epochs": epochs,
                "full": full,
                "full_seconds": time.perf_counter() - started,
                "selected": _dev_accuracy(ctx, evaluator, evaluator.rows_of(selected), "selected"),
                "random": float(np.mean([_dev_accuracy(ctx, evaluator, evaluator.random_rows(ctx.k, s), "random", s) for s in seeds])),
                "oracle": float(np.mean([_dev_accuracy(ctx, oracle, oracle.random_rows(ctx.k, s), "oracle", s) for s in seeds])),
            }
        )
    return rows


def _dev_accuracy(ctx: Context, model: ArmEvaluator, rows: np.ndarray, arm: str, seed: int = 0) -> float:
    return split_accuracy(ctx, model.train_rows(rows, arm, seed))[0]


REPORT_ARMS = ("selected", "random", "oracle", "full")


def choose_report_epochs(per_corpus: dict[str, list[dict[str, Any]]], tolerance: float) -> int:
    """The fewest epochs at which no arm's dev accuracy falls more than ``tolerance`` below its
    accuracy at the most epochs, on any corpus (the same guard as label noise's AUROC within 0.01)."""
    most = {c: max(rows, key=lambda r: r["epochs"]) for c, rows in per_corpus.items()}
    for epochs in sorted({r["epochs"] for rows in per_corpus.values() for r in rows}):
        rows = [(c, r) for c, corpus_rows in per_corpus.items() for r in corpus_rows if r["epochs"] == epochs]
        if all(r[arm] >= most[c][arm] - tolerance for c, r in rows for arm in REPORT_ARMS):
            return epochs
    raise ValueError("no epoch counts measured")


def detector_quality(ctx: Context) -> dict[str, Any]:
    """Recall/precision of the duplicate detectors and AUROC of the label-noise scores."""
    frame, truth = ctx.frame, ctx.truth.loc[ctx.frame[cols.ID]].reset_index()
    row_of = pd.Index(frame[cols.ID])
    source_row = row_of.get_indexer(truth[SOURCE_ID])
    out: dict[str, Any] = {}
    for flag, scorer in ((IS_EXACT_DUP, "exact_dup"), (IS_NEAR_DUP, "near_dup")):
        planted = np.flatnonzero(truth[flag].to_numpy() & (source_row >= 0))
        group = frame[f"{scorer}.group"].to_numpy()
        # Found: the copy lands in its source's duplicate group (whichever of the two is kept).
        found = group[planted] == group[source_row[planted]]
        out[f"{scorer}_recall"] = float(found.mean()) if len(planted) else float("nan")
        out[f"{scorer}_planted"] = int(len(planted))
    for scorer in ("exact_dup", "near_dup", "semdedup"):
        flagged = np.flatnonzero(~frame[f"{scorer}.keep"].to_numpy(bool))
        representative = frame[f"{scorer}.group"].to_numpy()[flagged]
        # Precise: the dropped record and the record kept for it come from the same planted family.
        same_family = truth[SOURCE_ID].to_numpy()[flagged] == truth[SOURCE_ID].to_numpy()[representative]
        out[f"{scorer}_flagged"] = int(len(flagged))
        out[f"{scorer}_precision"] = float(same_family.mean()) if len(flagged) else float("nan")
    labelled = ~truth[IS_JUNK].to_numpy()
    for name in ("label_noise", "label_noise_emb"):
        confidence = frame[f"{name}.self_confidence"].to_numpy(float)
        usable = labelled & np.isfinite(confidence)
        flipped = truth[IS_FLIPPED].to_numpy()[usable]
        out[f"{name}_auroc"] = float(roc_auc_score(flipped, 1.0 - confidence[usable]))
        issue = frame[f"{name}.is_issue"].to_numpy(bool)[usable]
        out[f"{name}_recall"] = float(issue[flipped].mean())
        out[f"{name}_precision"] = float(flipped[issue].mean()) if issue.any() else float("nan")
    # features="tfidf+embeddings" averages the two models' probabilities on the same folds, so its
    # self-confidence is the mean of the two columns (tests/core/test_label_noise.py checks that).
    both = (frame["label_noise.self_confidence"].to_numpy(float) + frame["label_noise_emb.self_confidence"].to_numpy(float)) / 2
    usable = labelled & np.isfinite(both)
    out["label_noise_both_auroc"] = float(roc_auc_score(truth[IS_FLIPPED].to_numpy()[usable], 1.0 - both[usable]))
    return out


# --------------------------------------------------------------------------- orchestration
def prepare_corpus(
    config: BenchConfig, corpus: str, path: str | Path | None, log: Callable[[str], None], dev_only: bool = False
) -> tuple[BenchConfig, Context, pa.Table, Timer]:
    """The corpus's benchmark, its cached scores and the measuring context. ``dev_only``: the arms
    are evaluated on the dev split alone, so nothing computed there can read test."""
    config = dataclasses.replace(config, pool=dataclasses.replace(config.pool, corpus=corpus, target_prefix=None))
    work_dir = Path(config.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    bench = build_benchmark(config.pool, path, work_dir)
    log(
        f"[{corpus}] pool: {bench.raw_count} raw rows, {len(bench.truth)} records, {len(bench.quarantine)} quarantined; "
        f"reference {bench.reference.num_rows}, dev {len(bench.dev)}, test {len(bench.test)}"
    )
    timer = Timer()
    embedder = StaticEmbedder()
    embeddings, pool_seconds = cached_embeddings(bench.texts, embedder, work_dir)
    target_embeddings, target_seconds = cached_embeddings(bench.reference.column(cols.TEXT).to_pylist(), embedder, work_dir)
    timer.add("embed", pool_seconds + target_seconds)
    scores, frame = compute_scores(bench, embeddings, target_embeddings, config, timer)
    # Both label-noise filters at the scorer's default strength, whichever strength the cache holds.
    for prefix in ("label_noise", "label_noise_emb"):
        default = default_recipe(config.seed)
        frame = with_label_filter_strength(frame, default.min_self_confidence, prefix, default.require_top_label)

    k = SelectionConfig(budget=config.budget).budget_count(bench.raw_count)
    pool = bench.records.select([cols.ID, cols.TEXT, cols.LABEL]).to_pandas()
    evaluation = bench.dev if dev_only else bench.evaluation
    ctx = Context(
        bench,
        frame,
        embeddings,
        ArmEvaluator(pool, evaluation, "tfidf_logreg"),
        ArmEvaluator(bench.clean_target, evaluation, "tfidf_logreg"),
        bench.truth.set_index(cols.ID),
        bench.texts,
        bench.reference.column(cols.TEXT).to_pylist(),
        k,
    )
    return config, ctx, scores, timer


def run_corpus(config: BenchConfig, corpus: str, path: str | Path | None, log: Callable[[str], None]) -> dict[str, Any]:
    """Everything one corpus's results file reports, plus its dev-grid rows."""
    started = time.perf_counter()
    config, ctx, scores, timer = prepare_corpus(config, corpus, path, log)
    bench, k, work_dir = ctx.bench, ctx.k, Path(config.work_dir)
    log(f"[{corpus}] scored in {time.perf_counter() - started:.0f} s")
    model, model_rows = choose_model(ctx, config, log)
    log(f"[{corpus}] evaluation recipe {_model_name(model)} (chosen on dev)")

    throughput = dsir_throughput(bench, config.throughput_runs, config.seed, k, work_dir)
    timer.add("authors_dsir.fit", throughput["theirs_first_seconds"])
    ctx.authors_selected = throughput.pop("theirs_selected")
    methods_rows = []
    for method in single_methods(config.seed, config.include_color):
        methods_rows.append(run_method(ctx, method, timer, config))
        log(f"[{corpus}]   {methods_rows[-1]['method']}: dev {methods_rows[-1]['dev']:.3f} test {methods_rows[-1]['test']:.3f}")
    methods_rows.append(oracle_row(ctx, config.random_seeds))
    default_row, decisions = run_default(ctx, scores, timer, config)
    methods_rows.append(default_row)
    report_epochs = report_epochs_rows(ctx, config, selected_ids(decisions))
    log(f"[{corpus}]   default recipe: dev {default_row['dev']:.3f} test {default_row['test']:.3f}")
    grid_rows = []
    for recipe in dev_grid(config.seed)[: config.grid_limit]:
        grid_rows.append(run_recipe(ctx, recipe))
        log(f"[{corpus}]   [grid] {recipe.name}: dev {grid_rows[-1]['dev']:.3f}")
    tuned = run_tune(ctx, config)
    log(
        f"[{corpus}]   --tune: chose {tuned['chosen']!r}, held-out {tuned['held_out_accuracy']:.3f} vs default {tuned['default_held_out_accuracy']:.3f}"
    )
    quality = detector_quality(ctx)
    throughput["ours_in_target"] = float(ctx.truth.loc[throughput.pop("ours_selected"), IN_TARGET].mean())
    authors = next(r for r in methods_rows if r["method"].startswith("DSIR (authors"))
    throughput["theirs_in_target"] = authors["in_target"]
    counts = decisions[cols.DECIDED_BY].where(decisions[cols.STATUS] != cols.SELECTED, "selected").value_counts().to_dict()
    return {
        "corpus": corpus,
        "config": config,
        "bench": bench,
        "k": k,
        "model": model,
        "model_rows": model_rows,
        "report_epochs": report_epochs,
        "methods": methods_rows,
        "grid": grid_rows,
        "tune": tuned,
        "quality": quality,
        "throughput": throughput,
        "timings": dict(timer.seconds),
        "default_counts": {str(a): int(b) for a, b in counts.items()},
        "total_seconds": time.perf_counter() - started,
    }


def run(config: BenchConfig, paths: dict[str, str | Path] | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Every corpus in ``config.corpora`` (``paths``: corpus -> data folder; absent: the default),
    then the dev-grid winner by mean dev accuracy over the corpora (one recipe for all)."""
    jobs = [(config, corpus, (paths or {}).get(corpus), log) for corpus in config.corpora]
    if config.workers > 1 and len(jobs) > 1:
        # One process per corpus: each trains hundreds of independent models.
        with ProcessPoolExecutor(min(config.workers, len(jobs)), mp_context=multiprocessing.get_context("fork")) as pool:
            results = list(pool.map(run_corpus, *zip(*jobs)))
    else:
        results = [run_corpus(*job) for job in jobs]
    per_corpus = dict(zip(config.corpora, results))
    names = [row["method"] for row in next(iter(per_corpus.values()))["grid"]]
    grid = [{"recipe": name, **{corpus: result["grid"][i]["dev"] for corpus, result in per_corpus.items()}} for i, name in enumerate(names)]
    for row in grid:
        row["mean"] = float(np.mean([row[corpus] for corpus in per_corpus]))
    winner = max(grid, key=lambda row: row["mean"])["recipe"] if grid else None
    epochs = choose_report_epochs({c: r["report_epochs"] for c, r in per_corpus.items()}, config.report_epochs_tolerance)
    return {"config": config, "corpora": per_corpus, "grid": grid, "winner": winner, "report_epochs": epochs}


def compute_scores(
    bench: Benchmark, embeddings: np.ndarray, target_embeddings: np.ndarray, config: BenchConfig, timer: Timer
) -> tuple[pa.Table, pd.DataFrame]:
    """Shard scores (Arrow, as quality_scores writes them) and the pool-scored frame, cached."""
    from dataselect.pipeline import fingerprint

    names = [n for n in SHARD_SCORERS if config.include_color or n != "color"]
    pool = dataclasses.asdict(config.pool)
    key = fingerprint(pool, config.seed, config.fit_sample_size, config.color, names, bench.raw_count, code_fingerprint())[:16]
    cache = Path(config.work_dir) / f"scores-{key}"
    if config.use_cache and (cache / "frame.parquet").exists():
        import pyarrow.parquet as pq

        timer.seconds.update(json.loads((cache / "timings.json").read_text()))
        return pq.read_table(cache / "shard_scores.parquet"), pd.read_parquet(cache / "frame.parquet")
    scores = fit_and_score_shards(bench, embeddings, target_embeddings, config, timer, names)
    frame = score_all_pool(scores, embeddings, bench.texts, config.seed, timer)
    if config.use_cache:
        import pyarrow.parquet as pq

        cache.mkdir(parents=True, exist_ok=True)
        pq.write_table(scores, cache / "shard_scores.parquet")
        frame.to_parquet(cache / "frame.parquet")
        (cache / "timings.json").write_text(json.dumps(timer.seconds))
    return scores, frame


# --------------------------------------------------------------------------- report
TARGETS = {"newsgroups": 0.92, "amazon": 0.87}  # the issue's test-accuracy targets at a 10% budget
TITLES = {"newsgroups": "20 Newsgroups (target sci.*)", "amazon": "Multi-domain sentiment (target kitchen)"}


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _count(value: Any) -> str:
    return str(value) if isinstance(value, (int, np.integer)) else f"{value:.1f}"


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| method | n | dev accuracy | **test accuracy** (95% band) | in target | dup copies | flips | junk | KL reduction | wall s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        band = r.get("test_band")
        test = f"**{_fmt(r['test'])}**" + (f" ({band[0]:.3f}–{band[1]:.3f})" if band else "")
        lines.append(
            f"| {r['method']} | {r['n']} | {_fmt(r['dev'])} | {test} | {r['in_target']:.1%} | {_count(r['duplicates'])} "
            f"| {_count(r['flips'])} | {_count(r['junk'])} | {_fmt(r['kl_reduction'])} | {r['wall_s']:.1f} |"
        )
    return "\n".join(lines)


def headline(result: dict[str, Any]) -> dict[str, Any]:
    """The default recipe's test accuracy against the target, the random band and the full pool."""
    rows = {r["method"].split(" (")[0]: r for r in result["methods"]}
    default, random_row, full = rows["**default recipe**"], rows["random 10%"], rows["full pool"]
    target = TARGETS[result["corpus"]]
    return {
        "default": default["test"],
        "target": target,
        "meets_target": default["test"] >= target,
        "random_hi": random_row["test_band"][1],
        "above_random": default["test"] > random_row["test_band"][1],
        "full": full["test"],
        "above_full": default["test"] > full["test"],
        "oracle": rows["clean in-target oracle"]["test"],
    }


def _targets(result: dict[str, Any]) -> list[str]:
    q, t, h = result["quality"], result["throughput"], headline(result)
    speedup = t["ours_rps"] / t["theirs_rps"]
    checks = [
        (f"default recipe test accuracy ≥ {h['target']:.2f}", f"{h['default']:.3f}", h["meets_target"]),
        ("default recipe above the random band (test)", f"{h['default']:.3f} vs ≤ {h['random_hi']:.3f}", h["above_random"]),
        ("default recipe above the full pool (test)", f"{h['default']:.3f} vs {h['full']:.3f}", h["above_full"]),
        ("exact-duplicate recall 100%", f"{q['exact_dup_recall']:.1%}", q["exact_dup_recall"] == 1.0),
        (
            "near-duplicate recall ≥ 90% at precision ≥ 95%",
            f"{q['near_dup_recall']:.1%} at {q['near_dup_precision']:.1%}",
            q["near_dup_recall"] >= 0.9 and q["near_dup_precision"] >= 0.95,
        ),
        ("flipped-label AUROC ≥ 0.90 (default features)", f"{q['label_noise_auroc']:.3f}", q["label_noise_auroc"] >= 0.9),
        ("DSIR throughput ≥ 20× data-selection", f"{speedup:.1f}×", speedup >= 20),
    ]
    return (
        ["## Targets", "", "| target | measured | met |", "|---|---:|---|"]
        + [f"| {name} | {value} | {'yes' if ok else '**no**'} |" for name, value, ok in checks]
        + [""]
    )


def _protocol(result: dict[str, Any], quick: bool) -> list[str]:
    config: BenchConfig = result["config"]
    bench: Benchmark = result["bench"]
    corpus = result["corpus"]
    pool = (
        "20 Newsgroups training messages"
        if corpus == "newsgroups"
        else "every `train` review of books, dvd, electronics and kitchen (the `domain` field never reaches a selection)"
    )
    task = (
        "`tfidf_logreg` trained on the selected records' given (possibly flipped) labels, predicting the newsgroup (20 classes)"
        if corpus == "newsgroups"
        else "`tfidf_logreg` trained on the selected reviews' given (possibly flipped) labels, predicting the sentiment"
    )
    target = "sci.* test messages" if corpus == "newsgroups" else "kitchen `test` reviews"
    return [
        f"# {TITLES[corpus]}: methods benchmark{' (QUICK smoke run: numbers not meaningful)' if quick else ''}",
        "",
        f"Date: {datetime.date.today().isoformat()}. Machine: 2 CPU cores (shared), {platform.machine()}, Python {platform.python_version()}. "
        f"Seed: {config.seed}. Corpus run: {result['total_seconds']:.0f} s. Command: `python -m benchmarks.methods{' --quick' if quick else ''}`.",
        "",
        f"Pool: {pool}{f' (subsample of {config.pool.pool_limit})' if config.pool.pool_limit else ''}, corrupted by `corrupt_pool` "
        f"(seed {config.pool.seed}: {config.pool.exact_dup:.0%} exact duplicates, {config.pool.near_dup:.0%} near duplicates, "
        f"{config.pool.flip:.0%} flipped labels, {config.pool.junk:.0%} junk), landed as {config.pool.n_shards} JSONL shards and ingested: "
        f"{bench.raw_count} raw rows, {len(bench.truth)} records, {len(bench.quarantine)} quarantined. "
        f"Labelled target data ({target}), split by seed {config.pool.seed}: **reference** {bench.reference.num_rows} (what scorers fit against), "
        f"**dev** {len(bench.dev)} (every choice), **test** {len(bench.test)} (headline numbers only). "
        f"Recipe: {task}; its word {_model_name(result['model'])}, chosen on dev (below). "
        f"Budget: {config.budget:.0%} of the raw rows = {result['k']} records.",
        "",
        "Columns: *dev / test accuracy* of the recipe trained on the arm (seeded rows: the mean over seeds "
        f"{list(config.random_seeds)}, and the 95% band where one more draw's test accuracy falls, a Student-t prediction interval); "
        "*in target* share of the selection from the target domain (ground truth); *dup copies* selected records whose planted family "
        "is already in the selection; *flips* selected records with a flipped label; *junk* selected junk records; *KL reduction* "
        "`dsir.kl_reduction`; *wall s* fit + score of the scorers the method needs + the selection, on this machine. "
        "The clean in-target oracle trains on k uncorrupted target-domain training records with their true labels.",
        "",
    ]


def render_corpus(result: dict[str, Any], quick: bool, winner: str | None) -> str:
    config: BenchConfig = result["config"]
    q, t = result["quality"], result["throughput"]
    default = SelectionConfig(budget=config.budget, seed=config.seed)
    from dataselect.scorers import SCORERS

    pool_defaults = {name: dataclasses.asdict(SCORERS[name].Config()) for name in DEFAULT_POOL_SCORERS}
    c_rows = result["model_rows"]
    c_columns = [c for c in c_rows[0] if c not in ("options", "mean dev")] if c_rows else []
    lines = [
        *_protocol(result, quick),
        *_targets(result),
        "## Methods at the 10% budget",
        "",
        table(result["methods"]),
        "",
        "## Default recipe",
        "",
        f"Shard scorers `{DEFAULT_SHARD_SCORERS}`, pool scorers `{list(DEFAULT_POOL_SCORERS)}` (configs: `{json.dumps(pool_defaults)}`), "
        f"selection `policy={default.policy!r}, weights={default.weights}, normalization={default.normalization!r}, hard_filters={default.hard_filters}` "
        f"(None = every `<name>.keep` present). Run through `dataselect.build.select`, as the `filtered_set` asset does. "
        f"Decisions: `{result['default_counts']}`. Chosen on dev over both corpora: see `methods.md` (dev-grid winner: {winner}).",
        "",
        "## Dev grid on this corpus",
        "",
        table(result["grid"]),
        "",
        "## `--tune` on this corpus",
        "",
        f"The evaluation file = the test split ({len(result['bench'].test)} records), halved by `dataselect.tuning` into "
        f"tune ({result['tune']['tune_size']}) and held-out ({result['tune']['held_out_size']}) parts; every grid row is a real selection; "
        f"the best tune accuracy wins. Chosen: **{result['tune']['chosen']}**, held-out accuracy "
        f"{result['tune']['held_out_accuracy']:.3f} vs the default's {result['tune']['default_held_out_accuracy']:.3f} "
        f"(gain {result['tune']['held_out_gain']:+.3f}); the grid took {result['tune']['seconds']:.0f} s.",
        "",
        tune_table(result["tune"]["grid"]),
        "",
        "## Evaluation recipe: n-gram range, C and solver (chosen on dev)",
        "",
        "Dev accuracy of budget-sized arms that no selection recipe shapes (random draws, the clean oracle); the best mean wins "
        f"(ties: the smaller C, then 1-2-grams, then SGD). *sgd*: {EvaluationConfig().epochs} epochs of SGD on the same penalised "
        "log loss (the report's default, chosen in `methods.md`); *saga*: to convergence.",
        "",
        "| recipe | " + " | ".join(c_columns) + " | mean dev |",
        "|---|" + "---:|" * (len(c_columns) + 1),
        *[f"| {_model_name(r['options'])} | " + " | ".join(_fmt(r[c]) for c in c_columns) + f" | {_fmt(r['mean dev'])} |" for r in c_rows],
        "",
        "## Detector quality",
        "",
        "| detector | measure | value | target |\n|---|---|---:|---|",
        f"| exact_dup | recall of planted exact copies ({q['exact_dup_planted']}) | {q['exact_dup_recall']:.1%} | 100% |",
        f"| exact_dup | precision (flagged record in its kept record's planted family; {q['exact_dup_flagged']} flagged) | {q['exact_dup_precision']:.1%} | |",
        f"| near_dup | recall of planted near copies ({q['near_dup_planted']}) | {q['near_dup_recall']:.1%} | ≥ 90% |",
        f"| near_dup | precision (same rule; {q['near_dup_flagged']} flagged) | {q['near_dup_precision']:.1%} | ≥ 95% |",
        f"| semdedup | precision (same rule; {q['semdedup_flagged']} flagged) | {q['semdedup_precision']:.1%} | |",
        f"| label_noise (tfidf) | AUROC of 1 − self_confidence vs is_flipped | {q['label_noise_auroc']:.3f} | ≥ 0.90 |",
        f"| label_noise (tfidf) | recall / precision of is_issue | {q['label_noise_recall']:.1%} / {q['label_noise_precision']:.1%} | |",
        f"| label_noise (embeddings) | AUROC | {q['label_noise_emb_auroc']:.3f} | ≥ 0.90 |",
        f"| label_noise (embeddings) | recall / precision of is_issue | {q['label_noise_emb_recall']:.1%} / {q['label_noise_emb_precision']:.1%} | |",
        f"| label_noise (tfidf+embeddings, not the default) | AUROC | {q['label_noise_both_auroc']:.3f} | |",
        "",
        "A planted copy is *found* when its duplicate group equals its source's (whichever member is kept). Natural duplicates in "
        "the corpus count as false positives under the precision rule, so it is a lower bound.",
        "",
        "## DSIR throughput vs the authors' `data-selection`",
        "",
        f"Fit + importance weights of all {t['records']} records, same pool and reference texts, alternating in one process, "
        f"median of {t['runs']} runs; `HashedNgramDSIR(num_proc=<cores>, num_tokens_to_fit='all')` against our featurisation on one thread per core.",
        "",
        "| implementation | seconds | records/s | in target of its 10% selection |\n|---|---:|---:|---:|",
        f"| dataselect `DSIRImportance` | {t['ours_seconds']:.2f} | {t['ours_rps']:,.0f} | {t['ours_in_target']:.1%} |",
        f"| `data_selection.HashedNgramDSIR` | {t['theirs_seconds']:.2f} | {t['theirs_rps']:,.0f} | {t['theirs_in_target']:.1%} |",
        f"| speed-up | | **{t['ours_rps'] / t['theirs_rps']:.1f}×** | target ≥ 20× |",
        "",
        "## Stage timings (s)",
        "",
        ", ".join(f"`{k}` {v:.1f}" for k, v in sorted(result["timings"].items())),
        "",
    ]
    return "\n".join(lines)


def report_epochs_section(result: dict[str, Any]) -> list[str]:
    """How many SGD epochs the report's recipe trains, chosen on dev, and what that does to each arm and to the margins a verdict reads."""
    report = EvaluationConfig()
    chosen, tolerance = result["report_epochs"], result["config"].report_epochs_tolerance
    lines = [
        "",
        f"## The report's recipe: SGD epochs (dev accuracy; chosen: **{chosen}**)",
        "",
        f"The report trains every arm with `evaluation.Config` ({report.ngram_range[0]}-{report.ngram_range[1]}-grams, C={report.C:g}, SGD), "
        "and its full-pool arm's fit grows with the pool. Rule: the fewest epochs at which no arm's dev accuracy falls more than "
        f"{tolerance:g} below its accuracy at the most epochs, on either corpus. Arms: the default recipe's selection, random "
        "and clean-oracle draws of the budget (means of two seeds), the full pool. *sel − full*, *sel − random*: the margins a "
        "build's verdict reads.",
        "",
        "| corpus | epochs | selected | random | oracle | full | sel − full | sel − random | full-pool fit s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for corpus, corpus_result in result["corpora"].items():
        for r in corpus_result["report_epochs"]:
            lines.append(
                f"| {TITLES[corpus]} | {r['epochs']} | {r['selected']:.3f} | {r['random']:.3f} | {r['oracle']:.3f} | {r['full']:.3f} "
                f"| {r['selected'] - r['full']:+.3f} | {r['selected'] - r['random']:+.3f} | {r['full_seconds']:.1f} |"
            )
    agrees = report.epochs == chosen
    lines += ["", f"`evaluation.Config().epochs` = {report.epochs}: {'agrees' if agrees else '**does not agree**'} with the rule.", ""]
    return lines


def render_summary(result: dict[str, Any], quick: bool) -> str:
    """The protocol, the dev grid over both corpora (how the one default was chosen) and the headline."""
    corpora = list(result["corpora"])
    default = default_recipe(result["config"].seed)
    default_name = next((r.name for r in dev_grid(result["config"].seed) if is_default(r, default)), None)
    lines = [
        f"# Methods benchmark: protocol, dev grid and headline{' (QUICK smoke run: numbers not meaningful)' if quick else ''}",
        "",
        f"Date: {datetime.date.today().isoformat()}. Command: `python -m benchmarks.methods{' --quick' if quick else ''}`. "
        "Per-corpus tables: " + ", ".join(f"`{RESULTS_DIR.name}/methods-{c}.md`" for c in corpora) + ".",
        "",
        "Protocol: each corpus's labelled target data is split by a fixed seed into **reference** (what the scorers fit against), "
        "**dev** and **test**. Every choice (the one default recipe for all corpora, its fusion weights, the label-noise filter's "
        "strength, the policy, and the evaluation recipe's n-gram range, C and solver) is made on dev; test is only read for the headline. "
        "The default is the dev-grid recipe with the best dev accuracy averaged over the corpora.",
        "",
        "## Headline (test split, 10% budget, the registry's default recipe)",
        "",
        "| corpus | default recipe | target | random 10% band (upper) | full pool | clean in-target oracle | target met | above random | above full |",
        "|---|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for corpus, corpus_result in result["corpora"].items():
        h = headline(corpus_result)
        yes = lambda ok: "yes" if ok else "**no**"  # noqa: E731
        lines.append(
            f"| {TITLES[corpus]} | **{h['default']:.3f}** | {h['target']:.2f} | {h['random_hi']:.3f} | {h['full']:.3f} | {h['oracle']:.3f} "
            f"| {yes(h['meets_target'])} | {yes(h['above_random'])} | {yes(h['above_full'])} |"
        )
    lines += [
        "",
        "## Dev grid (dev accuracy; the default is the best mean)",
        "",
        "Every row: all hard filters (heuristics, exact dedup, near dedup, SemDeDup, label noise) unless named, rank-normalised fusion, "
        "top-k unless named. *self-confidence w*: `label_noise.score` (the out-of-fold probability of the given label) fused with weight w; "
        "*min p(label)*: `LabelNoise.Config.min_self_confidence` (0: confident learning alone); *top label*: "
        "`LabelNoise.Config.require_top_label` (confident learning, and drop a record whose given label is not the model's most "
        "probable class); *label quotas*: top-k within each label, the budget split by `label_prior.target_share` (the target's "
        "label mix, estimated from the unlabelled reference by EM); rows without it rank over all labels.",
        "",
        "| recipe | " + " | ".join(corpora) + " | mean |",
        "|---|" + "---:|" * (len(corpora) + 1),
    ]
    for row in result["grid"]:
        mark = (" **(winner)**" if row["recipe"] == result["winner"] else "") + (
            " *(registry default)*" if row["recipe"] == default_name else ""
        )
        lines.append(f"| {row['recipe']}{mark} | " + " | ".join(_fmt(row[c]) for c in corpora) + f" | {_fmt(row['mean'])} |")
    agrees = default_name is not None and default_name == result["winner"]
    lines += [
        "",
        f"Registry default is the dev-grid winner: **{'yes' if agrees else 'no'}**"
        + ("" if agrees else f" (default = {default_name or 'not in the grid'}; winner = {result['winner']})")
        + ".",
        "",
    ]
    lines += report_epochs_section(result)
    lines += [
        "",
        "## `--tune` (held-out half of the test split; the default recipe on the same half)",
        "",
        "| corpus | chosen on the tune half | held-out accuracy | default's held-out accuracy | gain | grid seconds |",
        "|---|---|---:|---:|---:|---:|",
        *[
            f"| {TITLES[c]} | {r['tune']['chosen']} | {r['tune']['held_out_accuracy']:.3f} | {r['tune']['default_held_out_accuracy']:.3f} "
            f"| {r['tune']['held_out_gain']:+.3f} | {r['tune']['seconds']:.0f} |"
            for c, r in result["corpora"].items()
        ],
    ]
    return "\n".join(lines)


def dev_row(ctx: Context, name: str, ids: list[str]) -> dict[str, Any]:
    """Dev accuracy of one selection and why it falls short of the clean oracle: its in-target
    share, flips, redundant copies and junk (ground truth), how far its label mix is from the
    reference's (total variation; the reference labels are read here only, never by a scorer) and
    its median length in words."""
    truth = ctx.truth.loc[ids]
    labels = pd.Series(ctx.frame.set_index(cols.ID).loc[ids, cols.LABEL].astype(str).to_numpy())
    reference = pd.Series(ctx.bench.reference.column(cols.LABEL).to_pylist()).astype(str)
    mix = pd.concat([labels.value_counts(normalize=True), reference.value_counts(normalize=True)], axis=1).fillna(0.0)
    position = pd.Index(ctx.frame[cols.ID]).get_indexer(ids)
    return {
        "recipe": name,
        "dev": train(ctx, ids, name)[0],
        "in_target": float(truth[IN_TARGET].mean()),
        "flips": int(truth[IS_FLIPPED].sum()),
        "duplicates": int(len(ids) - truth[SOURCE_ID].nunique()),
        "junk": int(truth[IS_JUNK].sum()),
        "label_tv": float(0.5 * (mix.iloc[:, 0] - mix.iloc[:, 1]).abs().sum()),
        "words": float(np.median([len(ctx.pool_texts[i].split()) for i in position])),
    }


def run_dev(
    config: BenchConfig, recipes: list[Recipe], paths: dict[str, str | Path] | None = None, log: Callable[[str], None] = print
) -> dict[str, list[dict[str, Any]]]:
    """``--dev``: the default and ``recipes`` on every corpus, evaluated on dev alone (test is
    never featurised), beside the random arms and the clean oracle; the evaluation recipe chosen on dev as in the run."""
    out = {}
    for corpus in config.corpora:
        corpus_config, ctx, _, _ = prepare_corpus(config, corpus, (paths or {}).get(corpus), log, dev_only=True)
        model, _ = choose_model(ctx, corpus_config, log)
        rows = []
        for seed in config.random_seeds[:2]:
            rows.append(dev_row(ctx, f"random {seed}", list(ctx.evaluator.pool_ids[ctx.evaluator.random_rows(ctx.k, seed)])))
        oracle = [ctx.oracle.train_rows(ctx.oracle.random_rows(ctx.k, s), "oracle", s) for s in config.random_seeds]
        oracle_words = np.median([len(t.split()) for t in ctx.bench.clean_target[cols.TEXT]])
        rows.append(
            {"recipe": f"clean oracle ({len(oracle)} seeds)", "dev": float(np.mean([r.accuracy for r in oracle])), "words": oracle_words}
        )
        for recipe in [default_recipe(config.seed), *recipes]:
            frame = with_label_filter_strength(ctx.frame, recipe.min_self_confidence, require_top_label=recipe.require_top_label)
            # The frame also holds benchmark-only filters (label_noise_emb): the default's filters are ALL_FILTERS.
            filters = ALL_FILTERS if recipe.selection.hard_filters is None else recipe.selection.hard_filters
            selection = dataclasses.replace(recipe.selection, budget=config.budget, hard_filters=filters)
            rows.append(dev_row(ctx, recipe.name, selected_ids(decide(frame, ctx.bench.quarantine, selection, ctx.embeddings))))
            log(f"[{corpus}] {_model_name(model)} " + dev_table(rows[-1:]).splitlines()[-1])
        out[corpus] = rows
    return out


def dev_table(rows: list[dict[str, Any]]) -> str:
    keys = ("dev", "in_target", "flips", "duplicates", "junk", "label_tv", "words")
    lines = ["| recipe | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    return "\n".join(lines + [f"| {r['recipe']} | " + " | ".join(_fmt(r.get(k)) for k in keys) + " |" for r in rows])


def log_line(line: str) -> None:
    """Progress on stderr (a module function, so corpus processes can receive it)."""
    print(line, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small subsample (smoke test); writes nothing unless --output")
    parser.add_argument("--no-cache", action="store_true", help="recompute every score (benchmarks/work cache ignored)")
    parser.add_argument("--corpus", choices=CORPORA, action="append", help="run only this corpus (repeatable; default: all)")
    parser.add_argument(
        "--output", type=Path, default=None, help=f"results folder (default {RESULTS_DIR.relative_to(REPO)} for a full run)"
    )
    parser.add_argument("--dev", action="store_true", help="only the default and the dev grid, on dev alone (test never read)")
    args = parser.parse_args(argv)
    config = quick_config() if args.quick else BenchConfig()
    if args.no_cache:
        config.use_cache = False
    if args.corpus:
        config.corpora = tuple(args.corpus)
    if args.dev:
        config.include_color = False  # no dev-grid recipe reads color.score; its fit alone takes minutes
        results = run_dev(config, dev_grid(config.seed)[: config.grid_limit], log=log_line)
        for corpus, rows in results.items():
            print(f"## {TITLES[corpus]} (dev)\n\n{dev_table(rows)}\n")
        means = pd.DataFrame({c: {r["recipe"]: r["dev"] for r in rows} for c, rows in results.items()}).assign(
            mean=lambda t: t.mean(axis=1)
        )
        print(f"## Mean dev accuracy over the corpora\n\n{means.sort_values('mean', ascending=False).round(3).to_markdown()}")
        return 0
    result = run(config, log=log_line)
    files = {f"methods-{c}.md": render_corpus(r, args.quick, result["winner"]) for c, r in result["corpora"].items()}
    files["methods.md"] = render_summary(result, args.quick)
    print(files["methods.md"])
    output = args.output if args.output is not None else (None if args.quick else RESULTS_DIR)
    if output is not None:
        output.mkdir(parents=True, exist_ok=True)
        for name, markdown in files.items():
            (output / name).write_text(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
