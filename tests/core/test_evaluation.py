"""Evaluation recipes and arms: known answers on small synthetic data, one real 20 Newsgroups check."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import SGDClassifier

from dataselect import tfidf as tfidf_module
from dataselect.evaluation import (
    ABLATION_COLUMNS,
    SWEEP_COLUMNS,
    ArmEvaluator,
    Config,
    _TermCounts,
    bootstrap_accuracy_interval,
    bootstrap_mean_interval,
    compare_builds,
    headline_rows,
    paired_difference_interval,
)

CLASSES = ["alpha", "beta", "gamma", "delta"]


def train_and_evaluate(recipe, train_texts, train_labels, eval_texts, eval_labels, train_embeddings=None, eval_embeddings=None):
    """The recipe trained on one whole training set, through the report's ArmEvaluator."""
    pool = pd.DataFrame({"id": [str(i) for i in range(len(train_labels))], "text": list(train_texts), "label": list(train_labels)})
    evaluation = pd.DataFrame({"text": list(eval_texts), "label": list(eval_labels)})
    evaluator = ArmEvaluator(pool, evaluation, recipe, train_embeddings, eval_embeddings)
    return evaluator.train_rows(np.arange(len(pool)), arm="subset")


def make_documents(rng, n, label_noise):
    """Each document: 3 words from its class vocabulary + 6 shared words; noisy ones get a random label."""
    shared = [f"common{i}" for i in range(40)]
    texts, labels = [], []
    for i in range(n):
        c = i % len(CLASSES)
        words = list(rng.choice([f"{CLASSES[c]}{j}" for j in range(15)], 3)) + list(rng.choice(shared, 6))
        texts.append(" ".join(words))
        labels.append(CLASSES[rng.integers(len(CLASSES))] if rng.random() < label_noise else CLASSES[c])
    return texts, labels


@pytest.fixture(scope="module")
def clean_and_noisy():
    """160 clean in-domain records (c*) and 480 with random labels (n*); a clean evaluation set."""
    rng = np.random.default_rng(0)
    clean_texts, clean_labels = make_documents(rng, 160, 0.0)
    noisy_texts, noisy_labels = make_documents(rng, 480, 1.0)
    pool = pd.DataFrame(
        {
            "id": [f"c{i}" for i in range(160)] + [f"n{i}" for i in range(480)],
            "text": clean_texts + noisy_texts,
            "label": clean_labels + noisy_labels,
        }
    )
    eval_texts, eval_labels = make_documents(rng, 400, 0.0)
    return pool, pd.DataFrame({"text": eval_texts, "label": eval_labels})


@pytest.fixture(scope="module")
def evaluator(clean_and_noisy):
    pool, eval_set = clean_and_noisy
    return ArmEvaluator(pool, eval_set)


@pytest.mark.parametrize("weigh_rows", [65_536, 7])  # 7: the arms' rows are weighed in blocks
def test_cached_tfidf_equals_tfidf_vectorizer_fitted_on_the_subset(monkeypatch, weigh_rows):
    monkeypatch.setattr(tfidf_module, "WEIGH_ROWS", weigh_rows)
    rng = np.random.default_rng(1)
    vocabulary = [f"w{i}" for i in range(60)]
    pool = [" ".join(rng.choice(vocabulary, rng.integers(3, 12))) for _ in range(120)]
    evaluation = [" ".join(rng.choice(vocabulary + ["unseen"], 8)) for _ in range(30)]
    rows = np.sort(rng.choice(120, 50, replace=False))
    subset = [pool[i] for i in rows]
    # Pick a max_features whose cut-off falls between two different term frequencies
    # (tie-breaking at the cut-off is the one documented difference).
    counts = TfidfVectorizer(min_df=2, ngram_range=(1, 2), use_idf=False, norm=None).fit_transform(subset)
    term_frequency = np.sort(np.asarray(counts.sum(0)).ravel())[::-1]
    cut = next(m for m in range(40, len(term_frequency)) if term_frequency[m - 1] > term_frequency[m])
    cases = [((1, 2), None, rows, subset), ((1, 2), cut, rows, subset), ((1, 2), cut, np.arange(120), pool)]
    # A unigram recipe read from the 1-2-gram counts, with a cut-off inside the unigrams.
    cases += [((1, 1), None, rows, subset), ((1, 1), 25, rows, subset), ((2, 2), None, np.arange(120), pool)]
    counts = _TermCounts(pool, evaluation, Config())
    for ngram_range, max_features, rows, subset in cases:
        config = Config(max_features=max_features, ngram_range=ngram_range)
        pool_counts = counts.pool.copy()
        ours_train, ours_eval = counts.tfidf(rows, config)
        assert (counts.pool != pool_counts).nnz == 0  # the counts are left as they were for the next arm
        sklearn = TfidfVectorizer(sublinear_tf=True, min_df=2, max_features=max_features, ngram_range=ngram_range, dtype=np.float32)
        expected_train = sklearn.fit_transform(subset)
        expected_eval = sklearn.transform(evaluation)
        assert ours_train.shape == expected_train.shape
        np.testing.assert_allclose(ours_train.toarray(), expected_train.toarray(), atol=1e-6)
        np.testing.assert_allclose(ours_eval.toarray(), expected_eval.toarray(), atol=1e-6)
    with pytest.raises(ValueError, match="outside the counted range"):
        counts.tfidf(rows, Config(ngram_range=(1, 3)))


