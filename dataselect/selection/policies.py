"""Selection policies: which of the records that passed every hard filter fill the budget.

- ``top_k``: highest fused score (the standard "score and keep the top fraction" filter); with a
  label-quota column (the target's estimated label distribution, ``label_prior.target_share``),
  each label gets its share of the budget, filled by fused score within the label.
- ``gumbel_top_k``: importance resampling without replacement on a log-weight column
  (DSIR, Xie et al. 2023), so the selection follows the target distribution instead of
  collapsing onto its mode.
- ``threshold``: every record with fused score >= ``threshold``, capped at the budget.
- ``cluster_balanced``: equal per-cluster quotas over k-means clusters of the embeddings
  (Diversify and Conquer, Zhang et al. 2024 style).
- ``ccs``: Coverage-centric Coreset Selection (Zheng et al. 2023) over a difficulty score.
- ``sensitivity``: clustering-based sensitivity sampling (Axiotis et al. 2024), with weights.

Each policy returns, for every candidate, whether it was selected, a one-line reason, and a
sample weight (1 for ordinary selections, the importance weight for sensitivity sampling).
Candidates arrive sorted by id, so "ties broken by index" means "ties broken by id".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dataselect.build_inputs import check_budget
from dataselect.records import LABEL
from dataselect.selection.clusters import (
    cluster_balanced,
    coverage_centric_plan,
    kmeans_clusters,
    rank_within_clusters,
    sensitivity_plan,
)
from dataselect.selection.fusion import NORMALIZATIONS
from dataselect.selection.sampling import gumbel_top_k

# What the selection trains: a classifier needs a label on every record; a language model reads text only.
TASKS = ("classification", "language_modeling")


def _default_weights() -> dict[str, float]:
    # Three target-vs-pool views (an embedding classifier, an n-gram classifier and DSIR's hashed
    # n-gram importance weight) plus half a weight on the label's out-of-fold probability, all
    # rank-averaged; with the label quotas and the label-noise filter's top-label rule this had the
    # best dev accuracy averaged over both benchmark corpora, never chosen on their test splits:
    # see the dev grid in benchmarks/results/methods.md (several recipes lie within 0.005 of it,
    # inside one standard error of the dev accuracy, so small changes elsewhere reorder them).
    return {"relevance.score": 1.0, "ngram_relevance.score": 1.0, "dsir.score": 1.0, "label_noise.score": 0.5}


@dataclass
class SelectionConfig:
    """How ``decide`` turns scores into selected/rejected records."""

    budget: float = 0.1  # <= 1: fraction of ALL raw records (quarantined included); > 1: a count
    policy: str = "top_k"  # one of POLICIES
    weights: dict[str, float] = field(default_factory=_default_weights)  # score column -> weight
    normalization: str = "rank"  # "rank" or "zscore", per column before weighting
    hard_filters: list[str] | None = None  # scorer names whose <name>.keep applies; None: all present
    threshold: float | None = None  # fused-score cut for policy "threshold"
    seed: int = 0  # every random choice (Gumbel noise, k-means, CCS sampling)
    n_clusters: int | None = None  # cluster policies; None: round(sqrt(candidates)), in [1, 1024]
    ccs_beta: float = 0.1  # CCS: fraction of hardest candidates pruned first
    ccs_strata: int = 50  # CCS: number of equal-width difficulty strata
    difficulty_column: str | None = None  # CCS difficulty (higher = harder); None: -fused score
    log_weight_column: str = "dsir.log_weight"  # gumbel_top_k's log importance weight
    sensitivity_power: float = 2.0  # sensitivity: cost = distance ** power (2 = k-means cost)
    sensitivity_uniform_mix: float = 0.1  # sensitivity: uniform share of p (bounds weights by n/(0.1 k))
    kmeans_niter: int = 20  # cluster policies: k-means iterations
    candidate_factor: float | None = None  # cluster_balanced: balance among the top factor*k by fused; None: all
    task: str = "language_modeling"  # one of TASKS; "classification" rejects unlabelled records before the budget
    # top_k: per-label quotas proportional to this column (the target's share of each record's label);
    # None, or the column absent or empty: one ranking over all labels. Chosen on the benchmarks' dev splits.
    label_quota_column: str | None = "label_prior.target_share"

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; use one of {TASKS}")
        check_budget(self.budget)
        if self.policy not in POLICIES:
            raise ValueError(f"unknown policy {self.policy!r}; use one of {tuple(POLICIES)}")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"unknown normalization {self.normalization!r}; use one of {NORMALIZATIONS}")
        if self.policy == "threshold" and self.threshold is None:
            raise ValueError("policy 'threshold' needs a threshold")
        if not 0.0 <= self.ccs_beta < 1.0:
            raise ValueError(f"ccs_beta must be in [0, 1), got {self.ccs_beta}")
        if self.ccs_strata < 1:
            raise ValueError(f"ccs_strata must be >= 1, got {self.ccs_strata}")
        if self.n_clusters is not None and self.n_clusters < 1:
            raise ValueError(f"n_clusters must be >= 1, got {self.n_clusters}")

    def budget_count(self, n_raw: int) -> int:
        """Records the budget allows out of ``n_raw`` raw records (fractions round down)."""
        if self.budget <= 1:
            return int(math.floor(self.budget * n_raw + 1e-9))
        return int(self.budget)

    def clusters_for(self, n_candidates: int) -> int:
        if self.n_clusters is not None:
            return self.n_clusters
        return int(np.clip(round(math.sqrt(max(n_candidates, 1))), 1, 1024))


@dataclass
class PolicyResult:
    selected: np.ndarray  # bool (m,)
    reason: np.ndarray  # object (m,)
    sample_weight: np.ndarray  # float64 (m,); NaN where not selected


def _rank_order(fused: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order by fused score descending (ties: lower index = smaller id first) and 1-based ranks."""
    order = np.lexsort((np.arange(len(fused)), -fused))
    ranks = np.empty(len(fused), np.int64)
    ranks[order] = np.arange(1, len(fused) + 1)
    return order, ranks


