import json
import time

import numpy as np
import pyarrow as pa
import pytest
from sklearn.metrics import roc_auc_score

from dataselect.scorers import label_noise as label_noise_module
from dataselect.scorers.base import Batch
from dataselect.scorers.label_noise import LabelClassifier, LabelNoise, PooledGaussianClassifier, confident_learning_issues


def blobs(n_per_class=60, n_classes=3, dim=16, spread=0.15, seed=0):
    """Well-separated unit-norm clusters: class c sits around basis vector e_c."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), n_per_class)
    vectors = np.eye(dim)[labels] + rng.normal(scale=spread, size=(len(labels), dim))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    names = np.array([f"class{c}" for c in range(n_classes)], dtype=object)
    return vectors.astype(np.float32), names[labels]


def test_confident_joint_known_answer():
    labels = np.array([0, 0, 0, 1, 1])
    probabilities = np.array(
        [
            [0.9, 0.1],
            [0.8, 0.2],
            [0.1, 0.9],  # labelled 0, confidently class 1: an issue
            [0.3, 0.7],
            [0.5, 0.5],  # labelled 1 at p=0.5 < t_1; class 0 at 0.5 < t_0: no confident class
        ]
    )
    # t_0 = mean(0.9, 0.8, 0.1) = 0.6; t_1 = mean(0.7, 0.5) = 0.6
    is_issue, confident_class, thresholds = confident_learning_issues(probabilities, labels)
    np.testing.assert_allclose(thresholds, [0.6, 0.6])
    assert is_issue.tolist() == [False, False, True, False, False]
    assert confident_class.tolist() == [0, 0, 1, 1, -1]


def test_clean_separable_data_is_almost_never_flagged():
    vectors, labels = blobs()
    out = LabelNoise(features="embeddings").score(Batch(pa.table({"label": list(labels)}), vectors))
    assert out["is_issue"].sum() <= 1  # <= 0.6% of 180
    assert np.nanmin(out["self_confidence"]) > 0.5
    assert (out["suggested_label"] == labels).all()


def test_flipped_labels_in_separable_data_are_exactly_the_issues():
    vectors, labels = blobs(spread=0.05, seed=1)
    rng = np.random.default_rng(1)
    flipped = rng.choice(len(labels), size=12, replace=False)
    noisy = labels.copy()
    true_class = np.array([int(name[-1]) for name in labels[flipped]])
    noisy[flipped] = np.array(["class0", "class1", "class2"], dtype=object)[(true_class + rng.integers(1, 3, 12)) % 3]
    batch = Batch(pa.table({"label": list(noisy)}), vectors)
    out = LabelNoise(features="embeddings", seed=0).score(batch)
    assert set(np.flatnonzero(out["is_issue"]).tolist()) == set(flipped.tolist())
    assert (out["suggested_label"][flipped] == labels[flipped]).all()
    assert (out["keep"] == ~out["is_issue"]).all()
    assert out["self_confidence"][flipped].max() < 0.2 < 0.6 < np.delete(out["self_confidence"], flipped).min()
    first = flipped[0]
    assert out["reason"][first].startswith(f"label '{noisy[first]}' likely wrong: p=0.0")
    assert f"model suggests '{labels[first]}'" in out["reason"][first]
    again = LabelNoise(features="embeddings", seed=0).score(batch)
    np.testing.assert_array_equal(out["self_confidence"], again["self_confidence"])


def test_null_labels_are_kept_with_nan_confidence():
    vectors, labels = blobs(n_per_class=20)
    labels = labels.copy()
    labels[[0, 25, 50]] = None
    out = LabelNoise(features="embeddings").score(Batch(pa.table({"label": list(labels)}), vectors))
    assert np.isnan(out["self_confidence"][[0, 25, 50]]).all()
    assert out["keep"][[0, 25, 50]].all() and not out["is_issue"][[0, 25, 50]].any()
    assert out["suggested_label"][0] is None and out["reason"][0] == ""
    assert not np.isnan(np.delete(out["self_confidence"], [0, 25, 50])).any()
    np.testing.assert_array_equal(out["score"], out["self_confidence"])


def test_requirements_follow_the_features():
    on_embeddings = LabelNoise(features="embeddings")
    assert on_embeddings.needs_embeddings and not on_embeddings.needs_text
    assert LabelNoise().needs_text  # the default (chosen on the methods benchmark's dev splits) is tfidf
    both = LabelNoise(features="tfidf+embeddings")
    assert both.needs_text and both.needs_embeddings
    tfidf = LabelNoise(features="tfidf")
    assert tfidf.needs_text and not tfidf.needs_embeddings
    with pytest.raises(ValueError, match="text"):
        tfidf.score(Batch(pa.table({"label": ["a", "b", "a", "b"]})))
    with pytest.raises(ValueError, match="Batch.embeddings"):
        both.score(Batch(pa.table({"text": ["a b", "c d", "a b", "c d"], "label": ["a", "b", "a", "b"]})))
    with pytest.raises(ValueError, match="unknown features"):
        LabelNoise(features="tfidf+words").needs_text


def noisy_newsgroups(newsgroups_records):
    """3,000 training messages with 15% of the labels flipped to another group."""
    rng = np.random.default_rng(0)
    train = [record for record in newsgroups_records if record["split"] == "train"]
    chosen = [train[i] for i in np.sort(rng.choice(len(train), size=3000, replace=False))]
    labels = np.array([record["label"] for record in chosen], dtype=object)
    classes = np.unique(labels)
    flipped = rng.random(len(labels)) < 0.15
    noisy = labels.copy()
    for i in np.flatnonzero(flipped):
        others = classes[classes != labels[i]]
        noisy[i] = others[rng.integers(len(others))]
    return pa.table({"text": [record["text"] for record in chosen], "label": list(noisy)}), flipped


def test_newsgroups_flipped_labels_detected(newsgroups_records):
    table, flipped = noisy_newsgroups(newsgroups_records)
    started = time.perf_counter()
    out = LabelNoise(features="tfidf", seed=0).score(Batch(table))
    elapsed = time.perf_counter() - started

    auroc = roc_auc_score(flipped, 1.0 - out["self_confidence"])
    flagged = out["is_issue"]
    precision = flipped[flagged].mean()
    recall = flagged[flipped].mean()
    print(
        f"\nlabel_noise tfidf on 3000 newsgroups, 15% flipped: AUROC {auroc:.3f}, "
        f"flagged {flagged.sum()}, precision {precision:.2f}, recall {recall:.2f}, {elapsed:.1f}s"
    )
    assert auroc >= 0.90
    assert precision >= 0.6  # measured ~0.75; the base rate of flips is 0.15
    # The default fold models are saga's; 5 SGD epochs on the same loss rank these flips alike.
    assert type(LabelClassifier(features="tfidf")._estimator("tfidf", 100)).__name__ == "LogisticRegression"
    sgd = LabelNoise(features="tfidf", solver="sgd", seed=0).score(Batch(table))
    assert abs(roc_auc_score(flipped, 1.0 - sgd["self_confidence"]) - auroc) < 0.01


@pytest.mark.parametrize(
    "classifier, solver, model",
    [(None, "saga", "PooledGaussianClassifier"), ("logistic", "saga", "LogisticRegression"), ("logistic", "sgd", "SGDClassifier")],
)
def test_newsgroups_flipped_labels_detected_on_embeddings(newsgroups_records, classifier, solver, model):
    from dataselect.embedding import StaticEmbedder

    table, flipped = noisy_newsgroups(newsgroups_records)
    vectors = StaticEmbedder().embed(table.column("text").to_pylist())
    scorer = LabelNoise(features="embeddings", classifier=classifier, solver=solver, seed=0)
    assert type(LabelClassifier(features="embeddings", classifier=classifier, solver=solver)._estimator("embeddings", 10)).__name__ == model
    out = scorer.score(Batch(table, vectors))
    auroc = roc_auc_score(flipped, 1.0 - out["self_confidence"])
    print(f"\nlabel_noise embeddings/{model} ({solver}): AUROC {auroc:.3f}")
    assert auroc >= (0.90 if solver == "saga" else 0.85)  # five SGD epochs suit sparse tf-idf rows better than dense vectors


def test_pooled_gaussian_equals_scikit_learn_lda():
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    rng = np.random.default_rng(1)
    y = rng.choice(["a", "b", "c"], size=600, p=[0.5, 0.3, 0.2])
    x = rng.normal(size=(600, 8)) + (y[:, None] == "b") * 1.5 - (y[:, None] == "c") * 1.0
    test = rng.normal(size=(50, 8))
    for shrinkage in (0.0, 0.3):
        ours = PooledGaussianClassifier(shrinkage=shrinkage).fit(x, y)
        theirs = LinearDiscriminantAnalysis(solver="lsqr", shrinkage=shrinkage or None).fit(x, y)
        if shrinkage == 0.0:  # scikit-learn shrinks per class before pooling: equal only unshrunk
            np.testing.assert_allclose(ours.predict_proba(test), theirs.predict_proba(test), atol=1e-5)  # float32 products
        assert (ours.predict(test) == theirs.predict(test)).mean() > 0.95
    assert list(ours.classes_) == ["a", "b", "c"]
    # Out-of-fold probabilities by 0/1 weights equal scikit-learn's cross_val_predict on copies.
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    folds = StratifiedKFold(n_splits=4, shuffle=True, random_state=0)
    np.testing.assert_allclose(
        PooledGaussianClassifier(shrinkage=0.1).out_of_fold_proba(x, y, folds),
        cross_val_predict(PooledGaussianClassifier(shrinkage=0.1), x, y, cv=folds, method="predict_proba"),
        atol=1e-5,
    )
    # A class without training rows gets probability 0 rather than NaN.
    absent = PooledGaussianClassifier().fit(x, y, sample_weight=(y != "c").astype(float)).predict_proba(test)
    assert np.isfinite(absent).all() and (absent[:, 2] == 0).all()
    automatic = PooledGaussianClassifier().fit(x[:20], y[:20])  # 20 records, 8 dims: still invertible
    assert np.isfinite(automatic.predict_proba(test)).all()


def test_single_class_pool_has_nothing_to_compare():
    vectors, _ = blobs(n_per_class=10, n_classes=2)
    out = LabelNoise().score(Batch(pa.table({"label": ["only"] * 20}), vectors))
    assert out["keep"].all() and np.isnan(out["self_confidence"]).all()


def test_top_label_rule_drops_records_whose_label_is_not_the_most_probable_class():
    from dataselect.scorers.label_noise import label_noise_keep

    is_issue = np.array([False, False, False, True, False])
    confidence = np.array([0.9, 0.3, 0.3, 0.1, np.nan])  # the last record has no label
    top_is_given = np.array([True, True, False, False, False])
    # p(given) 0.3 but still the top class (20 classes): only the top-label rule keeps it
    assert label_noise_keep(is_issue, confidence, 0.5).tolist() == [True, False, False, False, True]
    assert label_noise_keep(is_issue, confidence, 0.0, top_is_given).tolist() == [True, True, False, False, True]
    assert label_noise_keep(is_issue, confidence, 0.0).tolist() == [True, True, True, False, True]


def test_scorer_applies_the_top_label_rule_by_default():
    vectors, labels = blobs(spread=0.6, seed=2)  # overlapping classes: some labels are not the top class
    batch = Batch(pa.table({"label": list(labels)}), vectors)
    default = LabelNoise(features="embeddings").score(batch)
    off = LabelNoise(features="embeddings", require_top_label=False).score(batch)
    top_is_given = default["suggested_label"] == labels
    assert (default["keep"] == (~default["is_issue"] & top_is_given)).all()
    assert (off["keep"] == ~off["is_issue"]).all() and off["keep"].sum() > default["keep"].sum()


@pytest.mark.parametrize(("cap", "folds"), [(None, 5), (100, 5), (90, 2)])
def test_a_pool_of_twice_the_training_cap_is_split_in_two_folds(monkeypatch, cap, folds):
    """Capped folds all train on ``cap`` records, so a pool of 2 x cap needs only two fits."""
    vectors, labels = blobs(spread=0.05, seed=2)  # 180 records
    seen = []
    original = LabelClassifier._fit_folds_of

    def spy(self, member, features, encoded, splits, n_classes):
        seen.append(len(splits))
        return original(self, member, features, encoded, splits, n_classes)

    monkeypatch.setattr(LabelClassifier, "_fit_folds_of", spy)
    batch = Batch(pa.table({"label": list(labels)}), vectors)
    out = LabelNoise(features="embeddings", classifier="logistic", max_train_per_fold=cap).score(batch)
    assert seen == [folds]
    assert (out["suggested_label"] == labels).all()  # well separated: every record still scored right


def test_ensemble_averages_the_two_models_out_of_fold_probabilities(newsgroups_records):
    from dataselect.embedding import StaticEmbedder

    table, flipped = noisy_newsgroups(newsgroups_records)
    batch = Batch(table, StaticEmbedder().embed(table.column("text").to_pylist()))
    both = LabelNoise(features="tfidf+embeddings", seed=0).score(batch)
    alone = {f: LabelNoise(features=f, seed=0).score(batch) for f in ("tfidf", "embeddings")}
    # Same folds for both models, so the given label's averaged probability is the mean of theirs.
    expected = (alone["tfidf"]["self_confidence"] + alone["embeddings"]["self_confidence"]) / 2
    np.testing.assert_allclose(both["self_confidence"], expected, atol=1e-9)
    auroc = {name: roc_auc_score(flipped, 1.0 - out["self_confidence"]) for name, out in [("both", both), *alone.items()]}
    print(f"\nlabel_noise AUROC on 3000 newsgroups: {auroc}")
    assert auroc["both"] >= 0.95


def test_out_of_fold_probabilities_predicted_in_blocks_are_the_same(newsgroups_records, monkeypatch):
    """Each fold's model predicts its held-out rows block by block (a large pool's half never copied at once)."""
    table, _ = noisy_newsgroups(newsgroups_records)
    table = table.slice(0, 600)
    whole = LabelNoise(features="tfidf", seed=0).score(Batch(table))
    monkeypatch.setattr(label_noise_module, "_CHUNK", 7)
    blocks = LabelNoise(features="tfidf", seed=0).score(Batch(table))
    np.testing.assert_array_equal(blocks["self_confidence"], whole["self_confidence"])
    assert blocks["suggested_label"].tolist() == whole["suggested_label"].tolist()


def _keyed(table: pa.Table, n_shards: int) -> pa.Table:
    """``table`` with the record keys a raw_pool shard carries (shard, row, content hash)."""
    import hashlib

    n = table.num_rows
    size = -(-n // n_shards)
    texts = table.column("text").to_pylist() if "text" in table.column_names else [str(i) for i in range(n)]
    return (
        table.append_column("shard", pa.array([f"s{i // size}" for i in range(n)]))
        .append_column("row", pa.array([i % size for i in range(n)], pa.int64()))
        .append_column("content_hash", pa.array([hashlib.sha1(t.encode()).hexdigest() for t in texts]))
    )


def _per_shard_label_noise(table: pa.Table, vectors, fitted_on: pa.Table, vectors_fitted, tmp_path, n_shards: int, **settings):
    """Fit label_classifier on ``fitted_on``, save and load it, score ``table`` shard by shard, then
    run label_noise over the concatenated scores, as quality_scores and filtered_set do."""
    from dataselect.pipeline import score_shard
    from dataselect.scorers.label_noise import LabelClassifier

    LabelClassifier(**settings).fit(Batch(fitted_on, vectors_fitted)).save(tmp_path)
    loaded = LabelClassifier.load(tmp_path)
    shards = table.column("shard").to_pylist()
    parts = []
    for shard in sorted(set(shards)):
        rows = np.flatnonzero(np.array(shards) == shard)
        parts.append(score_shard(table.take(rows), None if vectors is None else vectors[rows], [loaded]))
    scores = pa.concat_tables(parts)
    scorer = LabelNoise(**settings)
    assert not scorer.needs_text_given(scores.column_names)  # the global step reads no text
    return scorer.score(Batch(scores)), scores


@pytest.mark.parametrize("features", ["tfidf", "tfidf+embeddings"])
def test_per_shard_probabilities_are_cross_validation_on_the_pool_bit_for_bit(newsgroups_records, tmp_path, features):
    """Fitted on the whole pool, scored shard by shard from the saved model: the same out-of-fold
    probabilities, flags and suggestions as fitting the folds over the pool in one call."""
    from dataselect.embedding import StaticEmbedder

    table, _ = noisy_newsgroups(newsgroups_records)
    table = _keyed(table, 3)
    vectors = StaticEmbedder().embed(table.column("text").to_pylist())
    settings = {"features": features, "max_train_per_fold": 1000}  # a cap below the folds' size: sampled training rows
    together = LabelNoise(**settings, proba_column=None).score(Batch(table, vectors))
    per_shard, scores = _per_shard_label_noise(table, vectors, table, vectors, tmp_path, 3, **settings)
    np.testing.assert_array_equal(per_shard["self_confidence"], together["self_confidence"])
    np.testing.assert_array_equal(per_shard["is_issue"], together["is_issue"])
    assert per_shard["suggested_label"].tolist() == together["suggested_label"].tolist()
    assert per_shard["reason"].tolist() == together["reason"].tolist()
    classes = json.loads(scores.schema.field("label_classifier.proba").metadata[b"classes"])
    assert classes == sorted(set(table.column("label").to_pylist()))


def test_records_outside_the_sample_are_scored_by_a_model_that_never_saw_them(newsgroups_records, tmp_path):
    """A shard that lands after the fit: its records get the fold their content hashes to, whose
    model never trained on them, and a flipped label among them is still found."""
    from dataselect.scorers.label_noise import LabelClassifier, _hash_fold

    table, flipped = noisy_newsgroups(newsgroups_records)
    table = _keyed(table, 3)
    fitted_on = table.slice(0, 2000)  # shards s0 and s1
    classifier = LabelClassifier().fit(Batch(fitted_on))
    later = table.slice(2000)
    folds = classifier.folds_of(Batch(later))
    expected = [_hash_fold(h, 5, 0) for h in later.column("content_hash").to_pylist()]
    assert folds.tolist() == expected
    assert sorted(set(expected)) == [0, 1, 2, 3, 4]
    # The sampled records keep their cross-validation folds; one moved to another row is a stranger.
    sampled = classifier.folds_of(Batch(fitted_on))
    assert (sampled == classifier._fit_folds).all()
    moved = fitted_on.slice(0, 1).set_column(fitted_on.schema.get_field_index("row"), "row", pa.array([99_999], pa.int64()))
    assert classifier.folds_of(Batch(moved))[0] == _hash_fold(moved.column("content_hash")[0].as_py(), 5, 0)
    out, _ = _per_shard_label_noise(table, None, fitted_on, None, tmp_path, 3)
    auroc = roc_auc_score(flipped[2000:], 1.0 - out["self_confidence"][2000:])
    assert auroc > 0.9, auroc


def test_a_label_the_models_never_saw_is_kept_unjudged(tmp_path):
    vectors, labels = blobs(spread=0.05, seed=3)
    table = _keyed(pa.table({"label": list(labels)}), 2)
    table = table.set_column(0, "label", pa.array(list(labels[:-5]) + ["brand-new"] * 5))
    fitted_on = table.slice(0, 150)
    out, _ = _per_shard_label_noise(table, vectors, fitted_on, vectors[:150], tmp_path, 2, features="embeddings")
    assert np.isnan(out["self_confidence"][-5:]).all() and out["keep"][-5:].all() and not out["is_issue"][-5:].any()
    assert np.isfinite(out["self_confidence"][:-5]).all()


def test_probabilities_fitted_with_other_settings_are_refused(tmp_path):
    from dataselect.pipeline import score_shard
    from dataselect.scorers.label_noise import LabelClassifier

    vectors, labels = blobs()
    table = _keyed(pa.table({"label": list(labels)}), 1)
    scores = score_shard(table, vectors, [LabelClassifier(features="embeddings").fit(Batch(table, vectors))])
    with pytest.raises(ValueError, match="label_noise is set to features='tfidf'.*fitted with features='embeddings'"):
        LabelNoise().score(Batch(scores))
    assert LabelNoise(features="embeddings").score(Batch(scores))["keep"].sum() > 170