def test_column_totals_in_blocks_equal_one_bincount():
    counts = sp.random(300, 50, density=0.2, format="csr", random_state=0, dtype=np.float32)
    counts.data = np.ceil(counts.data * 9)
    expected = np.bincount(counts.indices, weights=counts.data, minlength=50)
    np.testing.assert_array_equal(tfidf_module.column_sums(counts, 50, block=17), expected)


def test_clean_selection_beats_random_and_full_on_a_noisy_pool(clean_and_noisy):
    pool, eval_set = clean_and_noisy
    selected = [f"c{i}" for i in range(120)]
    arms = ArmEvaluator(pool, eval_set).evaluate_arms(selected)
    assert list(arms) == ["selected", "random", "stratified_random", "full"]
    chosen, random, stratified, full = (arms[k] for k in ["selected", "random", "stratified_random", "full"])
    assert chosen.n_train == random.n_train == stratified.n_train == 120
    assert full.n_train == len(pool)
    assert len(random.results) == len(stratified.results) == 5
    # Clean in-domain data wins clearly; the full pool (4x more data, same noise share) beats
    # the random subsets of 120.
    assert chosen.accuracy > 0.95
    assert chosen.accuracy_lo > max(random.accuracy_hi, stratified.accuracy_hi, full.accuracy_hi)
    assert full.accuracy > random.accuracy
    assert random.accuracy_lo <= random.accuracy <= random.accuracy_hi
    assert random.accuracy == pytest.approx(np.mean([r.accuracy for r in random.results]))
    rows = headline_rows(arms)
    assert [r["arm"] for r in rows] == list(arms)
    assert rows[0]["accuracy"] == chosen.accuracy


def test_evaluation_is_deterministic(clean_and_noisy):
    pool, eval_set = clean_and_noisy
    first = ArmEvaluator(pool, eval_set).evaluate_arms([f"n{i}" for i in range(100)], include_full=False)
    second = ArmEvaluator(pool, eval_set).evaluate_arms([f"n{i}" for i in range(100)], include_full=False)
    for name in first:
        a, b = first[name].to_dict(), second[name].to_dict()
        for d in (a, b):
            d.pop("fit_seconds", None)
            for seed_result in d.get("per_seed", []):
                seed_result.pop("fit_seconds")
        assert a == b
    np.testing.assert_array_equal(first["selected"].correct, second["selected"].correct)
    # Two threads (over arms, and over one arm's one-vs-rest classes) train the same models as one.
    one, two = (
        ArmEvaluator(pool, eval_set, config=Config(n_jobs=n)).evaluate_arms([f"n{i}" for i in range(100)], include_full=True)
        for n in (1, 2)
    )
    assert [r.accuracy for r in two["random"].results] == [r.accuracy for r in one["random"].results]
    assert two["stratified_random"].accuracy == one["stratified_random"].accuracy
    np.testing.assert_array_equal(two["full"].correct, one["full"].correct)


