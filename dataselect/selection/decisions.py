"""Per-record decisions: every raw record ends selected, rejected or quarantined, with who decided
and why (the datatrove habit of keeping a reason with every drop, taken down to the record).

Order of decision:
1. quarantine: rows that never became records (``decided_by="ingest"``, reason = the ingest error);
2. hard filters, in the configured order: the first ``<name>.keep == False`` rejects the record and
   its ``<name>.reason`` is copied (a null keep counts as a pass);
3. for a classification task, a record without a label is no training example
   (``decided_by="label"``, reason ``no label``);
4. the selection policy over the survivors, with a budget counted against ALL raw records.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from dataselect.records import (
    DECIDED_BY,
    ERROR,
    FUSED_SCORE,
    ID,
    LABEL,
    QUARANTINED,
    REASON,
    REJECTED,
    ROW,
    SELECTED,
    SHARD,
    STATUS,
)
from dataselect.selection.fusion import fuse, missing_columns
from dataselect.selection.policies import POLICIES, SelectionConfig, run_policy

log = logging.getLogger(__name__)

SAMPLE_WEIGHT = "sample_weight"  # importance weight of a selected record (1 unless sensitivity sampling)
DECISION_COLUMNS = [ID, SHARD, ROW, STATUS, DECIDED_BY, REASON, FUSED_SCORE, SAMPLE_WEIGHT]


def hard_filter_names(columns, hard_filters: list[str] | None) -> list[str]:
    """The hard filters that apply, in order: ``hard_filters``, or every ``<name>.keep`` column when None."""
    present = [column[: -len(".keep")] for column in columns if column.endswith(".keep")]
    if hard_filters is None:
        return present
    absent = [name for name in hard_filters if f"{name}.keep" not in columns]
    if absent:
        raise ValueError(f"hard filters {absent} have no '<name>.keep' column; present filters: {present}")
    return list(hard_filters)


def columns_read(columns, config: SelectionConfig) -> list[str]:
    """The columns of a scores table that :func:`decide` reads under ``config`` (or under the same
    config with fewer weights or hard filters): the record's key and label, every hard filter's
    keep and reason, the weighted scores and the policy's columns. Decisions made on just these
    are the same; the rest are only copied through."""
    policy = (config.log_weight_column, config.difficulty_column, config.label_quota_column)
    return [
        c for c in columns
        if c in (ID, SHARD, ROW, LABEL, *policy) or c in config.weights or c.endswith((".keep", ".reason"))
    ]  # fmt: skip


def first_failed_filter(scores: pd.DataFrame, hard_filters: list[str] | None) -> np.ndarray:
    """Per record, the first applied hard filter whose ``<name>.keep`` is False, or None when it
    passes them all. A null keep (the scorer had no opinion) passes; filters not applied never fail."""
    failed = np.full(len(scores), None, dtype=object)
    for name in hard_filter_names(scores.columns, hard_filters):
        values = scores[f"{name}.keep"].to_numpy(dtype=object)
        failing = ~np.where(pd.isna(values), True, values).astype(bool) & (failed == None)  # noqa: E711
        failed[failing] = name
    return failed


def passes_hard_filters(scores: pd.DataFrame, hard_filters: list[str] | None) -> np.ndarray:
    """True where a record passes every applied hard filter (the rule ``decide`` applies)."""
    return first_failed_filter(scores, hard_filters) == None  # noqa: E711


def unlabelled(scores: pd.DataFrame) -> np.ndarray:
    """True where a record has no label (null, NaN or empty); every record when there is no label column."""
    if LABEL not in scores.columns:
        return np.ones(len(scores), bool)
    labels = scores[LABEL]
    return (labels.isna() | (labels.astype(str).str.strip() == "")).to_numpy(bool)


def decide(
    scores: pd.DataFrame,
    quarantine: pd.DataFrame,
    config: SelectionConfig,
    embeddings: np.ndarray | None = None,
) -> pd.DataFrame:
    """One row per raw record: ``id, shard, row, status, decided_by, reason, fused_score,
    sample_weight``, then every other column of ``scores`` (NaN/None for quarantined rows).

    ``scores``: one row per good record with ``id``, ``shard``, ``row`` and score columns.
    ``quarantine``: ``shard``, ``row``, ``error`` and optionally ``id`` (null -> ``"shard:row"``).
    ``embeddings``: row-aligned with ``scores``; needed by the cluster policies.
    Sorted by (shard, row). Notes (e.g. weighted columns that were missing) are logged and kept
    in ``result.attrs["notes"]``. Deterministic for (inputs, config): ties are broken by id.
    """
    for column in (ID, SHARD, ROW):
        if column not in scores.columns:
            raise ValueError(f"scores table lacks column {column!r}")
    for column in (SHARD, ROW, ERROR):
        if column not in quarantine.columns:
            raise ValueError(f"quarantine table lacks column {column!r}")
    if embeddings is not None and len(embeddings) != len(scores):
        raise ValueError(f"{len(embeddings)} embeddings for {len(scores)} scored records")

    notes: list[str] = []
    missing = missing_columns(scores, config.weights)
    if missing:
        notes.append(f"weighted score columns not in the table, ignored: {missing}")
    n = len(scores)
    n_raw = n + len(quarantine)
    budget = config.budget_count(n_raw)

    fused = fuse(scores, config.weights, config.normalization)
    status = np.full(n, None, dtype=object)
    decided_by = np.full(n, None, dtype=object)
    reason = np.full(n, "", dtype=object)
    sample_weight = np.full(n, np.nan)

    failed = first_failed_filter(scores, config.hard_filters)
    for name in dict.fromkeys(failed[failed != None].tolist()):  # noqa: E711
        failing = failed == name
        if f"{name}.reason" in scores.columns:
            reasons = scores[f"{name}.reason"].to_numpy(dtype=object)[failing]
        else:
            reasons = np.full(int(failing.sum()), "", dtype=object)
        reason[failing] = [text if isinstance(text, str) and text else f"{name}.keep is False" for text in reasons]
    rejected = failed != None  # noqa: E711
    status[rejected] = REJECTED
    decided_by[rejected] = failed[rejected]

    if config.task == "classification":
        no_label = unlabelled(scores) & (status == None)  # noqa: E711
        status[no_label], decided_by[no_label], reason[no_label] = REJECTED, "label", "no label"

    survivors = np.flatnonzero(status == None)  # noqa: E711
    # Canonical candidate order (id, then shard/row) so every tie is broken by id.
    canonical = np.lexsort(
        (
            scores[ROW].to_numpy()[survivors],
            scores[SHARD].astype(str).to_numpy()[survivors],
            scores[ID].astype(str).to_numpy()[survivors],
        )
    )
    candidates = survivors[canonical]
    # Only what the policy reads is gathered for the candidates: at a million records a copy of
    # every score column or of the embeddings costs hundreds of MB.
    wanted = (config.log_weight_column, config.difficulty_column, config.label_quota_column, LABEL)
    policy_columns = [c for c in dict.fromkeys(wanted) if c is not None and c in scores.columns]
    result = run_policy(
        config,
        scores[policy_columns].iloc[candidates].reset_index(drop=True),
        fused[candidates],
        budget,
        np.asarray(embeddings)[candidates] if embeddings is not None and POLICIES[config.policy].needs_embeddings else None,
    )
    status[candidates] = np.where(result.selected, SELECTED, REJECTED)
    decided_by[candidates] = config.policy
    reason[candidates] = result.reason
    sample_weight[candidates] = result.sample_weight

    score_columns = [column for column in scores.columns if column not in (ID, SHARD, ROW)]
    good = pd.DataFrame(
        {
            ID: scores[ID].astype(str).to_numpy(),
            SHARD: scores[SHARD].astype(str).to_numpy(),
            ROW: scores[ROW].to_numpy(np.int64),
            STATUS: status,
            DECIDED_BY: decided_by,
            REASON: reason,
            FUSED_SCORE: fused,
            SAMPLE_WEIGHT: sample_weight,
        }
    )
    good = pd.concat([good, scores[score_columns].reset_index(drop=True)], axis=1)

    quarantine_ids = quarantine[ID] if ID in quarantine.columns else pd.Series([None] * len(quarantine))
    shards = quarantine[SHARD].astype(str).to_numpy()
    rows = quarantine[ROW].to_numpy(np.int64)
    bad = pd.DataFrame(
        {
            ID: [
                value if isinstance(value, str) and value else f"{shard}:{row}"
                for value, shard, row in zip(quarantine_ids.tolist(), shards.tolist(), rows.tolist())
            ],
            SHARD: shards,
            ROW: rows,
            STATUS: QUARANTINED,
            DECIDED_BY: "ingest",
            REASON: quarantine[ERROR].astype(str).to_numpy(),
            FUSED_SCORE: np.nan,
            SAMPLE_WEIGHT: np.nan,
        }
    )
    frames = [frame for frame in (good, bad) if len(frame)]
    decisions = pd.concat(frames, ignore_index=True) if frames else good
    decisions = decisions.sort_values([SHARD, ROW], kind="stable").reset_index(drop=True)
    for note in notes:
        log.warning("decide: %s", note)
    decisions.attrs["notes"] = notes
    return decisions


def accounting(decisions: pd.DataFrame) -> dict:
    """Counts that must add up: ``raw = selected + rejected + quarantined``, and
    ``rejections_by_reason`` (decided_by -> count over rejected records) sums to ``rejected``."""
    status = decisions[STATUS]
    rejected = decisions[status == REJECTED]
    return {
        "raw": int(len(decisions)),
        "selected": int((status == SELECTED).sum()),
        "rejected": int(len(rejected)),
        "quarantined": int((status == QUARANTINED).sum()),
        "rejections_by_reason": {str(k): int(v) for k, v in rejected[DECIDED_BY].value_counts(sort=False).items()},
    }
