"""The target's label distribution, estimated from the unlabelled reference (label-shift estimation).

A classification selection trains on the pool's given labels, but the target may use only some of
them (20 Newsgroups' ``sci.*`` reference never carries a ``rec.*`` label) or mix them otherwise.
Relevance scores rank records by their text alone, so a target-looking record with an off-target
label still ranks high, and teaches the downstream model to predict a class the target never has.

Fit: a TF-IDF logistic regression on the pool sample's given labels predicts ``p(y | x)`` for
every reference text; the target prior ``p_T(y)`` is then estimated by

- ``"em"`` (default): the EM re-weighting of Saerens, Latinne & Decaestecker (2002, "Adjusting
  the outputs of a classifier to new a priori probabilities: a simple procedure", Neural
  Computation): the maximum-likelihood prior under label shift, starting from the sample's prior;
- ``"count"``: classify and count (the share of reference texts predicted as each label).

Score: per record, ``target_share`` = ``p_T(given label)`` (0 for a label the fit never saw, NaN
when unlabelled) and ``score`` = ``p_T(y) / p_S(y)``, the label's importance weight (0 for an unseen
label and for an unlabelled record, which is no training example for a classifier; every record
has a score, as the quality_scores check requires). The selection
uses ``target_share`` as per-label quotas (``SelectionConfig.label_quota_column``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from dataselect.records import LABEL
from dataselect.scorers.base import Batch, Scorer

ESTIMATORS = ("em", "count")


def em_target_prior(probabilities: np.ndarray, source_prior: np.ndarray, max_iter: int = 1000, tol: float = 1e-8) -> np.ndarray:
    """Saerens et al. (2002): alternate re-weighted posteriors and their mean until the prior settles."""
    prior = source_prior.copy()
    for _ in range(max_iter):
        posterior = probabilities * (prior / source_prior)
        posterior /= posterior.sum(axis=1, keepdims=True)
        updated = posterior.mean(axis=0)
        if np.abs(updated - prior).max() < tol:
            return updated
        prior = updated
    return prior


class LabelPrior(Scorer):
    """Shard scorer: ``target_share`` (p_T of the record's given label) and ``score`` (p_T / p_S)."""

    name: ClassVar[str] = "label_prior"
    kind: ClassVar[str] = "relevance"
    stage: ClassVar[str] = "shard"
    needs_fit: ClassVar[bool] = True
    library: ClassVar[str] = "scikit-learn"

    @dataclass
    class Config:
        estimator: str = "em"  # one of ESTIMATORS
        # Weak regularisation, as the label-noise model: EM needs probabilities that are not
        # flattened towards the sample's prior (C=1 spread sci.* over-confidently on the benchmark).
        C: float = 10.0
        # Newton-CG: the model has (terms x labels) weights, 0.8M on a 5k-record sample of 22
        # labels, where each lbfgs iteration costs 0.1 s of the optimiser's own vector work
        # (scipy >= 1.15); Newton-CG's few iterations are sparse products. On the 100k real-text
        # benchmark's sample: lbfgs 7.8 s, 70 iterations, its EM prior 5.5e-3 off the one at the
        # exact optimum (tol 1e-8); Newton-CG 1.2 s, 7 iterations, 1.1e-3 off.
        solver: str = "newton-cg"
        tol: float = 1e-4
        max_iter: int = 300
        tfidf_max_features: int = 50_000

    classes_: list[str]
    target_prior_: np.ndarray
    source_prior_: np.ndarray

    def fit(self, pool: Batch, target: Batch) -> "LabelPrior":
        if self.config.estimator not in ESTIMATORS:
            raise ValueError(f"label_prior: unknown estimator {self.config.estimator!r}; use one of {ESTIMATORS}")
        labels = pool.records.column(LABEL).to_pylist() if LABEL in pool.records.column_names else []
        rows = [i for i, value in enumerate(labels) if value is not None and value == value and value != ""]
        texts = pool.texts
        classes, encoded = np.unique(np.array([str(labels[i]) for i in rows], dtype=object), return_inverse=True)
        self.classes_ = [str(c) for c in classes]
        if len(classes) == 0:
            self.target_prior_ = self.source_prior_ = np.zeros(0)
            return self
        self.source_prior_ = np.bincount(encoded, minlength=len(classes)) / len(rows)
        if len(classes) == 1 or len(target) == 0:
            self.target_prior_ = self.source_prior_.copy()  # nothing to estimate
            return self
        vectorizer = TfidfVectorizer(sublinear_tf=True, min_df=2, max_features=self.config.tfidf_max_features, dtype=np.float32)
        features = vectorizer.fit_transform([texts[i] or "" for i in rows])
        model = LogisticRegression(C=self.config.C, solver=self.config.solver, tol=self.config.tol, max_iter=self.config.max_iter).fit(
            features, encoded
        )
        probabilities = model.predict_proba(vectorizer.transform([t or "" for t in target.texts]))
        if self.config.estimator == "em":
            self.target_prior_ = em_target_prior(probabilities, self.source_prior_)
        else:
            self.target_prior_ = np.bincount(probabilities.argmax(axis=1), minlength=len(classes)) / len(probabilities)
        return self

    def score(self, batch: Batch) -> dict[str, np.ndarray]:
        if not hasattr(self, "target_prior_"):
            raise RuntimeError("LabelPrior.score called before fit() or load()")
        n = len(batch)
        share, weight = np.full(n, np.nan), np.zeros(n)
        if LABEL in batch.records.column_names:
            position = {label: i for i, label in enumerate(self.classes_)}
            for row, value in enumerate(batch.records.column(LABEL).to_pylist()):
                if value is None or value != value or value == "":
                    continue
                i = position.get(str(value))
                share[row] = 0.0 if i is None else self.target_prior_[i]
                weight[row] = 0.0 if i is None else self.target_prior_[i] / self.source_prior_[i]
        return {"target_share": share, "score": weight}

    # The class names travel as UTF-8 JSON bytes: safetensors holds numeric arrays only.
    def state_arrays(self) -> dict[str, np.ndarray]:
        names = np.frombuffer(json.dumps(self.classes_).encode("utf-8"), dtype=np.uint8)
        return {"classes_json": names, "target_prior": self.target_prior_, "source_prior": self.source_prior_}

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.classes_ = json.loads(np.asarray(arrays["classes_json"], dtype=np.uint8).tobytes().decode("utf-8"))
        self.target_prior_ = np.asarray(arrays["target_prior"], dtype=np.float64)
        self.source_prior_ = np.asarray(arrays["source_prior"], dtype=np.float64)
