import numpy as np
import pandas as pd
import pytest

from dataselect.records import QUARANTINED, REJECTED, SELECTED
from dataselect.selection import DECISION_COLUMNS, SelectionConfig, accounting, decide, fuse, normalize
from dataselect.selection.clusters import (
    cluster_balanced,
    coverage_centric_plan,
    kmeans_clusters,
    sensitivity_plan,
    sensitivity_probabilities,
)
from dataselect.selection.sampling import gumbel_top_k


def angles(*degrees):
    radians = np.deg2rad(degrees)
    return np.stack([np.cos(radians), np.sin(radians)], axis=1).astype(np.float32)


# ---------------------------------------------------------------- fusion


def test_rank_normalisation_puts_nan_lowest_and_averages_ties():
    np.testing.assert_allclose(normalize(np.array([3, 1, np.nan, 2.0])), [1, 1 / 3, 0, 2 / 3])
    np.testing.assert_allclose(normalize(np.array([5, 5, 9.0])), [0.25, 0.25, 1])


def test_zscore_normalisation_known_answer():
    z = normalize(np.array([1, 2, 3, np.nan]), "zscore")
    s = np.sqrt(2 / 3)
    np.testing.assert_allclose(z, [-1 / s, 0, 1 / s, -1 / s - 1])
    np.testing.assert_allclose(normalize(np.array([4.0, 4.0]), "zscore"), [0, 0])


def test_fuse_weighted_mean_of_ranks():
    table = pd.DataFrame({"a": [3, 1, np.nan, 2.0], "b": [10, 20, 30, 40.0]})
    # a -> [1, 1/3, 0, 2/3]; b -> [0, 1/3, 2/3, 1]
    np.testing.assert_allclose(fuse(table, {"a": 1, "b": 3}), [0.25, 1 / 3, 0.5, (2 / 3 + 3) / 4])
    np.testing.assert_allclose(fuse(table, {"a": 1, "b": -3}), [0.25, -1 / 6, -0.5, (2 / 3 - 3) / 4])
    np.testing.assert_allclose(fuse(table, {"a": 2, "missing.score": 5}), [1, 1 / 3, 0, 2 / 3])
    np.testing.assert_allclose(fuse(table, {"missing.score": 1}), [0, 0, 0, 0])


# ---------------------------------------------------------------- cluster building blocks


def test_kmeans_clusters_recovers_two_directions():
    vectors = angles(0, 2, 4, 88, 90, 92)
    labels, centroids, distances = kmeans_clusters(vectors, 2, seed=0)
    assert labels[0] == labels[1] == labels[2] != labels[3] == labels[4] == labels[5]
    np.testing.assert_allclose(np.linalg.norm(centroids, axis=1), 1, atol=1e-5)  # spherical
    # middle members sit on their centroid; the outer ones at chord 2 sin(1 deg).
    np.testing.assert_allclose(distances, [2 * np.sin(np.deg2rad(1)), 0, 2 * np.sin(np.deg2rad(1))] * 2, atol=1e-4)


def test_cluster_balanced_equal_quotas_with_redistribution():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    clusters = np.array([0, 0, 0, 0, 1, 2])
    # Round 1: best of each cluster (0, 4, 5); clusters 1 and 2 are then empty, so cluster 0 gets
    # the rest of the budget.
    assert cluster_balanced(scores, clusters, 3).tolist() == [0, 4, 5]
    assert cluster_balanced(scores, clusters, 5).tolist() == [0, 4, 5, 1, 2]
    # A partial round goes to the best-scored clusters.
    assert cluster_balanced(scores, clusters, 2).tolist() == [0, 4]
    assert cluster_balanced(scores, clusters, 99).tolist() == [0, 4, 5, 1, 2, 3]
    # Ties broken by index.
    assert cluster_balanced(np.array([1.0, 1.0, 1.0]), np.array([0, 0, 0]), 2).tolist() == [0, 1]