def _result(selected: np.ndarray, reason: list[str], weights: np.ndarray | None = None) -> PolicyResult:
    sample_weight = np.where(selected, 1.0 if weights is None else weights, np.nan)
    return PolicyResult(selected, np.array(reason, dtype=object), sample_weight)


def _top_k(fused: np.ndarray, k: int, eligible: np.ndarray, label: str) -> tuple[np.ndarray, list[str]]:
    order, ranks = _rank_order(np.where(eligible, fused, -np.inf))
    chosen = order[: min(k, int(eligible.sum()))]
    selected = np.zeros(len(fused), bool)
    selected[chosen] = True
    cutoff = fused[chosen[-1]] if len(chosen) else math.nan
    reason = []
    for is_selected, ok, value, rank in zip(selected.tolist(), eligible.tolist(), fused.tolist(), ranks.tolist()):
        if is_selected:
            reason.append(f"{label}: fused {value:.2f}, rank {rank} <= {k}")
        elif not ok:
            reason.append("")  # filled by the caller
        elif k == 0:
            reason.append(f"budget allows 0 records: fused {value:.2f}")
        else:
            sign = "<" if value < cutoff else "="
            reason.append(f"below budget cutoff: fused {value:.2f} {sign} {cutoff:.2f} (rank {rank} > {k})")
    return selected, reason


def label_quotas(labels: np.ndarray, shares: np.ndarray, k: int) -> dict[str, int] | None:
    """Budget per label, proportional to its share (largest remainder); None when no label has a
    positive share (then there is nothing to follow)."""
    known = pd.notna(labels) & np.isfinite(shares)
    per_label = pd.Series(shares[known]).groupby(labels[known].astype(str)).max()
    per_label = per_label[per_label > 0]
    if per_label.empty:
        return None
    exact = per_label.to_numpy() * k / per_label.sum()
    quota = np.floor(exact).astype(int)
    # Largest remainders first; ties by label name (the groupby order).
    quota[np.argsort(-(exact - quota), kind="stable")[: k - quota.sum()]] += 1
    return dict(zip(per_label.index.tolist(), quota.tolist()))


