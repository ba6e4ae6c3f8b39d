"""Budgeted selection: fuse soft scores, apply hard filters, run a policy, record every decision."""

from dataselect.selection.decisions import (
    DECISION_COLUMNS,
    SAMPLE_WEIGHT,
    accounting,
    columns_read,
    decide,
    hard_filter_names,
    passes_hard_filters,
)
from dataselect.selection.fusion import fuse, missing_columns, normalize
from dataselect.selection.policies import POLICIES, TASKS, SelectionConfig, run_policy

__all__ = [
    "DECISION_COLUMNS",
    "POLICIES",
    "SAMPLE_WEIGHT",
    "SelectionConfig",
    "TASKS",
    "accounting",
    "columns_read",
    "decide",
    "fuse",
    "hard_filter_names",
    "missing_columns",
    "normalize",
    "passes_hard_filters",
    "run_policy",
]