def test_coverage_centric_strata_known_answer():
    difficulty = np.array([0.0, 0.1, 0.2, 5.0, 9.0, 9.1, 9.2, 9.3, 9.4, 100.0])
    # beta=0.1 prunes the hardest record (index 9). The rest spans [0, 9.4]; 3 strata of width
    # 3.13: {0,1,2}, {3}, {4..8}. Budget 5: stratum {3} (size 1) takes 5//3=1, then {0,1,2} takes
    # 4//2=2, then {4..8} takes the last 2.
    indices, pruned, stratum = coverage_centric_plan(difficulty, 5, beta=0.1, n_strata=3, seed=0)
    assert pruned.tolist() == [False] * 9 + [True]
    assert stratum.tolist() == [0, 0, 0, 1, 2, 2, 2, 2, 2, -1]
    chosen = set(indices.tolist())
    assert len(chosen) == 5 and 3 in chosen
    assert len(chosen & {0, 1, 2}) == 2 and len(chosen & {4, 5, 6, 7, 8}) == 2
    # Pruning never leaves fewer records than the budget.
    assert coverage_centric_plan(difficulty, 10, beta=0.1, n_strata=3)[0].tolist() == list(range(10))
    seeds = {tuple(coverage_centric_plan(difficulty, 5, beta=0.1, n_strata=3, seed=s)[0]) for s in range(10)}
    assert len(seeds) > 1  # sampling within strata is random, per seed


def test_sensitivity_probabilities_known_answer():
    distances = np.array([1.0, 1.0, 0.0, 2.0])
    clusters = np.array([0, 0, 1, 1])
    # cost d^2 = [1, 1, 0, 4]; cluster mean cost [1, 2] -> s = [2, 2, 2, 6] / 12
    np.testing.assert_allclose(sensitivity_probabilities(distances, clusters, uniform_mix=0.0), [1 / 6, 1 / 6, 1 / 6, 1 / 2])
    np.testing.assert_allclose(
        sensitivity_probabilities(distances, clusters, uniform_mix=0.2),
        0.8 * np.array([1 / 6, 1 / 6, 1 / 6, 1 / 2]) + 0.05,
    )
    np.testing.assert_allclose(sensitivity_probabilities(np.zeros(4), clusters), [0.25] * 4)


def test_gumbel_top_k_draw_frequencies_follow_the_weights():
    log_weights = np.log([0.1, 0.2, 0.7])
    draws = np.array([gumbel_top_k(log_weights, 1, seed)[0] for seed in range(3000)])
    np.testing.assert_allclose(np.bincount(draws, minlength=3) / 3000, [0.1, 0.2, 0.7], atol=0.03)
    assert gumbel_top_k(np.array([0.0, np.nan, -np.inf]), 3, 0).tolist() == [0, 1, 2]


def test_sensitivity_sampling_weights_are_inverse_probabilities():
    rng = np.random.default_rng(0)
    vectors = np.concatenate([angles(*rng.normal(0, 5, 30)), angles(*rng.normal(90, 20, 30))])
    indices, weights, probabilities, clusters = sensitivity_plan(vectors, 10, n_clusters=2, seed=0)
    assert indices.tolist() == sensitivity_plan(vectors, 10, 2, seed=0)[0].tolist() and len(set(indices.tolist())) == 10
    np.testing.assert_allclose(weights, 1 / (10 * probabilities[indices]))
    # The spread-out cluster costs more, so each of its members is likelier to be drawn.
    wide = clusters[45]
    assert probabilities[clusters == wide].mean() > probabilities[clusters != wide].mean()


# ---------------------------------------------------------------- decisions


