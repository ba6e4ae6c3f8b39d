"""The per-run thread budget reaches the native pools and the platform's own pools, and is undone after."""

import numpy as np
from threadpoolctl import threadpool_info

from dataselect import ngrams, threads


def _blas_threads() -> set[int]:
    return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}


def test_limited_sets_every_pool_and_restores_it(monkeypatch):
    monkeypatch.delenv("DATASELECT_THREADS", raising=False)
    np.dot(np.ones((2, 2)), np.ones((2, 2)))  # BLAS loaded
    before = _blas_threads()
    with threads.limited(2):
        assert threads.available() == 2
        assert _blas_threads() == {1}  # native pools never nest inside the platform's threads
        # Our own pools follow too: one slice at a time gives the same counts as the default.
        texts = ["a b c", "d e f"] * 600
        assert (ngrams.hashed_counts(texts, 1 << 10) != ngrams.hashed_counts(texts, 1 << 10, threads=2)).nnz == 0
    assert threads.available() == threads.cores()
    assert _blas_threads() == before
