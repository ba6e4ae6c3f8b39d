import numpy as np
import pyarrow as pa
import pytest

from dataselect.scorers import SCORERS
from dataselect.scorers.base import Batch
from dataselect.scorers.label_prior import LabelPrior, em_target_prior

TOPICS = {
    "space": "orbit rocket launch shuttle moon nasa satellite",
    "med": "doctor patient disease treatment clinical symptoms drug",
    "sport": "goal season team player score league coach",
}


def texts_of(topic, n, rng):
    words = TOPICS[topic].split()
    return [" ".join(rng.choice(words, size=12)) for _ in range(n)]


def pool_and_reference(seed=0):
    """Pool: three topics, equally common, labelled by topic; reference: space and med only, 3:1."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for topic in TOPICS:
        texts += texts_of(topic, 100, rng)
        labels += [topic] * 100
    reference = texts_of("space", 60, rng) + texts_of("med", 20, rng)
    return Batch(pa.table({"id": [str(i) for i in range(len(texts))], "text": texts, "label": labels})), Batch(
        pa.table({"text": reference})
    )


def test_em_recovers_a_shifted_prior_from_calibrated_posteriors():
    # Two classes seen 50:50 at training; the target is 80:20. Each target point's posterior under
    # the training prior is what a calibrated classifier reports; EM must find 0.8.
    rng = np.random.default_rng(0)
    truth = rng.random(4000) < 0.8
    likelihood = np.where(truth[:, None], [0.7, 0.3], [0.3, 0.7])  # p(x | class) of a noisy feature
    observed = np.where(rng.random(4000)[:, None] < 0.7, likelihood, likelihood[:, ::-1])
    posterior = observed / observed.sum(axis=1, keepdims=True)
    prior = em_target_prior(posterior, np.array([0.5, 0.5]))
    assert abs(prior[0] - 0.8) < 0.05


@pytest.mark.parametrize("estimator", ["em", "count"])
def test_target_prior_puts_no_mass_on_an_absent_label(estimator):
    pool, reference = pool_and_reference()
    scorer = LabelPrior(estimator=estimator).fit(pool, reference)
    prior = dict(zip(scorer.classes_, scorer.target_prior_))
    assert prior["sport"] < 0.02
    assert abs(prior["space"] - 0.75) < 0.1 and abs(prior["med"] - 0.25) < 0.1
    out = scorer.score(Batch(pa.table({"label": ["space", "sport", None, "unseen"]})))
    np.testing.assert_allclose(out["target_share"][[0, 1, 3]], [prior["space"], prior["sport"], 0.0])
    assert np.isnan(out["target_share"][2]) and out["score"][2] == 0.0  # unlabelled: no share, no weight
    np.testing.assert_allclose(out["score"][0], prior["space"] / (1 / 3))


def test_the_default_solver_reaches_the_penalised_optimum():
    # Every solver minimises the same objective: the default's prior is the one at a tight tolerance.
    pool, reference = pool_and_reference(seed=2)
    exact = LabelPrior(solver="lbfgs", tol=1e-10, max_iter=10_000).fit(pool, reference).target_prior_
    np.testing.assert_allclose(LabelPrior().fit(pool, reference).target_prior_, exact, atol=1e-4)
    with pytest.raises(ValueError, match="solver"):  # the configured solver is the one that trains
        LabelPrior(solver="nope").fit(pool, reference)


def test_save_load_roundtrip_and_registry(tmp_path):
    pool, reference = pool_and_reference(seed=1)
    scorer = LabelPrior().fit(pool, reference)
    scorer.save(tmp_path)
    loaded = SCORERS["label_prior"].load(tmp_path)
    assert loaded.classes_ == scorer.classes_
    batch = Batch(pa.table({"label": ["med", "space", "sport"]}))
    np.testing.assert_array_equal(loaded.score(batch)["target_share"], scorer.score(batch)["target_share"])


def test_unlabelled_pool_keeps_no_prior():
    pool = Batch(pa.table({"text": ["a b c", "d e f"], "label": pa.array([None, None], pa.string())}))
    scorer = LabelPrior().fit(pool, Batch(pa.table({"text": ["a b"]})))
    assert scorer.classes_ == [] and np.isnan(scorer.score(pool)["target_share"]).all()
    with pytest.raises(ValueError, match="estimator"):
        LabelPrior(estimator="nope").fit(pool, pool)