def ten_records() -> tuple[pd.DataFrame, pd.DataFrame]:
    """10 scored records (r0..r9) and 2 quarantined rows: 12 raw records."""
    score = [0.9, 0.1, 0.5, 0.8, 0.3, 0.7, 0.6, 0.2, 0.4, 0.0]
    scores = pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(10)],
            "shard": ["s0"] * 7 + ["s1"] * 3,
            "row": [0, 1, 2, 3, 4, 5, 6, 0, 1, 2],
            "heuristics.keep": [True, True, False, True, True, False, True, True, True, True],
            "heuristics.reason": ["", "", "heuristics: mean_word_length 1.2 < 3", "", "", "heuristics: too short", "", "", "", ""],
            "exact_dup.keep": [True, True, True, True, True, False, True, False, True, None],
            "exact_dup.reason": ["", "", "", "", "", "exact duplicate of r4", "", "exact duplicate of r6", "", ""],
            "relevance.score": score,
            "dsir.score": score,
            "dsir.log_weight": [0.0, -50, -50, 0.0, -50, -50, 0.0, -50, -50, -50],
        }
    ).iloc[::-1]  # input order must not matter
    quarantine = pd.DataFrame({"shard": ["s1", "s0"], "row": [3, 7], "id": ["q1", None], "error": ["missing text", "invalid JSON"]})
    return scores, quarantine


# Fused (rank over all 10 scored rows, (rank - 1) / 9): r0 1, r3 8/9, r5 7/9, r6 6/9, r2 5/9,
# r8 4/9, r4 3/9, r7 2/9, r1 1/9, r9 0. Survivors of the filters: r0 r1 r3 r4 r6 r8 r9.


def test_known_answer_decision_table():
    scores, quarantine = ten_records()
    decisions = decide(scores, quarantine, SelectionConfig(budget=0.25))  # floor(0.25 * 12) = 3
    assert list(decisions.columns[: len(DECISION_COLUMNS)]) == DECISION_COLUMNS
    assert "heuristics.reason" in decisions.columns and "dsir.log_weight" in decisions.columns
    assert list(zip(decisions.shard, decisions.row)) == [("s0", r) for r in range(8)] + [("s1", r) for r in range(4)]
    table = decisions.set_index("id")
    expected = {
        "r0": (SELECTED, "top_k", "top_k: fused 1.00, rank 1 <= 3"),
        "r1": (REJECTED, "top_k", "below budget cutoff: fused 0.11 < 0.67 (rank 6 > 3)"),
        "r2": (REJECTED, "heuristics", "heuristics: mean_word_length 1.2 < 3"),
        "r3": (SELECTED, "top_k", "top_k: fused 0.89, rank 2 <= 3"),
        "r4": (REJECTED, "top_k", "below budget cutoff: fused 0.33 < 0.67 (rank 5 > 3)"),
        "r5": (REJECTED, "heuristics", "heuristics: too short"),  # first failing filter decides
        "r6": (SELECTED, "top_k", "top_k: fused 0.67, rank 3 <= 3"),
        "s0:7": (QUARANTINED, "ingest", "invalid JSON"),
        "r7": (REJECTED, "exact_dup", "exact duplicate of r6"),
        "r8": (REJECTED, "top_k", "below budget cutoff: fused 0.44 < 0.67 (rank 4 > 3)"),
        "r9": (REJECTED, "top_k", "below budget cutoff: fused 0.00 < 0.67 (rank 7 > 3)"),  # null keep passes
        "q1": (QUARANTINED, "ingest", "missing text"),
    }
    for record_id, (status, decided_by, reason) in expected.items():
        assert tuple(table.loc[record_id, ["status", "decided_by", "reason"]]) == (status, decided_by, reason), record_id
    np.testing.assert_allclose(table.loc["r8", "fused_score"], 4 / 9)
    assert np.isnan(table.loc["q1", "fused_score"]) and pd.isna(table.loc["q1", "relevance.score"])
    assert (table.loc[["r0", "r3", "r6"], "sample_weight"] == 1.0).all()
    assert accounting(decisions) == {
        "raw": 12,
        "selected": 3,
        "rejected": 7,
        "quarantined": 2,
        "rejections_by_reason": {"heuristics": 2, "exact_dup": 1, "top_k": 4},
    }