def test_random_arms_draw_same_size_from_independent_streams(evaluator):
    a, b = evaluator.random_rows(50, seed=0), evaluator.random_rows(50, seed=1)
    assert len(a) == len(b) == 50 and len(np.unique(a)) == 50
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(a, evaluator.random_rows(50, seed=0))
    # Not the stream a selection seeded with default_rng(0) would draw.
    plain = np.sort(np.random.default_rng(0).choice(evaluator.n_pool, size=50, replace=False))
    assert not np.array_equal(a, plain)


def test_stratified_rows_match_pool_label_proportions():
    labels = ["a"] * 60 + ["b"] * 30 + ["c"] * 10
    pool = pd.DataFrame({"id": [str(i) for i in range(100)], "text": ["xx yy"] * 100, "label": labels})
    eval_set = pd.DataFrame({"text": ["xx yy"], "label": ["a"]})
    evaluator = ArmEvaluator(pool, eval_set)
    for k, expected in [(20, {"a": 12, "b": 6, "c": 2}), (7, {"a": 4, "b": 2, "c": 1}), (3, {"a": 2, "b": 1})]:
        rows = evaluator.stratified_rows(k, seed=3)
        drawn = pd.Series(np.asarray(labels)[rows]).value_counts().to_dict()
        assert drawn == expected, k


def test_selection_seed_must_differ_from_random_seeds(clean_and_noisy):
    pool, eval_set = clean_and_noisy
    with pytest.raises(ValueError, match="selection seed"):
        ArmEvaluator(pool, eval_set).evaluate_arms(["c1"], random_seeds=(0, 1), selection_seed=1)
    with pytest.raises(KeyError, match="not in the pool"):
        ArmEvaluator(pool, eval_set).evaluate_arms(["c1", "nope"])


def test_unseen_eval_labels_count_as_errors():
    train_texts = ["red apple fruit"] * 5 + ["blue sky air"] * 5
    train_labels = ["fruit"] * 5 + ["sky"] * 5
    eval_texts = ["red apple", "blue sky", "green grass", "green leaf"]
    eval_labels = ["fruit", "sky", "plant", "plant"]
    result = train_and_evaluate("tfidf_logreg", train_texts, train_labels, eval_texts, eval_labels)
    assert result.unseen_eval_labels == ["plant"]
    np.testing.assert_array_equal(result.correct, [True, True, False, False])
    assert result.accuracy == 0.5
    assert result.per_class_recall == {"fruit": 1.0, "plant": 0.0, "sky": 1.0}
    # Macro-F1 averages over the 3 evaluation classes: plant scores 0 and the two plant records
    # land on fruit or sky, lowering their precision: (1 + 1/2 + 0) / 3 = 0.5 when both
    # go to one class; (2/3 + 2/3 + 0) / 3 when split.
    assert result.macro_f1 <= 0.5 + 1e-9


def test_single_class_and_empty_subsets_do_not_crash():
    result = train_and_evaluate("tfidf_logreg", ["a b", "a c"], ["x", "x"], ["a", "b", "c"], ["x", "y", "x"])
    np.testing.assert_array_equal(result.correct, [True, False, True])
    assert result.n_train == 2 and result.unseen_eval_labels == ["y"]
    empty = train_and_evaluate("tfidf_logreg", [], [], ["a", "b"], ["x", "y"])
    assert empty.n_train == 0 and empty.accuracy == 0.0
    assert empty.unseen_eval_labels == ["x", "y"]
    # Two classes but no term in >= 2 documents: no features, so the majority class.
    featureless = train_and_evaluate("tfidf_logreg", ["qq", "ww", "ee"], ["x", "y", "y"], ["qq", "ww"], ["x", "y"])
    np.testing.assert_array_equal(featureless.correct, [False, True])


def test_embedding_probe_separates_gaussian_clusters():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16)) * 3

    def draw(n):
        labels = rng.integers(0, 3, n)
        return centres[labels] + rng.normal(size=(n, 16)), [f"k{v}" for v in labels]

    train_x, train_y = draw(150)
    eval_x, eval_y = draw(300)
    with pytest.raises(ValueError, match="needs train and eval embeddings"):
        train_and_evaluate("embedding_probe", [""] * 150, train_y, [""] * 300, eval_y)
    result = train_and_evaluate(
        "embedding_probe", [""] * 150, train_y, [""] * 300, eval_y, train_embeddings=train_x, eval_embeddings=eval_x
    )
    assert result.accuracy > 0.95 and result.converged
    # Shuffled training labels carry no signal: near chance (1/3).
    shuffled = list(np.random.default_rng(1).permutation(train_y))
    chance = train_and_evaluate(
        "embedding_probe", [""] * 150, shuffled, [""] * 300, eval_y, train_embeddings=train_x, eval_embeddings=eval_x
    )
    assert chance.accuracy < 0.6