def _top_k_policy(
    config: SelectionConfig, candidates: pd.DataFrame, fused: np.ndarray, k: int, embeddings: np.ndarray | None
) -> PolicyResult:
    column = config.label_quota_column
    quotas = None
    if column is not None and column in candidates.columns and LABEL in candidates.columns:
        labels = candidates[LABEL].to_numpy(dtype=object)
        shares = pd.to_numeric(candidates[column], errors="coerce").to_numpy(np.float64, na_value=np.nan)
        quotas = label_quotas(labels, shares, k)
    if quotas is None:
        selected, reason = _top_k(fused, k, np.ones(len(fused), bool), "top_k")
        return _result(selected, reason)
    # Each label's quota by fused score within the label (ranks in the reasons are within it); a
    # label short of candidates leaves its quota to the best of the rest, so the budget is filled.
    label_of = np.array(["" if pd.isna(v) else str(v) for v in labels], dtype=object)
    selected = np.zeros(len(fused), bool)
    reason = np.full(len(fused), "", dtype=object)
    for label, quota in quotas.items():
        members = np.flatnonzero(label_of == label)
        chosen, why = _top_k(fused[members], quota, np.ones(len(members), bool), f"top_k in label {label!r} (quota {quota})")
        selected[members], reason[members] = chosen, why
    others = np.flatnonzero(~selected)
    rest, why = _top_k(fused[others], k - int(selected.sum()), np.ones(len(others), bool), "top_k filling quotas short of candidates")
    no_quota = ~np.isin(label_of[others], list(quotas))
    reason[others[rest]] = np.asarray(why, dtype=object)[rest]
    for i in np.flatnonzero(no_quota & ~rest):
        reason[others[i]] = f"label {label_of[others[i]] or 'none'!r} has no quota: {why[i]}"
    selected[others[rest]] = True
    return _result(selected, reason.tolist())


def _threshold(config: SelectionConfig, candidates: pd.DataFrame, fused: np.ndarray, k: int, embeddings: np.ndarray | None) -> PolicyResult:
    above = fused >= config.threshold
    selected, reason = _top_k(fused, k, above, "threshold")
    for i in np.flatnonzero(~above):
        reason[i] = f"fused {fused[i]:.2f} < threshold {config.threshold:.2f}"
    for i in np.flatnonzero(above & ~selected):
        reason[i] = "above threshold but " + reason[i]
    return _result(selected, reason)


def _gumbel_top_k(
    config: SelectionConfig, candidates: pd.DataFrame, fused: np.ndarray, k: int, embeddings: np.ndarray | None
) -> PolicyResult:
    m = len(candidates)
    column = config.log_weight_column
    if column not in candidates.columns:
        raise ValueError(f"policy 'gumbel_top_k' needs the log-weight column {column!r} in the scores table")
    log_weight = pd.to_numeric(candidates[column], errors="coerce").to_numpy(np.float64, na_value=np.nan)
    selected = np.zeros(m, bool)
    selected[gumbel_top_k(log_weight, k, config.seed)] = True
    reason = [
        f"drawn by gumbel_top_k on {column} (log weight {w:.2f})"
        if s
        else f"not drawn by gumbel_top_k on {column} (log weight {w:.2f}; {k} of {m} drawn)"
        for s, w in zip(selected.tolist(), log_weight.tolist())
    ]
    return _result(selected, reason)


def _cluster_balanced(
    config: SelectionConfig, candidates: pd.DataFrame, fused: np.ndarray, k: int, embeddings: np.ndarray | None
) -> PolicyResult:
    m = len(candidates)
    # Optionally balance only among the best candidate_factor * k by fused score, so the
    # quotas spread the budget over the relevant region instead of over the whole pool.
    eligible = np.arange(m)
    if config.candidate_factor is not None:
        eligible = np.sort(np.argsort(-fused, kind="stable")[: min(m, math.ceil(config.candidate_factor * k))])
    n_clusters = config.clusters_for(len(eligible))
    sub_clusters, _, _ = kmeans_clusters(embeddings[eligible], n_clusters, seed=config.seed, niter=config.kmeans_niter)
    clusters = np.full(m, -1, np.int64)
    clusters[eligible] = sub_clusters
    selected = np.zeros(m, bool)
    selected[eligible[cluster_balanced(fused[eligible], sub_clusters, k)]] = True
    rank = np.zeros(m, np.int64)
    rank[eligible] = rank_within_clusters(fused[eligible], sub_clusters) + 1
    quota = np.bincount(sub_clusters, weights=selected[eligible], minlength=n_clusters).astype(np.int64)
    reason = [
        f"outside the top {len(eligible)} candidates by fused score (fused {f:.2f})"
        if c < 0
        else f"cluster {c}: rank {r} within its quota of {quota[c]} (fused {f:.2f})"
        if s
        else f"cluster {c} quota of {quota[c]} filled: rank {r} in cluster (fused {f:.2f})"
        for s, c, r, f in zip(selected.tolist(), clusters.tolist(), rank.tolist(), fused.tolist())
    ]
    return _result(selected, reason)