def test_hard_filter_order_and_selection():
    scores, quarantine = ten_records()
    decisions = decide(scores, quarantine, SelectionConfig(budget=0.25, hard_filters=["exact_dup", "heuristics"]))
    table = decisions.set_index("id")
    assert tuple(table.loc["r5", ["decided_by", "reason"]]) == ("exact_dup", "exact duplicate of r4")
    only_dup = decide(scores, quarantine, SelectionConfig(budget=0.25, hard_filters=["exact_dup"])).set_index("id")
    assert only_dup.loc["r2", "status"] == REJECTED and only_dup.loc["r2", "decided_by"] == "top_k"
    none = decide(scores, quarantine, SelectionConfig(budget=0.25, hard_filters=[])).set_index("id")
    assert set(none.index[none.status == SELECTED]) == {"r0", "r3", "r5"}
    with pytest.raises(ValueError, match="nope"):
        decide(scores, quarantine, SelectionConfig(hard_filters=["nope"]))


def test_budget_as_fraction_and_count_counts_all_raw_records():
    scores, quarantine = ten_records()
    selected = lambda config: set(decide(scores, quarantine, config).query("status == 'selected'").id)  # noqa: E731
    assert selected(SelectionConfig(budget=2)) == {"r0", "r3"}
    assert selected(SelectionConfig(budget=0.5)) == {"r0", "r3", "r6", "r8", "r4", "r1"}  # floor(6.0)
    assert selected(SelectionConfig(budget=0.49)) == {"r0", "r3", "r6", "r8", "r4"}  # floor(5.88)
    assert len(selected(SelectionConfig(budget=100))) == 7  # every survivor, no more
    assert len(selected(SelectionConfig(budget=1.0))) == 7
    assert selected(SelectionConfig(budget=0.05)) == set()  # floor(0.6) = 0


def test_ties_are_broken_by_id():
    scores = pd.DataFrame({"id": ["b", "a", "c"], "shard": ["s"] * 3, "row": [0, 1, 2], "relevance.score": [1.0] * 3})
    empty = pd.DataFrame({"shard": [], "row": [], "error": []})
    decisions = decide(scores, empty, SelectionConfig(budget=2, weights={"relevance.score": 1.0}))
    assert decisions.set_index("id").status.to_dict() == {"b": SELECTED, "a": SELECTED, "c": REJECTED}
    assert decisions.set_index("id").loc["c", "reason"] == "below budget cutoff: fused 0.50 = 0.50 (rank 3 > 2)"


def quota_records():
    """Six labelled records: "a" ranks highest by relevance, but the target's label mix is 2/3 "b"."""
    scores = pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(6)],
            "shard": ["s"] * 6,
            "row": range(6),
            "label": ["a", "a", "a", "b", "b", "c"],
            "relevance.score": [0.9, 0.8, 0.7, 0.6, 0.5, 0.95],
            "label_prior.target_share": [1 / 3, 1 / 3, 1 / 3, 2 / 3, 2 / 3, 0.0],
        }
    )
    return scores, pd.DataFrame({"shard": [], "row": [], "error": []})


def test_label_quotas_follow_the_target_label_mix():
    scores, empty = quota_records()
    config = SelectionConfig(budget=3, weights={"relevance.score": 1.0})
    table = decide(scores, empty, config).set_index("id")
    # quotas: a 1, b 2, c (share 0) none, although r5 has the best score
    assert set(table.index[table.status == SELECTED]) == {"r0", "r3", "r4"}
    assert table.loc["r0", "reason"].startswith("top_k in label 'a' (quota 1)")
    assert table.loc["r5", "reason"].startswith("label 'c' has no quota")
    # No quota column (or switched off): one ranking over every label.
    plain = decide(scores, empty, SelectionConfig(budget=3, weights={"relevance.score": 1.0}, label_quota_column=None))
    assert set(plain.query("status == 'selected'").id) == {"r5", "r0", "r1"}
    absent = decide(scores.drop(columns="label_prior.target_share"), empty, config)
    assert set(absent.query("status == 'selected'").id) == {"r5", "r0", "r1"}


