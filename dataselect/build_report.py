"""Evaluate one selection build: arms, budget sweep, ablation, label-free metrics, comparison.

Works from a build's decisions table alone (it carries every score column), so the sweep and
the ablation re-run :func:`dataselect.selection.decide` with a changed budget or with one
scorer left out, instead of rescoring anything.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from dataselect import evaluation, metrics, report
from dataselect import records as cols
from dataselect.full_pool_arm import FullPoolPredictions
from dataselect.pool_terms import PoolTerms
from dataselect.scorers import SCORERS
from dataselect.scorers.dsir import kl_reductions
from dataselect.selection import DECISION_COLUMNS, SelectionConfig, accounting, columns_read, decide, hard_filter_names

# What decide() adds to the scores table (every column but the record's key).
_ADDED_BY_DECIDE = [c for c in DECISION_COLUMNS if c not in (cols.ID, cols.SHARD, cols.ROW)]


DEFAULT_BUDGETS = (0.025, 0.05, 0.1, 0.2, 0.5)


@dataclass
class ReportConfig:
    recipe: str = "tfidf_logreg"  # or "embedding_probe"
    random_seeds: tuple[int, ...] = (101, 102, 103, 104, 105)  # independent of the selection seed
    # The stratified arm draws with the first this many of them: it is the secondary baseline (the
    # verdict reads the random arm), and at 100k records its 3 more fits were a tenth of the report.
    stratified_seeds: int = 2
    # The sweep's budgets; () skips it. None: DEFAULT_BUDGETS up to ``analysis_max_records``.
    budgets: tuple[float, ...] | None = None
    ablation: bool | None = None  # None: on up to ``analysis_max_records``
    regression_tolerance: float = 0.01  # accuracy drop vs the previous build that warns
    # The sweep trains 8 models per budget (up to half the pool each) and the ablation one per
    # scorer: about 4x and 1x the headline's training. Above this many records they run only
    # when asked for, so the report stays a small part of a large build (at 100k real-text
    # records the sweep alone ran for over 10 minutes).
    analysis_max_records: int = 20_000
    # The KL reduction compares n-gram distributions over 10k hashed buckets; each is estimated
    # from a seeded sample of at most this many texts (as DSIR fits its raw distribution on a
    # sample), so the metric costs the same at 100k or 1M records.
    kl_max_texts: int = 20_000

    def __post_init__(self):
        if not self.random_seeds:
            raise ValueError("random_seeds is empty: the random arm needs at least one seed")

    def resolved(self, n_records: int) -> tuple[tuple[float, ...], bool]:
        """(budgets, ablation) for a pool of ``n_records``."""
        small = n_records <= self.analysis_max_records
        budgets = self.budgets if self.budgets is not None else (DEFAULT_BUDGETS if small else ())
        return tuple(budgets), self.ablation if self.ablation is not None else small


@dataclass
class BuildEvaluation:
    summary: dict[str, Any]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: dict[str, bytes] = field(default_factory=dict)


class Reselection:
    """The same build's selection again, from its decisions: at another budget (a
    :class:`SelectionConfig` budget, counted against every raw record as the build counts it) or
    with one scorer left out. Calls return record keys (see :func:`record_keys`). ``embeddings``
    are row-aligned with the non-quarantined decisions.

    The decisions are split back into decide()'s inputs once, and narrowed to the columns it
    reads: a small pool's report reselects ~16 times, and copying every score column through
    each time took most of it."""

    def __init__(self, decisions: pd.DataFrame, config: SelectionConfig, embeddings: np.ndarray | None) -> None:
        quarantined = decisions[cols.STATUS] == cols.QUARANTINED
        scores = decisions.loc[~quarantined].drop(columns=[c for c in _ADDED_BY_DECIDE if c in decisions.columns])
        self.scores = scores[columns_read(scores.columns, config)].reset_index(drop=True)
        quarantine = decisions.loc[quarantined, [cols.SHARD, cols.ROW, cols.ID, cols.REASON]]
        self.quarantine = quarantine.rename(columns={cols.REASON: cols.ERROR}).reset_index(drop=True)
        self.config, self.embeddings = config, embeddings

    def __call__(self, budget: float | None = None, without: str | None = None) -> list[str]:
        changes: dict[str, Any] = {}
        if budget is not None:
            changes["budget"] = budget
        if without is not None:
            changes["hard_filters"] = [f for f in hard_filter_names(self.scores.columns, self.config.hard_filters) if f != without]
            weights = {c: w for c, w in self.config.weights.items() if not c.startswith(f"{without}.")}
            changes["weights"] = weights or {cols.FUSED_SCORE: 1.0}
        again = decide(self.scores, self.quarantine, dataclasses.replace(self.config, **changes), self.embeddings)
        return record_keys(again.loc[again[cols.STATUS] == cols.SELECTED]).tolist()


def record_keys(frame: pd.DataFrame) -> pd.Series:
    """``shard:row``: unique per raw record even when an id repeats across shards."""
    return frame[cols.SHARD].astype(str) + ":" + frame[cols.ROW].astype(str)


def _flags(decisions: pd.DataFrame) -> pd.DataFrame:
    def failed(prefix: str) -> pd.Series:
        column = f"{prefix}.keep"
        return ~decisions[column].fillna(True).astype(bool) if column in decisions else pd.Series(False, index=decisions.index)

    def failed_any(kind: str) -> np.ndarray:
        return np.logical_or.reduce([failed(name).to_numpy() for name, scorer in SCORERS.items() if scorer.kind == kind])

    duplicate = failed_any("duplicates")
    junk = failed_any("quality") | (decisions[cols.STATUS] == cols.QUARANTINED).to_numpy()
    return pd.DataFrame({"duplicate": duplicate, "junk": junk}, index=decisions.index)


def _at_most(rows: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    """``rows``, or a sorted seeded sample of ``limit`` of them."""
    return rows if len(rows) <= limit else np.sort(rng.choice(rows, limit, replace=False))


def evaluate_build(
    decisions: pd.DataFrame,
    pool: pd.DataFrame,
    pool_embeddings: np.ndarray,
    target_texts: list[str],
    target_embeddings: np.ndarray,
    selection: SelectionConfig,
    eval_set: pd.DataFrame | None = None,
    previous: dict[str, Any] | None = None,
    config: ReportConfig | None = None,
    pool_terms: PoolTerms | None = None,
    full_pool: FullPoolPredictions | None = None,
) -> BuildEvaluation:
    """Everything the report shows. ``pool`` (id, text, label), ``pool_embeddings`` and ``pool_terms``
    (the pool's term counts when counted beforehand, else None) are row-aligned with the
    non-quarantined rows of ``decisions``; ``full_pool``: the full arm's predictions trained
    beforehand from ``pool_terms`` (used when they match); ``previous`` is the prior build's summary."""
    config = config or ReportConfig()
    started = time.perf_counter()
    good = decisions[decisions[cols.STATUS] != cols.QUARANTINED].reset_index(drop=True)
    selected_mask = (good[cols.STATUS] == cols.SELECTED).to_numpy()
    # The evaluation keys records by position, since ids may repeat across shards.
    pool = pool.assign(**{cols.ID: record_keys(good).to_numpy()})
    selected_ids = pool.loc[selected_mask, cols.ID].tolist()
    pool_texts = pool[cols.TEXT].tolist()
    rng = np.random.default_rng(config.random_seeds[0])
    random_mask = np.zeros(len(good), bool)
    random_mask[rng.choice(len(good), size=min(len(selected_ids), len(good)), replace=False)] = True

    score_columns = [c for c in good.columns if c.endswith(".score") or c == cols.FUSED_SCORE]
    flags = _flags(decisions)
    good_flags = flags[(decisions[cols.STATUS] != cols.QUARANTINED).to_numpy()].reset_index(drop=True)
    label_free = {
        "kl_reduction": kl_reductions(
            {
                name: [pool_texts[i] for i in _at_most(np.flatnonzero(mask), config.kl_max_texts, rng)]
                for name, mask in (("selected", selected_mask), ("random", random_mask))
            },
            [pool_texts[i] for i in _at_most(np.arange(len(pool_texts)), config.kl_max_texts, rng)],
            target_texts,
        ),
        "embedding_distance": {
            "selected": metrics.embedding_distance(pool_embeddings[selected_mask], target_embeddings),
            "random": metrics.embedding_distance(pool_embeddings[random_mask], target_embeddings),
            "full": metrics.embedding_distance(pool_embeddings, target_embeddings),
        },
        "target_coverage": {
            "selected": metrics.target_coverage(pool_embeddings[selected_mask], target_embeddings),
            "random": metrics.target_coverage(pool_embeddings[random_mask], target_embeddings),
        },
        "diversity": {
            "selected": metrics.diversity(pool_embeddings[selected_mask]),
            "random": metrics.diversity(pool_embeddings[random_mask]),
        },
        "rates": {
            "selected": metrics.rates(good_flags[selected_mask]),
            "random": metrics.rates(good_flags[random_mask]),
            "full_raw_pool": metrics.rates(flags),
        },
    }
    tables: dict[str, pd.DataFrame] = {}
    summary: dict[str, Any] = {"label_free": label_free, "n_selected": len(selected_ids), "n_pool": len(good)}
    # Who rejected how many (decontamination and the label rule included), next to the arms.
    summary["rejections_by_reason"] = accounting(decisions)["rejections_by_reason"]

    labelled = eval_set is not None and len(eval_set) and cols.LABEL in pool and pool[cols.LABEL].notna().any()
    if labelled:
        features = {"pool_terms": pool_terms, "full_pool": full_pool}
        if config.recipe == "embedding_probe":
            features = {"pool_embeddings": pool_embeddings, "eval_embeddings": eval_set.attrs.get("embeddings")}
        evaluator = evaluation.ArmEvaluator(pool, eval_set, config.recipe, **features)
        stratified_seeds = config.random_seeds[: config.stratified_seeds]
        arms = evaluator.evaluate_arms(selected_ids, config.random_seeds, True, True, selection.seed, stratified_seeds)
        summary.update(report.summarize(arms))
        summary["full_pool_arm"] = (
            "stored predictions (trained beside the selection)" if evaluator.has_stored_full_pool() else "trained here"
        )
        summary["headline"] = evaluation.headline_rows(arms)
        summary["verdict"] = evaluation.verdict(arms, evaluator.config)
        budgets, ablation = config.resolved(len(good))
        if (not budgets and config.budgets is None) or (not ablation and config.ablation is None):
            summary["skipped_analyses"] = (
                f"budget sweep and ablation skipped by default above {config.analysis_max_records:,} records "
                f"(this pool: {len(good):,}); set budgets / ablation in the report config to run them"
            )
        reselection = Reselection(decisions, selection, pool_embeddings) if budgets or ablation else None
        if budgets:
            tables["budget_sweep"] = evaluator.budget_sweep(
                reselection,
                budgets,
                config.random_seeds,
                True,
                True,
            )
        if ablation:
            scorers = sorted({c.split(".")[0] for c in good.columns if c.endswith(".keep")} | {c.split(".")[0] for c in selection.weights})
            tables["ablation"] = evaluator.ablation(
                selected_ids,
                {s: (lambda s=s: reselection(without=s)) for s in scorers},
            )
        summary["headline_numbers"] = {
            "selected_accuracy": arms["selected"].accuracy,
            "random_accuracy": arms["random"].accuracy,
            "random_accuracy_hi": arms["random"].accuracy_hi,
            "full_accuracy": arms["full"].accuracy if "full" in arms else None,
        }
    if previous is not None:
        summary["build_comparison"] = evaluation.compare_builds(
            previous.get("selected_ids", []),
            good.loc[selected_mask, cols.ID].tolist(),
            previous.get("metrics", {}),
            _comparable(summary),
        )
        delta = summary["build_comparison"]["metric_deltas"].get("headline_numbers.selected_accuracy")
        summary["build_comparison"]["regression"] = bool(delta and delta["delta"] < -config.regression_tolerance)
    # Rendered last, on this thread: on a background thread (tried) matplotlib held the GIL
    # the metrics' and fits' short numpy calls wait for, and the report took ~10% longer.
    figures = {
        "score_histograms": report.plot_score_histograms(good[score_columns], selected_mask),
        "embedding_projection": report.plot_embedding_projection(pool_embeddings, selected_mask, target_embeddings),
    }
    if "headline" in summary:
        figures["arm_accuracy"] = report.plot_arm_accuracy(summary["headline"])
    if "budget_sweep" in tables:
        figures["budget_curve"] = report.plot_budget_curve(tables["budget_sweep"])
    summary["seconds"] = round(time.perf_counter() - started, 2)
    summary["recipe"] = config.recipe
    return BuildEvaluation(summary, tables, figures)


def _comparable(summary: dict[str, Any]) -> dict[str, Any]:
    """The numbers a later build compares itself against."""
    return {"headline_numbers": summary.get("headline_numbers", {}), "label_free": summary.get("label_free", {})}


def comparison_record(summary: dict[str, Any], selected_ids: list[str]) -> dict[str, Any]:
    """What to store with a build so the next one can compare (ids + metrics)."""
    return {"selected_ids": selected_ids, "metrics": _comparable(summary)}
