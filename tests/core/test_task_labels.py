"""A classification build trains on labels: an unlabelled record is no training example.

The label rule is a hard filter of ``decide`` (after the scorers' filters, before the budget);
a language-modeling build ignores labels.
"""

import numpy as np
import pandas as pd
import pytest

from dataselect.records import QUARANTINED, REJECTED, SELECTED
from dataselect.selection import SelectionConfig, accounting, decide


def scored(labels: list) -> tuple[pd.DataFrame, pd.DataFrame]:
    n = len(labels)
    scores = pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(n)],
            "shard": ["s0"] * n,
            "row": list(range(n)),
            "label": labels,
            "heuristics.keep": [i != 1 for i in range(n)],  # r1 fails a scorer filter first
            "heuristics.reason": ["" if i != 1 else "too short" for i in range(n)],
            "relevance.score": np.linspace(1.0, 0.0, n),  # r0 best, r(n-1) worst
        }
    )
    quarantine = pd.DataFrame({"shard": ["s0"], "row": [n], "id": ["q"], "error": ["invalid JSON"]})
    return scores, quarantine


def test_classification_rejects_unlabelled_records_before_the_budget():
    # r0 and r2 (the two best survivors) carry no label: None, "" and NaN all count as missing.
    scores, quarantine = scored([None, None, "", "b", np.nan, "a", "b", "a", "b", "a"])
    config = SelectionConfig(budget=3, weights={"relevance.score": 1.0}, task="classification")
    table = decide(scores, quarantine, config).set_index("id")
    assert tuple(table.loc["r0", ["status", "decided_by", "reason"]]) == (REJECTED, "label", "no label")
    assert table.loc["r1", "decided_by"] == "heuristics"  # a scorer's filter still decides first
    assert set(table.index[table.status == SELECTED]) == {"r3", "r5", "r6"}  # the budget goes to labelled records
    assert table.loc["q", "status"] == QUARANTINED
    counts = accounting(table.reset_index())
    assert counts["rejections_by_reason"]["label"] == 3 and counts["raw"] == 11


def test_language_modeling_ignores_labels():
    scores, quarantine = scored([None, None, "", "b", np.nan, "a", "b", "a", "b", "a"])
    table = decide(scores, quarantine, SelectionConfig(budget=3, weights={"relevance.score": 1.0})).set_index("id")
    assert set(table.index[table.status == SELECTED]) == {"r0", "r2", "r3"}
    assert "label" not in set(table.decided_by)


def test_classification_without_a_label_column_selects_nothing():
    scores, quarantine = scored(["a"] * 10)
    table = decide(scores.drop(columns="label"), quarantine, SelectionConfig(budget=3, task="classification"))
    assert (table.status != SELECTED).all() and (table.decided_by == "label").sum() == 9


def test_unknown_task_is_refused():
    with pytest.raises(ValueError, match="unknown task"):
        SelectionConfig(task="regression")
