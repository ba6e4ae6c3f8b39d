"""One versioned selection build: decisions for every raw record, the selected records, a manifest.

A build's id is derived from its config and the content fingerprints of its input shards,
so re-running with the same inputs, config and seed rewrites byte-identical outputs in the
same place, and any change to either gives a new build beside the old ones.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np
import pandas as pd
import pyarrow as pa

from dataselect import decontamination
from dataselect import records as cols
from dataselect.pipeline import fingerprint, make_scorers, score_pool
from dataselect.scorers.base import StoredColumns
from dataselect.selection import SelectionConfig, accounting, decide
from dataselect.storage import confined, exists, read_json, write_json, write_parquet


def build_id_for(
    selection: SelectionConfig,
    pool_scorers: list[str],
    pool_options: dict,
    shard_fingerprints: dict[str, str],
    evaluation: str | None = None,
    scored_with: str | None = None,
) -> str:
    """``evaluation``: the evaluation set's fingerprint when it shaped the decisions (decontamination);
    ``scored_with``: the version of the shard scores' scorers, settings and fitted models (a refit
    model makes another build of the same shards)."""
    config_hash = fingerprint(dataclasses.asdict(selection), pool_scorers, pool_options, *([evaluation] if evaluation else []))
    inputs_hash = fingerprint(sorted(shard_fingerprints.items()), *([scored_with] if scored_with else []))
    return f"{config_hash[:8]}-{inputs_hash[:8]}"


def decontamination_version(evaluation: pd.DataFrame) -> str:
    """What a shard's ``decontamination.*`` columns were found against: the evaluation records and the rule."""
    texts = evaluation[cols.TEXT].tolist()
    return fingerprint(evaluation[cols.ID].astype(str).tolist(), texts, decontamination.DEFAULT_NGRAM, decontamination.DEFAULT_MIN_OVERLAP)


def score_for_selection(
    scores: pa.Table,
    embeddings: np.ndarray | None,
    pool_scorers: list[str],
    pool_options: dict | None = None,
    texts: pa.Array | list[str] | None = None,
    evaluation: pd.DataFrame | None = None,
    text_parts: Iterable[pa.Array] | None = None,
    stored: StoredColumns | None = None,
    decontaminated: bool = False,
) -> pd.DataFrame:
    """Pool-stage scoring of the shard scores; with an ``evaluation`` set (``id``, ``text``), also
    the ``decontamination.*`` columns (records sharing word n-grams with it). Decontamination reads
    ``texts``, or else ``text_parts``: the same texts in consecutive parts (one shard's at a time), so
    that a pool whose scorers need no text is never held whole. ``decontaminated``: every shard's
    scores carry those columns, found against this evaluation set when the shard was scored, and no
    text is read; otherwise any such stored columns are dropped. ``stored``: more columns of
    ``scores`` left in their files (see :class:`dataselect.scorers.base.Batch`)."""
    scorers = make_scorers(pool_scorers, pool_options)
    decontaminated = decontaminated and evaluation is not None and len(evaluation) > 0
    found_before = [name for name in scores.column_names if name.startswith(f"{decontamination.NAME}.")]
    if found_before and not decontaminated:  # found against another evaluation set, or none is asked for now
        scores = scores.drop_columns(found_before)
    names = scores.column_names + (stored.names if stored is not None else [])
    frame = score_pool(scores, embeddings, scorers, texts if any(s.needs_text_given(names) for s in scorers) else None, stored)
    if decontaminated:  # last, as when found here: without a hard_filters list, column order decides who rejects
        frame = frame[[c for c in frame.columns if c not in found_before] + found_before]
    if evaluation is not None and len(evaluation) and not decontaminated:
        parts = [texts] if texts is not None else text_parts
        if parts is None:
            raise ValueError("decontamination against an evaluation set needs the pool texts")
        found = decontamination.contamination_of_parts(parts, evaluation[cols.ID].astype(str).tolist(), evaluation[cols.TEXT].tolist())
        if len(found["keep"]) != len(frame):
            raise ValueError(f"decontamination read {len(found['keep'])} texts for {len(frame)} scored records")
        for name, values in found.items():
            frame[f"{decontamination.NAME}.{name}"] = values
    return frame


def with_decontamination(selection: SelectionConfig, frame: pd.DataFrame) -> SelectionConfig:
    """Decontamination is a hard filter whatever ``hard_filters`` lists, once its column exists."""
    if (
        f"{decontamination.NAME}.keep" in frame.columns
        and selection.hard_filters is not None
        and decontamination.NAME not in selection.hard_filters
    ):
        return dataclasses.replace(selection, hard_filters=[*selection.hard_filters, decontamination.NAME])
    return selection


def select(
    scores: pa.Table,
    quarantine: pd.DataFrame,
    embeddings: np.ndarray | None,
    selection: SelectionConfig,
    pool_scorers: list[str],
    pool_options: dict | None = None,
    texts: pa.Array | list[str] | None = None,
    evaluation: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Pool-stage scoring, then hard filters and the budget policy: one decision per raw record."""
    frame = score_for_selection(scores, embeddings, pool_scorers, pool_options, texts, evaluation)
    return decide(frame, quarantine, with_decontamination(selection, frame), embeddings)


def write_build(
    root: str,
    build_id: str,
    decisions: pd.DataFrame,
    selected: pa.Table,
    manifest: dict,
) -> dict[str, str]:
    """Write a build's files atomically and append it to the build index (once per id)."""
    paths = {
        "decisions": str(confined(root, "builds", build_id, "decisions.parquet")),
        "selected": str(confined(root, "builds", build_id, "selected.parquet")),
        "manifest": str(confined(root, "builds", build_id, "manifest.json")),
    }
    write_parquet(paths["decisions"], pa.Table.from_pandas(decisions, preserve_index=False))
    write_parquet(paths["selected"], selected)
    write_json(paths["manifest"], manifest)
    index_path = confined(root, "builds", "index.json")
    index = read_json(index_path) if exists(index_path) else []
    # Paths relative to the store root, so a store can be moved or synced as a whole.
    manifest_relative = f"builds/{build_id}/manifest.json"
    index = [entry for entry in index if entry["build_id"] != build_id] + [{"build_id": build_id, "manifest": manifest_relative}]
    write_json(index_path, index)
    return paths


def make_manifest(
    build_id: str,
    selection: SelectionConfig,
    pool_scorers: list[str],
    pool_options: dict,
    shard_fingerprints: dict[str, str],
    decisions: pd.DataFrame,
    extra: dict | None = None,
    scored_with: dict | None = None,
) -> dict:
    """``scored_with``: what scored the shards (scoring version, fitted models' versions)."""
    return {
        "build_id": build_id,
        "config": {"selection": dataclasses.asdict(selection), "pool_scorers": pool_scorers, "pool_options": pool_options, **(extra or {})},
        "config_hash": fingerprint(dataclasses.asdict(selection), pool_scorers, pool_options),
        "seed": selection.seed,
        "input_shards": dict(sorted(shard_fingerprints.items())),
        **({"scored_with": scored_with} if scored_with else {}),
        "counts": accounting(decisions),
    }


def decided_records(manifest: dict) -> int:
    """The records a build's selection decided on: every raw record but the quarantined ones."""
    counts = manifest["counts"]
    return counts["raw"] - counts["quarantined"]