def test_bootstrap_interval_contains_estimate_and_narrows_with_more_records():
    rng = np.random.default_rng(0)
    small = rng.random(100) < 0.7
    large = rng.random(10_000) < 0.7
    lo_s, hi_s = bootstrap_accuracy_interval(small, seed=0)
    lo_l, hi_l = bootstrap_accuracy_interval(large, seed=0)
    assert lo_s <= small.mean() <= hi_s and lo_l <= large.mean() <= hi_l
    # Width scales like 1/sqrt(n): 100x the records -> about 10x narrower.
    assert 6 < (hi_s - lo_s) / (hi_l - lo_l) < 15
    # Normal approximation for n=10,000, p=0.7: half-width 1.96 * sqrt(.21/1e4) = 0.0090.
    assert (hi_l - lo_l) / 2 == pytest.approx(0.0090, abs=0.0012)
    assert bootstrap_accuracy_interval(small, seed=0) == (lo_s, hi_s)
    assert bootstrap_mean_interval([0.5, 0.5, 0.5]) == (0.5, 0.5)
    lo, hi = bootstrap_mean_interval([0.1, 0.9])
    assert lo == pytest.approx(0.1) and hi == pytest.approx(0.9)


def test_paired_difference_interval():
    a = np.array([True] * 80 + [False] * 20)
    b = np.array([True] * 60 + [False] * 40)
    difference, lo, hi = paired_difference_interval(a, b, seed=0)
    assert difference == pytest.approx(0.2)
    assert 0.0 < lo < 0.2 < hi
    same, lo, hi = paired_difference_interval(a, a)
    assert (same, lo, hi) == (0.0, 0.0, 0.0)


def test_budget_sweep_rows_and_requested_budgets(clean_and_noisy):
    pool, eval_set = clean_and_noisy
    requested = []

    def select_clean_first(budget):
        requested.append(budget)
        return pool["id"].tolist()[: int(budget * len(pool))]  # clean records come first in the pool

    sweep = ArmEvaluator(pool, eval_set).budget_sweep(select_clean_first, budgets=(0.1, 0.25), random_seeds=(0, 1, 2, 3, 4))
    assert requested == [0.1, 0.25]
    assert sweep.groupby("budget").k.first().to_dict() == {0.1: 64, 0.25: 160, 1.0: 640}
    assert list(sweep.columns) == SWEEP_COLUMNS
    assert sweep[["budget", "arm"]].values.tolist() == [
        [0.1, "selected"], [0.1, "random"], [0.1, "stratified_random"],
        [0.25, "selected"], [0.25, "random"], [0.25, "stratified_random"],
        [1.0, "full"],
    ]  # fmt: skip
    selected = sweep[sweep.arm == "selected"].set_index("budget")
    random = sweep[sweep.arm == "random"].set_index("budget")
    assert (selected.accuracy > random.accuracy_hi).all()
    assert (sweep.accuracy_lo <= sweep.accuracy).all() and (sweep.accuracy <= sweep.accuracy_hi).all()


def test_ablation_deltas_against_the_full_selection(clean_and_noisy):
    pool, eval_set = clean_and_noisy
    full_selection = [f"c{i}" for i in range(120)]
    table = ArmEvaluator(pool, eval_set).ablation(
        full_selection,
        {
            "no_op_scorer": lambda: list(full_selection),
            "label_noise_filter": lambda: [f"c{i}" for i in range(40)] + [f"n{i}" for i in range(80)],
        },
    )
    assert list(table.columns) == ABLATION_COLUMNS
    assert table.left_out.tolist() == ["(none)", "no_op_scorer", "label_noise_filter"]
    rows = table.set_index("left_out")
    assert rows.loc["no_op_scorer", "delta_accuracy"] == 0.0
    assert rows.loc["no_op_scorer", "jaccard_with_full_selection"] == 1.0
    assert rows.loc["label_noise_filter", "delta_accuracy"] < -0.1  # the filter was helping
    assert rows.loc["label_noise_filter", "jaccard_with_full_selection"] == pytest.approx(40 / 200)


