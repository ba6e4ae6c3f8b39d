"""Tune the recipe to the user's target, honestly: choose on one part of the labelled evaluation
file, report on the other.

The evaluation file is split (seeded) into a *tune* part and a *held-out* part. Each recipe of a
small grid around the default is a real selection (:func:`dataselect.selection.decide` on the
build's scores); the fixed training recipe is trained on each selection and scored on both parts.
The recipe with the best tune accuracy wins (ties: the earlier row, the default first), and its
held-out accuracy is reported beside the default's: a gain there was not chosen on.

The grid, each row a change to the caller's default :class:`~dataselect.selection.SelectionConfig`:

- ``default``: as configured (the registry defaults unless changed).
- ``more self-confidence``: the label-noise score (out-of-fold probability of the given label)
  fused with 0.5 more weight, so doubtful labels rank lower.
- ``stricter label filter``: the label-noise filter's minimum p(given label) raised by 0.2.
- ``relevance + n-gram only``: only the two relevance classifiers in the fused score.
- ``cluster-balanced``: equal quotas over k-means clusters of the best 2k candidates.
- ``gumbel dsir``: importance resampling on DSIR's log weight.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from dataselect import records as cols
from dataselect.evaluation import ArmEvaluator
from dataselect.scorers.label_noise import label_noise_keep
from dataselect.selection import SelectionConfig, decide

TUNE_FRACTION = 0.5  # of the evaluation file: the tune part; the rest is held out
TUNE_SEED = 0


@dataclass
class Candidate:
    name: str
    selection: SelectionConfig
    min_self_confidence: float = 0.0  # the label-noise filter's strength (LabelNoise.Config)
    require_top_label: bool = False  # the filter's other rule (LabelNoise.Config.require_top_label)


@dataclass
class TuneResult:
    chosen: Candidate
    decisions: pd.DataFrame  # the chosen recipe's decisions
    grid: list[dict[str, Any]] = field(default_factory=list)  # one row per candidate
    tune_ids: list[str] = field(default_factory=list)
    held_out_ids: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """What the manifest records: the chosen recipe, the split and the grid."""
        default = self.grid[0]
        chosen = next(row for row in self.grid if row["recipe"] == self.chosen.name)
        return {
            "chosen": self.chosen.name,
            "selection": dataclasses.asdict(self.chosen.selection),
            "min_self_confidence": self.chosen.min_self_confidence,
            "require_top_label": self.chosen.require_top_label,
            "tune_size": len(self.tune_ids),
            "held_out_size": len(self.held_out_ids),
            "split_seed": TUNE_SEED,
            "held_out_accuracy": chosen["held_out_accuracy"],
            "default_held_out_accuracy": default["held_out_accuracy"],
            "held_out_gain": chosen["held_out_accuracy"] - default["held_out_accuracy"],
            "grid": self.grid,
        }


def split_evaluation(evaluation: pd.DataFrame, fraction: float = TUNE_FRACTION, seed: int = TUNE_SEED) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(tune, held-out): a seeded split of the evaluation records, by id order so it does not
    depend on the file's row order."""
    ordered = evaluation.sort_values(cols.ID, kind="stable").reset_index(drop=True)
    order = np.random.default_rng(seed).permutation(len(ordered))
    n_tune = int(round(fraction * len(ordered)))
    return ordered.iloc[np.sort(order[:n_tune])].reset_index(drop=True), ordered.iloc[np.sort(order[n_tune:])].reset_index(drop=True)


def grid(default: SelectionConfig, default_min_self_confidence: float = 0.0, require_top_label: bool = False) -> list[Candidate]:
    """The documented grid (module docstring), built around the caller's default."""
    weights = dict(default.weights)
    more_confidence = {**weights, "label_noise.score": weights.get("label_noise.score", 0.0) + 0.5}
    relevance_only = {c: w for c, w in weights.items() if c in ("relevance.score", "ngram_relevance.score")} or weights
    strength = default_min_self_confidence
    return [
        Candidate("default", default, strength, require_top_label),
        Candidate("more self-confidence", dataclasses.replace(default, weights=more_confidence), strength, require_top_label),
        Candidate("stricter label filter", default, min(strength + 0.2, 1.0), require_top_label),
        Candidate("relevance + n-gram only", dataclasses.replace(default, weights=relevance_only), strength, require_top_label),
        Candidate(
            "cluster-balanced", dataclasses.replace(default, policy="cluster_balanced", candidate_factor=2.0), strength, require_top_label
        ),
        Candidate("gumbel dsir", dataclasses.replace(default, policy="gumbel_top_k"), strength, require_top_label),
    ]


