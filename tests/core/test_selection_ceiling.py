"""The ground-truth ceiling benchmark on small pools: its perfect records are what
the ground truth says, and its ground-truth-filtered selection holds only them."""

import numpy as np

from benchmarks.methods import ALL_FILTERS, prepare_corpus, quick_config
from benchmarks.newsgroups import IN_TARGET
from benchmarks.selection_ceiling import default_with_ground_truth, perfect_mask, render, run_corpus
from dataselect.corruption import IS_FLIPPED, IS_JUNK, SOURCE_ID


def test_perfect_records_are_clean_in_target_and_one_per_family(amazon_dir, tmp_path):
    config = quick_config()
    config.work_dir = tmp_path
    config, ctx, _, _ = prepare_corpus(config, "amazon", amazon_dir, lambda line: None, dev_only=True)
    mask = perfect_mask(ctx)
    truth = ctx.truth.loc[ctx.frame["id"].astype(str)]
    perfect = truth[mask]
    assert perfect[IN_TARGET].all() and not perfect[IS_FLIPPED].any() and not perfect[IS_JUNK].any()
    assert perfect[SOURCE_ID].is_unique
    clean = truth[truth[IN_TARGET] & ~truth[IS_FLIPPED] & ~truth[IS_JUNK]]
    assert mask.sum() == clean[SOURCE_ID].nunique() > 0
    # The pool holds planted copies of clean target records: the mask drops them.
    assert len(clean) > mask.sum()

    selections = default_with_ground_truth(ctx, config, mask)
    only_perfect = set(ctx.frame["id"].astype(str)[mask])
    with_truth_filters = selections["default recipe, ground-truth filters"]
    assert len(with_truth_filters) == min(ctx.k, mask.sum()) and set(with_truth_filters) <= only_perfect
    # Ground-truth ranking after the default's own filters: every selected record passed them.
    passed = ctx.frame.set_index("id")[[f"{name}.keep" for name in ALL_FILTERS]].all(axis=1)
    ranked = selections["default recipe's filters, ground-truth ranking"]
    assert passed.loc[ranked].all()
    # Per label (the quotas), no out-of-target record is taken while an in-target one that passed is left.
    labels = ctx.frame.set_index("id")["label"].astype(str)
    in_target = ctx.truth[IN_TARGET]
    chosen = set(ranked)
    for label in labels.unique():
        eligible = list(passed.index[passed & (labels == label)])
        left_in_target = any(in_target[i] and i not in chosen for i in eligible)
        took_outside = any(not in_target[i] for i in eligible if i in chosen)
        assert not (left_in_target and took_outside), label


def test_ceiling_run_renders_draw_spreads(newsgroups_dir, tmp_path):
    config = quick_config()
    config.work_dir = tmp_path
    result = run_corpus(config, "newsgroups", draws=3, path=newsgroups_dir)
    assert len(result["perfect"]) == len(result["oracle"]) == 3
    assert all(0.0 <= acc <= 1.0 for pair in result["perfect"] for acc in pair)
    # Different draws of perfect records train different models.
    assert len({pair for pair in result["perfect"]}) > 1
    assert [row["arm"] for row in result["rows"]][0] == "default recipe"
    assert np.isclose(result["rows"][1]["in_target"], 1.0)
    markdown = render([result], "python -m benchmarks.selection_ceiling")
    assert "| random perfect records from the pool | 3 |" in markdown and "of 3 |" in markdown