def test_label_quotas_short_of_candidates_leave_the_rest_to_the_best_of_the_others():
    scores, empty = quota_records()
    # quotas of 5: a 2 (of 3), b 3 (of 2 candidates): b's missing one goes to the best remaining record (r5)
    table = decide(scores, empty, SelectionConfig(budget=5, weights={"relevance.score": 1.0})).set_index("id")
    assert set(table.index[table.status == SELECTED]) == {"r0", "r1", "r3", "r4", "r5"}
    assert table.loc["r5", "reason"].startswith("top_k filling quotas short of candidates")


def test_threshold_policy():
    scores, quarantine = ten_records()
    table = decide(scores, quarantine, SelectionConfig(budget=2, policy="threshold", threshold=0.5)).set_index("id")
    assert set(table.index[table.status == SELECTED]) == {"r0", "r3"}
    assert table.loc["r6", "reason"] == "above threshold but below budget cutoff: fused 0.67 < 0.89 (rank 3 > 2)"
    assert table.loc["r8", "reason"] == "fused 0.44 < threshold 0.50"
    wide = decide(scores, quarantine, SelectionConfig(budget=0.5, policy="threshold", threshold=0.5))
    assert set(wide.query("status == 'selected'").id) == {"r0", "r3", "r6"}


def test_gumbel_top_k_policy_and_seed():
    scores, quarantine = ten_records()
    config = SelectionConfig(budget=3, policy="gumbel_top_k")
    table = decide(scores, quarantine, config).set_index("id")
    # log weight 0 vs -50: the three 0s win unless a Gumbel gap exceeds 50 (p ~ e^-50).
    assert set(table.index[table.status == SELECTED]) == {"r0", "r3", "r6"}
    assert table.loc["r1", "reason"] == "not drawn by gumbel_top_k on dsir.log_weight (log weight -50.00; 3 of 7 drawn)"
    flat = scores.assign(**{"dsir.log_weight": 0.0})
    draws = {
        seed: frozenset(
            decide(flat, quarantine, SelectionConfig(budget=3, policy="gumbel_top_k", seed=seed)).query("status == 'selected'").id
        )
        for seed in range(4)
    }
    assert len(set(draws.values())) > 1  # the seed changes the draw
    again = frozenset(decide(flat, quarantine, SelectionConfig(budget=3, policy="gumbel_top_k", seed=0)).query("status == 'selected'").id)
    assert again == draws[0]
    with pytest.raises(ValueError, match="log-weight column"):
        decide(scores.drop(columns="dsir.log_weight"), quarantine, config)


def embeddings_for(scores: pd.DataFrame) -> np.ndarray:
    """r0, r3, r6 (and the rejected r2, r5, r7) point one way; r1, r4, r8, r9 the other."""
    direction = {f"r{i}": (0 if i in (0, 2, 3, 5, 6, 7) else 90) + i * 0.5 for i in range(10)}
    return angles(*[direction[i] for i in scores.id])


def test_cluster_balanced_policy_takes_from_both_clusters():
    scores, quarantine = ten_records()
    config = SelectionConfig(budget=3, policy="cluster_balanced", n_clusters=2)
    table = decide(scores, quarantine, config, embeddings=embeddings_for(scores)).set_index("id")
    # Round 1: r0 (best of cluster A) and r8 (best of B); round 2's best is r3 (0.89 > r4's 0.33).
    assert set(table.index[table.status == SELECTED]) == {"r0", "r3", "r8"}
    assert table.loc["r6", "reason"].endswith("quota of 2 filled: rank 3 in cluster (fused 0.67)")
    with pytest.raises(ValueError, match="embeddings"):
        decide(scores, quarantine, config)