def with_label_filter_strength(
    frame: pd.DataFrame, min_self_confidence: float, prefix: str = "label_noise", require_top_label: bool = False
) -> pd.DataFrame:
    """The scored pool with ``<prefix>.keep`` recomputed by the scorer's rule at this strength
    (``require_top_label``: also the model's most probable class must be the given label; for a
    record that is no issue, ``suggested_label`` is that class)."""
    if f"{prefix}.self_confidence" not in frame.columns:
        return frame
    frame = frame.copy()
    top_is_given = None
    if require_top_label:
        top_is_given = (frame[f"{prefix}.suggested_label"].astype(str) == frame[cols.LABEL].astype(str)).to_numpy()
    frame[f"{prefix}.keep"] = label_noise_keep(
        frame[f"{prefix}.is_issue"].to_numpy(bool), frame[f"{prefix}.self_confidence"].to_numpy(float), min_self_confidence, top_is_given
    )
    return frame


def tune(
    frame: pd.DataFrame,
    quarantine: pd.DataFrame,
    embeddings: np.ndarray | None,
    pool: pd.DataFrame,
    evaluation: pd.DataFrame,
    candidates: list[Candidate],
    recipe: str = "tfidf_logreg",
) -> TuneResult:
    """Every candidate as a real selection on ``frame`` (the pool-scored records, row-aligned with
    ``pool``: id, text, label); the best tune accuracy wins. ``evaluation``: id, text, label."""
    tune_part, held_out = split_evaluation(evaluation)
    if len(tune_part) == 0 or len(held_out) == 0:
        raise ValueError(f"tuning needs evaluation records in both parts; the file has {len(evaluation)}")
    # Keys by position: ids may repeat across shards.
    keys = frame[cols.SHARD].astype(str) + ":" + frame[cols.ROW].astype(str)
    evaluator = ArmEvaluator(pool.assign(**{cols.ID: keys.to_numpy()}), pd.concat([tune_part, held_out], ignore_index=True), recipe)
    n_tune = len(tune_part)
    rows, decisions_of = [], {}
    for candidate in candidates:
        variant = with_label_filter_strength(frame, candidate.min_self_confidence, require_top_label=candidate.require_top_label)
        decisions = decide(variant, quarantine, candidate.selection, embeddings)
        chosen = decisions[cols.STATUS] == cols.SELECTED
        selected = (decisions.loc[chosen, cols.SHARD].astype(str) + ":" + decisions.loc[chosen, cols.ROW].astype(str)).tolist()
        result = evaluator.train_rows(evaluator.rows_of(selected), candidate.name)
        correct = np.asarray(result.correct, bool)
        rows.append(
            {
                "recipe": candidate.name,
                "tune_accuracy": float(correct[:n_tune].mean()),
                "held_out_accuracy": float(correct[n_tune:].mean()),
                "n_selected": len(selected),
                "n_train": int(result.n_train),
            }
        )
        decisions_of[candidate.name] = decisions
    best = max(range(len(rows)), key=lambda i: (rows[i]["tune_accuracy"], -i))
    for i, row in enumerate(rows):
        row["chosen"] = i == best
    return TuneResult(candidates[best], decisions_of[candidates[best].name], rows, tune_part[cols.ID].tolist(), held_out[cols.ID].tolist())


def tune_build(
    frame: pd.DataFrame,
    quarantine: pd.DataFrame,
    embeddings: np.ndarray | None,
    texts: pa.Array | list[str],
    evaluation: pd.DataFrame | None,
    selection: SelectionConfig,
    min_self_confidence: float = 0.0,
    require_top_label: bool = False,
) -> TuneResult:
    """A build's tune step: the grid around the build's ``selection`` on its pool-scored ``frame``
    (row-aligned with ``texts``). The evaluation file must be labelled throughout."""
    if evaluation is None or cols.LABEL not in evaluation or evaluation[cols.LABEL].isna().any() or not len(evaluation):
        raise ValueError("tune needs a labelled evaluation file (every record with a label)")
    texts = texts.to_pylist() if isinstance(texts, pa.Array) else texts
    pool = pd.DataFrame({cols.ID: frame[cols.ID].to_numpy(), cols.TEXT: texts, cols.LABEL: frame[cols.LABEL].to_numpy()})
    return tune(frame, quarantine, embeddings, pool, evaluation, grid(selection, min_self_confidence, require_top_label))


def tune_table(rows: list[dict[str, Any]]) -> str:
    """The grid as markdown, for the UI and the report."""
    lines = ["| recipe | tune accuracy | held-out accuracy | selected | chosen |", "|---|---:|---:|---:|---|"]
    for row in rows:
        lines.append(
            f"| {row['recipe']} | {row['tune_accuracy']:.4f} | {row['held_out_accuracy']:.4f} | {row['n_selected']} | {'yes' if row['chosen'] else ''} |"
        )
    return "\n".join(lines)