def _ccs(config: SelectionConfig, candidates: pd.DataFrame, fused: np.ndarray, k: int, embeddings: np.ndarray | None) -> PolicyResult:
    column = config.difficulty_column
    if column is None:
        difficulty = -fused  # low fused score = "hard" (least wanted) end of the range
        described = "difficulty = -fused"
    elif column in candidates.columns:
        difficulty = pd.to_numeric(candidates[column], errors="coerce").to_numpy(np.float64, na_value=np.nan)
        described = f"difficulty = {column}"
    else:
        raise ValueError(f"policy 'ccs' needs the difficulty column {column!r} in the scores table")
    indices, pruned, stratum = coverage_centric_plan(difficulty, k, config.ccs_beta, config.ccs_strata, config.seed)
    selected = np.zeros(len(candidates), bool)
    selected[indices] = True
    taken = np.bincount(stratum[selected], minlength=config.ccs_strata)
    size = np.bincount(stratum[stratum >= 0], minlength=config.ccs_strata)
    reason = []
    for s, p, st, d in zip(selected.tolist(), pruned.tolist(), stratum.tolist(), difficulty.tolist()):
        if p:
            reason.append(f"ccs: pruned among the hardest {config.ccs_beta:.0%} ({described} {d:.2f})")
        elif s:
            reason.append(f"ccs: sampled from stratum {st} ({taken[st]} of {size[st]} taken)")
        else:
            reason.append(f"ccs: not sampled from stratum {st} ({taken[st]} of {size[st]} taken)")
    return _result(selected, reason)


def _sensitivity(
    config: SelectionConfig, candidates: pd.DataFrame, fused: np.ndarray, k: int, embeddings: np.ndarray | None
) -> PolicyResult:
    m = len(candidates)
    indices, weights, probability, clusters = sensitivity_plan(
        embeddings,
        k,
        config.clusters_for(m),
        config.seed,
        config.sensitivity_power,
        config.kmeans_niter,
        config.sensitivity_uniform_mix,
    )
    selected = np.zeros(m, bool)
    selected[indices] = True
    sample_weight = np.ones(m)
    sample_weight[indices] = weights
    reason = [
        f"drawn by sensitivity sampling (p={p:.2g}, weight {w:.2f}, cluster {c})"
        if s
        else f"not drawn by sensitivity sampling (p={p:.2g}, cluster {c}; {k} of {m} drawn)"
        for s, p, w, c in zip(selected.tolist(), probability.tolist(), sample_weight.tolist(), clusters.tolist())
    ]
    return _result(selected, reason, sample_weight)


@dataclass(frozen=True)
class Policy:
    """A selection policy: ``select(config, candidates, fused, k, embeddings) -> PolicyResult``."""

    select: Callable[[SelectionConfig, pd.DataFrame, np.ndarray, int, np.ndarray | None], PolicyResult]
    needs_embeddings: bool = False  # clusters the candidates' embeddings


POLICIES: dict[str, Policy] = {
    "top_k": Policy(_top_k_policy),
    "gumbel_top_k": Policy(_gumbel_top_k),
    "threshold": Policy(_threshold),
    "cluster_balanced": Policy(_cluster_balanced, needs_embeddings=True),
    "ccs": Policy(_ccs),
    "sensitivity": Policy(_sensitivity, needs_embeddings=True),
}


def run_policy(
    config: SelectionConfig,
    candidates: pd.DataFrame,
    fused: np.ndarray,
    k: int,
    embeddings: np.ndarray | None = None,
) -> PolicyResult:
    """Apply ``config.policy`` to ``candidates`` (sorted by id) with their ``fused`` scores.

    ``embeddings`` (row-aligned with ``candidates``) are required by the cluster policies.
    """
    m = len(candidates)
    k = int(min(max(k, 0), m))
    policy = POLICIES[config.policy]
    if policy.needs_embeddings and embeddings is None:
        raise ValueError(f"policy {config.policy!r} clusters the embeddings: pass embeddings= (row-aligned with scores)")
    if embeddings is not None and len(embeddings) != m:
        raise ValueError(f"{len(embeddings)} embeddings for {m} candidates")
    return policy.select(config, candidates, fused, k, embeddings)
