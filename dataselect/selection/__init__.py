"""Budgeted selection: fuse soft scores, apply hard filters, run a policy, record every decision."""

from dataselect.selection.decisions import DECISION_COLUMNS, SAMPLE_WEIGHT, accounting, decide
from dataselect.selection.fusion import fuse, missing_columns, normalize
from dataselect.selection.policies import POLICIES, TASKS, SelectionConfig, run_policy

__all__ = [
    "DECISION_COLUMNS",
    "POLICIES",
    "SAMPLE_WEIGHT",
    "SelectionConfig",
    "TASKS",
    "accounting",
    "decide",
    "fuse",
    "missing_columns",
    "normalize",
    "run_policy",
]
