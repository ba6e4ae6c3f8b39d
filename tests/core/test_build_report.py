"""The report's budget sweep re-runs the build's own selection: at the build's budget it selects
exactly what the build selected, counted against every raw record (quarantined included)."""

import dataclasses

import numpy as np
import pandas as pd

from dataselect import records as cols
from dataselect.build_analyses import Reselection
from dataselect.build_report import record_keys
from dataselect.evaluation import ArmEvaluator
from dataselect.selection import SelectionConfig, decide

TOPICS = {"space": "orbit rocket launch planet", "cooking": "oven recipe flour butter"}


def _build(n_good: int = 50, n_quarantined: int = 10):
    rng = np.random.default_rng(0)
    labels = ["space" if i % 2 else "cooking" for i in range(n_good)]
    scores = pd.DataFrame(
        {
            cols.ID: [f"r{i}" for i in range(n_good)],
            cols.SHARD: "s1",
            cols.ROW: np.arange(n_good),
            "relevance.score": rng.random(n_good),
            "heuristics.keep": [i % 7 != 0 for i in range(n_good)],
        }
    )
    quarantine = pd.DataFrame({cols.SHARD: "s1", cols.ROW: np.arange(n_good, n_good + n_quarantined), cols.ERROR: "invalid JSON"})
    config = SelectionConfig(budget=0.1, weights={"relevance.score": 1.0})
    texts = [f"{TOPICS[label]} note {i}" for i, label in enumerate(labels)]
    return decide(scores, quarantine, config), config, texts, labels


def test_reselect_at_the_build_budget_is_the_build():
    decisions, config, _, _ = _build()
    built = record_keys(decisions[decisions[cols.STATUS] == cols.SELECTED]).tolist()
    assert len(built) == config.budget_count(60) == 6  # 10% of 50 good + 10 quarantined raw records
    assert Reselection(decisions, config, None)(budget=config.budget) == built


def test_reselection_reads_only_what_decide_reads_and_decides_the_same():
    """Narrowed to decide()'s columns, leaving a scorer out (its weight and its hard filter) or
    moving the budget, with label quotas and unlabelled records, selects what decide() does on every column."""
    rng = np.random.default_rng(3)
    n = 80
    scores = pd.DataFrame(
        {
            cols.ID: [f"r{i % 70}" for i in range(n)],  # ids repeat across shards
            cols.SHARD: ["s1" if i < 40 else "s2" for i in range(n)],
            cols.ROW: np.arange(n) % 40,
            cols.LABEL: [None if i % 9 == 0 else ("a" if i % 3 else "b") for i in range(n)],
            "relevance.score": rng.random(n),
            "quality.score": rng.random(n),
            "unweighted.score": rng.random(n),
            "label_prior.target_share": np.where(np.arange(n) % 3, 0.25, 0.75),
            "heuristics.keep": [i % 7 != 0 for i in range(n)],
            "heuristics.reason": ["too short" if i % 7 == 0 else "" for i in range(n)],
            "quality.keep": [i % 11 != 0 for i in range(n)],
            "notes": [f"note {i}" for i in range(n)],
        }
    )
    quarantine = pd.DataFrame({cols.SHARD: "s2", cols.ROW: [40, 41], cols.ERROR: "invalid JSON"})
    config = SelectionConfig(budget=0.2, weights={"relevance.score": 1.0, "quality.score": 0.5}, task="classification")
    decisions = decide(scores, quarantine, config)
    reselection = Reselection(decisions, config, None)
    assert {"unweighted.score", "notes"}.isdisjoint(reselection.scores.columns)

    def selected(frame):
        return record_keys(frame[frame[cols.STATUS] == cols.SELECTED]).tolist()

    without_quality = dataclasses.replace(config, hard_filters=["heuristics"], weights={"relevance.score": 1.0})
    assert reselection(without="quality") == selected(decide(scores, quarantine, without_quality))
    assert reselection(budget=0.35) == selected(decide(scores, quarantine, dataclasses.replace(config, budget=0.35)))
    assert reselection(without="quality") != reselection()  # leaving the scorer out changes the selection


def test_budget_sweep_uses_the_builds_count():
    decisions, config, texts, labels = _build()
    good = decisions[decisions[cols.STATUS] != cols.QUARANTINED].reset_index(drop=True)
    pool = pd.DataFrame({cols.ID: record_keys(good), cols.TEXT: texts, cols.LABEL: labels})
    eval_set = pd.DataFrame({cols.TEXT: [TOPICS[t] for t in TOPICS] * 3, cols.LABEL: list(TOPICS) * 3})
    sweep = ArmEvaluator(pool, eval_set).budget_sweep(
        Reselection(decisions, config, None), budgets=(0.1, 0.2), random_seeds=(1, 2), include_full=False
    )
    selected = sweep[sweep.arm == "selected"].set_index("budget")
    assert selected.loc[0.1, "k"] == (decisions[cols.STATUS] == cols.SELECTED).sum() == 6
    assert selected.loc[0.2, "k"] == 12
    assert (sweep.set_index("budget").loc[0.1, "n_train"] == 6).all()  # random arms match the selection's size


def test_large_pools_skip_the_sweep_and_ablation_unless_asked_and_say_so():
    from dataselect.build_analyses import AnalysesConfig, analyse_build
    from dataselect.build_report import ReportConfig, evaluate_build

    decisions, config, texts, labels = _build()
    good = decisions[decisions[cols.STATUS] != cols.QUARANTINED].reset_index(drop=True)
    pool = pd.DataFrame({cols.ID: good[cols.ID], cols.TEXT: texts, cols.LABEL: labels})
    vectors = np.random.default_rng(1).normal(size=(len(good), 8)).astype(np.float32)
    eval_set = pd.DataFrame({cols.TEXT: [TOPICS[t] for t in TOPICS] * 3, cols.LABEL: list(TOPICS) * 3})
    target = list(TOPICS.values())

    def analyses(**options):
        return analyse_build(decisions, pool, vectors, config, eval_set, AnalysesConfig(random_seeds=(1, 2, 3), **options))

    small = analyses()  # 50 records: under the default limit, everything runs
    assert {"budget_sweep", "ablation"} <= set(small.tables) and "skipped" not in small.summary
    assert set(small.figures) == {"budget_curve"}
    # The sweep's row at the build's budget is the report's own selected and random arms.
    report = evaluate_build(decisions, pool, vectors, target, vectors[:4], config, eval_set, None, ReportConfig(random_seeds=(1, 2, 3)))
    at_build = small.tables["budget_sweep"].set_index(["budget", "arm"])
    assert at_build.loc[(config.budget, "selected"), "accuracy"] == report.summary["headline_numbers"]["selected_accuracy"]
    assert at_build.loc[(config.budget, "random"), "accuracy"] == report.summary["headline_numbers"]["random_accuracy"]
    large = analyses(max_records=49)
    assert not large.tables and not large.figures
    assert "above 49 records (this pool: 50)" in large.summary["skipped"]
    asked = analyses(max_records=49, budgets=(0.2,), ablation=True)
    assert {"budget_sweep", "ablation"} <= set(asked.tables) and "skipped" not in asked.summary
    unlabelled = analyse_build(decisions, pool.assign(**{cols.LABEL: None}), vectors, config, eval_set)
    assert not unlabelled.tables and unlabelled.summary["skipped"].startswith("no labelled evaluation set")
