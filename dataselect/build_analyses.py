"""The deeper look at one selection build: a budget sweep and a scorer ablation.

Both work from the build's decisions table alone (it carries every score column): they re-run
:func:`dataselect.selection.decide` with another budget or with one scorer left out, instead of
rescoring anything, and train the report's recipe on each selection. They are kept apart from
the report (:mod:`dataselect.build_report`) because they cost several times its training and
need none of its results: a build runs the two side by side.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from dataselect import records as cols
from dataselect import report
from dataselect.build_report import BuildEvaluation, arm_evaluator, record_keys, trains_arms
from dataselect.full_pool_arm import FullPoolPredictions
from dataselect.pool_terms import PoolTerms
from dataselect.selection import DECISION_COLUMNS, SelectionConfig, columns_read, decide, hard_filter_names

DEFAULT_BUDGETS = (0.025, 0.05, 0.1, 0.2, 0.5)

# What decide() adds to the scores table (every column but the record's key).
_ADDED_BY_DECIDE = [c for c in DECISION_COLUMNS if c not in (cols.ID, cols.SHARD, cols.ROW)]


@dataclass
class AnalysesConfig:
    recipe: str = "tfidf_logreg"  # the report's recipe, so the numbers compare with its arms
    random_seeds: tuple[int, ...] = (101, 102, 103, 104, 105)  # the report's random arms' seeds
    # The sweep's budgets; () skips it. None: DEFAULT_BUDGETS up to ``max_records``.
    budgets: tuple[float, ...] | None = None
    ablation: bool | None = None  # None: on up to ``max_records``
    # The sweep trains 8 models per budget (up to half the pool each) and the ablation one per
    # scorer: about 4x and 1x the report's training. Above this many records they run only
    # when asked for, so they stay a small part of a large build (at 100k real-text records
    # the sweep alone ran for over 10 minutes).
    max_records: int = 20_000

    def __post_init__(self):
        if not self.random_seeds:
            raise ValueError("random_seeds is empty: the random arms need at least one seed")

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> "AnalysesConfig":
        """From a run config's plain values (lists for tuples; keys it does not know, such as a build id, ignored)."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in options.items() if k in known})

    def resolved(self, n_records: int) -> tuple[tuple[float, ...], bool]:
        """(budgets, ablation) for a pool of ``n_records``."""
        small = n_records <= self.max_records
        budgets = self.budgets if self.budgets is not None else (DEFAULT_BUDGETS if small else ())
        return tuple(budgets), self.ablation if self.ablation is not None else small

    def runs_anything(self, n_records: int) -> bool:
        return self.resolved(n_records) != ((), False)

    def skip_reason(self, n_records: int) -> str | None:
        """Why the defaults leave an analysis out at ``n_records`` (None: nothing left out by default)."""
        budgets, ablation = self.resolved(n_records)
        if (not budgets and self.budgets is None) or (not ablation and self.ablation is None):
            return (
                f"budget sweep and ablation skipped by default above {self.max_records:,} records "
                f"(this pool: {n_records:,}); set budgets / ablation in the config to run them"
            )
        return None


class Reselection:
    """The same build's selection again, from its decisions: at another budget (a
    :class:`SelectionConfig` budget, counted against every raw record as the build counts it) or
    with one scorer left out. Calls return record keys (see :func:`record_keys`). ``embeddings``
    are row-aligned with the non-quarantined decisions.

    The decisions are split back into decide()'s inputs once, and narrowed to the columns it
    reads: the analyses of a small pool reselect ~16 times, and copying every score column
    through each time took most of it."""

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


def analyse_build(
    decisions: pd.DataFrame,
    pool: pd.DataFrame,
    pool_embeddings: np.ndarray,
    selection: SelectionConfig,
    eval_set: pd.DataFrame | None = None,
    config: AnalysesConfig | None = None,
    pool_terms: PoolTerms | None = None,
    full_pool: FullPoolPredictions | None = None,
) -> BuildEvaluation:
    """Tables ``budget_sweep`` (accuracy per budget and arm) and ``ablation`` (the selection with
    each scorer left out), and the budget curve. The inputs are those of
    :func:`dataselect.build_report.evaluate_build`; the summary says what was skipped and why."""
    config = config or AnalysesConfig()
    started = time.perf_counter()
    good = decisions[decisions[cols.STATUS] != cols.QUARANTINED].reset_index(drop=True)
    pool = pool.assign(**{cols.ID: record_keys(good).to_numpy()})
    summary: dict[str, Any] = {"n_pool": len(good), "recipe": config.recipe}
    tables: dict[str, pd.DataFrame] = {}
    budgets, ablation = config.resolved(len(good))
    if not trains_arms(pool, eval_set):
        summary["skipped"] = "no labelled evaluation set or no labelled pool record: nothing to train"
        budgets, ablation = (), False
    elif reason := config.skip_reason(len(good)):
        summary["skipped"] = reason
    if budgets or ablation:
        evaluator = arm_evaluator(pool, eval_set, config.recipe, pool_embeddings, pool_terms, full_pool)
        reselection = Reselection(decisions, selection, pool_embeddings)
        if budgets:
            tables["budget_sweep"] = evaluator.budget_sweep(reselection, budgets, config.random_seeds, True, True)
        if ablation:
            scorers = sorted({c.split(".")[0] for c in good.columns if c.endswith(".keep")} | {c.split(".")[0] for c in selection.weights})
            selected_ids = pool.loc[(good[cols.STATUS] == cols.SELECTED).to_numpy(), cols.ID].tolist()
            tables["ablation"] = evaluator.ablation(selected_ids, {s: (lambda s=s: reselection(without=s)) for s in scorers})
    figures = {"budget_curve": report.plot_budget_curve(tables["budget_sweep"])} if "budget_sweep" in tables else {}
    summary["seconds"] = round(time.perf_counter() - started, 2)
    return BuildEvaluation(summary, tables, figures)
