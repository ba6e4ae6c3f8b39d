"""The L2-penalised logistic regression that the evaluation recipe and the label-noise folds train."""

from __future__ import annotations

from sklearn.linear_model import LogisticRegression, SGDClassifier


def logistic_regression(
    C: float, n_train: int, solver: str, *, epochs: int, tol: float, max_iter: int, seed: int, n_jobs: int | None = None
) -> LogisticRegression | SGDClassifier:
    """``LogisticRegression(C=C)`` trained by ``solver``; ``"sgd"`` is ``SGDClassifier`` on the same objective.

    LogisticRegression minimises C * sum(loss) + |w|^2 / 2 and SGDClassifier mean(loss) + alpha * |w|^2 / 2:
    the same optimum at alpha = 1 / (C * n). SGD runs ``epochs`` passes in a seeded order, with no
    tolerance to stop at; the other solvers stop at ``tol`` or ``max_iter``. ``n_jobs``: threads over
    SGD's one-vs-rest classes (each class's seed is drawn up front, so the model does not depend on it).
    """
    if solver == "sgd":
        return SGDClassifier(loss="log_loss", alpha=1.0 / (C * n_train), max_iter=epochs, tol=None, random_state=seed, n_jobs=n_jobs)
    return LogisticRegression(C=C, solver=solver, tol=tol, max_iter=max_iter, random_state=seed)