def test_compare_builds_counts_and_metric_deltas():
    report = compare_builds(
        ["a", "b", "c"],
        ["b", "c", "d", "e"],
        {"accuracy": 0.70, "label_free": {"mmd2": 0.10}, "recipe": "x", "only_before": 1.0},
        {"accuracy": 0.75, "label_free": {"mmd2": 0.04}, "recipe": "x"},
    )
    assert (report["n_added"], report["n_removed"], report["n_kept"]) == (2, 1, 2)
    assert report["added_sample"] == ["d", "e"] and report["removed_sample"] == ["a"]
    assert report["jaccard"] == pytest.approx(2 / 5)
    assert set(report["metric_deltas"]) == {"accuracy", "label_free.mmd2"}
    assert report["metric_deltas"]["accuracy"]["delta"] == pytest.approx(0.05)
    assert report["metric_deltas"]["label_free.mmd2"]["delta"] == pytest.approx(-0.06)


@pytest.mark.newsgroups
def test_tfidf_recipe_on_real_newsgroups(newsgroups_records):
    # The shards are ordered by newsgroup: draw a seeded sample so all 20 classes appear.
    rng = np.random.default_rng(0)
    train_all = [r for r in newsgroups_records if r["split"] == "train"]
    test_all = [r for r in newsgroups_records if r["split"] == "test"]
    train = [train_all[i] for i in rng.choice(len(train_all), 1200, replace=False)]
    test = [test_all[i] for i in rng.choice(len(test_all), 800, replace=False)]
    result = train_and_evaluate(
        "tfidf_logreg",
        [r["text"] for r in train],
        [r["label"] for r in train],
        [r["text"] for r in test],
        [r["label"] for r in test],
    )
    # 20 classes: chance is 0.05; TF-IDF + logistic regression on ~1k documents reaches ~0.7.
    assert result.n_train == 1200 and len(result.correct) == 800
    assert 0.55 < result.accuracy < 0.9
    assert result.converged
    assert len(result.per_class_recall) == 20


@pytest.mark.newsgroups
def test_sgd_solver_trains_the_same_model_as_sklearn_on_the_subsets_tfidf(newsgroups_records):
    """The default solver is SGDClassifier on the log loss, alpha = 1 / (C * n), a fixed number of epochs: the same
    model as one trained on TfidfVectorizer's features; saga, trained to convergence, lands close by."""
    rng = np.random.default_rng(1)
    train_all = [r for r in newsgroups_records if r["split"] == "train"]
    test_all = [r for r in newsgroups_records if r["split"] == "test"]
    train = [train_all[i] for i in rng.choice(len(train_all), 1200, replace=False)]
    test = [test_all[i] for i in rng.choice(len(test_all), 800, replace=False)]
    pool = pd.DataFrame(
        {"id": [str(i) for i in range(len(train))], "text": [r["text"] for r in train], "label": [r["label"] for r in train]}
    )
    eval_set = pd.DataFrame({"text": [r["text"] for r in test], "label": [r["label"] for r in test]})
    evaluator = ArmEvaluator(pool, eval_set)
    assert evaluator.config.solver == "sgd" and evaluator.config.epochs == 3
    sgd = evaluator.train_rows(np.arange(len(pool)), arm="all")

    vectorizer = TfidfVectorizer(sublinear_tf=True, min_df=2, max_features=100_000, ngram_range=(1, 2), dtype=np.float32)
    reference = SGDClassifier(loss="log_loss", alpha=1 / (10.0 * len(train)), max_iter=3, tol=None, random_state=0)
    reference.fit(vectorizer.fit_transform(pool["text"]), pool["label"])
    reference_correct = reference.predict(vectorizer.transform(eval_set["text"])) == eval_set["label"].to_numpy()
    # Same features up to float32 rounding, same row order: (nearly) the same predictions.
    assert np.mean(reference_correct == sgd.correct) > 0.98
    assert abs(reference_correct.mean() - sgd.accuracy) < 0.01

    saga = evaluator.with_model(solver="saga").train_rows(np.arange(len(pool)), arm="all")
    assert saga.converged and abs(saga.accuracy - sgd.accuracy) < 0.05
    assert 0.55 < sgd.accuracy < 0.9