def test_cluster_balanced_candidate_factor_balances_only_the_best_candidates():
    scores, quarantine = ten_records()
    # Without the factor, cluster B's best (r8) takes a slot; with factor 1 only the top-3 by fused
    # score (r0, r3, r6 of cluster A) are eligible, so quotas never reach into cluster B.
    config = SelectionConfig(budget=3, policy="cluster_balanced", n_clusters=2, candidate_factor=1.0)
    table = decide(scores, quarantine, config, embeddings=embeddings_for(scores)).set_index("id")
    assert set(table.index[table.status == SELECTED]) == {"r0", "r3", "r6"}
    assert table.loc["r8", "reason"].startswith("outside the top 3 candidates by fused score")


def test_ccs_policy_on_a_difficulty_column():
    scores, quarantine = ten_records()
    difficulty = {"r0": 0.0, "r3": 0.1, "r6": 5.0, "r8": 9.0, "r4": 9.1, "r1": 9.2, "r9": 100.0}
    scores["toy.difficulty"] = scores.id.map(difficulty)
    config = SelectionConfig(budget=3, policy="ccs", difficulty_column="toy.difficulty", ccs_beta=0.15, ccs_strata=3)
    table = decide(scores, quarantine, config).set_index("id")
    chosen = set(table.index[table.status == SELECTED])
    # r9 pruned (hardest 15% of 7 = 1); strata {r0, r3}, {r6}, {r8, r4, r1} get 1 each.
    assert table.loc["r9", "reason"] == "ccs: pruned among the hardest 15% (difficulty = toy.difficulty 100.00)"
    assert len(chosen) == 3 and "r6" in chosen
    assert len(chosen & {"r0", "r3"}) == 1 and len(chosen & {"r8", "r4", "r1"}) == 1
    # Default difficulty is -fused: the two lowest fused survivors (r1, r9) are pruned at beta 0.3.
    table = decide(scores, quarantine, SelectionConfig(budget=3, policy="ccs", ccs_beta=0.3)).set_index("id")
    assert table.loc[["r1", "r9"], "reason"].str.startswith("ccs: pruned").all()


def test_sensitivity_policy_reports_weights():
    scores, quarantine = ten_records()
    config = SelectionConfig(budget=3, policy="sensitivity", n_clusters=2)
    decisions = decide(scores, quarantine, config, embeddings=embeddings_for(scores))
    chosen = decisions[decisions.status == SELECTED]
    assert len(chosen) == 3 and (chosen.sample_weight > 0).all() and np.isfinite(chosen.sample_weight).all()
    assert decisions[decisions.status != SELECTED].sample_weight.isna().all()
    assert chosen.reason.str.startswith("drawn by sensitivity sampling").all()
    pd.testing.assert_frame_equal(decisions, decide(scores, quarantine, config, embeddings=embeddings_for(scores)))
    with pytest.raises(ValueError, match="embeddings"):
        decide(scores, quarantine, config)


def test_deterministic_and_notes_missing_weight_columns():
    scores, quarantine = ten_records()
    config = SelectionConfig(budget=0.25, weights={"relevance.score": 1.0, "perplexity.score": -1.0})
    first = decide(scores, quarantine, config)
    pd.testing.assert_frame_equal(first, decide(scores, quarantine, config))
    assert first.attrs["notes"] == ["weighted score columns not in the table, ignored: ['perplexity.score']"]
    totals = accounting(first)
    assert totals["raw"] == totals["selected"] + totals["rejected"] + totals["quarantined"] == 12
    assert sum(totals["rejections_by_reason"].values()) == totals["rejected"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"budget": 0}, "budget"),
        ({"budget": -0.1}, "budget"),
        ({"budget": 2.5}, "whole"),
        ({"policy": "best"}, "unknown policy"),
        ({"policy": "threshold"}, "threshold"),
        ({"normalization": "minmax"}, "normalization"),
        ({"ccs_beta": 1.0}, "ccs_beta"),
    ],
)
def test_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SelectionConfig(**kwargs)
