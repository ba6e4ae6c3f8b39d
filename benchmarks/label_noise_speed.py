"""Label noise, old form against the platform's: flipped-label AUROC and seconds, side by side.

``python -m benchmarks.label_noise_speed [--repeats 3]``

- **reference** (the platform's form until December 2026): scikit-learn ``TfidfVectorizer``
  (sublinear tf, min_df 2, 50k-term vocabulary) and 5-fold ``cross_val_predict`` of the same
  saga logistic regression, every fold trained on all the other folds;
- **platform**: the default recipe's form: :class:`~dataselect.scorers.label_noise.LabelClassifier`
  fitted on the fit assets' pool sample (hashed-word TF-IDF, folds trained on at most 20k records,
  a content-keyed sample of 50k), scoring the pool shard by shard (10k records each), then
  :class:`~dataselect.scorers.label_noise.LabelNoise` over the shards' probabilities. Below the
  sample size this is cross-validation over the whole pool; the 100k pool is where they differ.

Both score the same records; AUROC is of ``1 - p(given label)`` against the planted flips. Pools:
the methods benchmark's corrupted 20 Newsgroups and Amazon pools (15% flipped) and the 100k
synthetic pool of :mod:`benchmarks.synthetic` (2% flipped). Seconds are wall clock of the scorers
alone (library-only: fit, every shard's scoring one after another, the thresholds), median of the
repeats, on every core. Writes ``results/label_noise.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from dataselect import records as cols
from dataselect.pipeline import pool_sample, score_shard
from dataselect.scorers.base import Batch
from dataselect.scorers.label_noise import LabelClassifier, LabelNoise

RESULTS = Path(__file__).resolve().parent / "results" / "label_noise.md"
MAX_AUROC_LOSS = 0.01


def reference_self_confidence(texts: list[str], labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """p(given label) out of fold, the way the platform computed it before (see the module doc)."""
    classes, encoded = np.unique(labels, return_inverse=True)
    features = TfidfVectorizer(sublinear_tf=True, min_df=2, max_features=50_000, dtype=np.float32).fit_transform(texts)
    model = LogisticRegression(C=10.0, solver="saga", max_iter=200, tol=1e-2, random_state=seed)
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    probabilities = cross_val_predict(model, features, encoded, cv=folds, method="predict_proba", n_jobs=-1)
    return probabilities[np.arange(len(encoded)), encoded]


def platform_self_confidence(texts: list[str], labels: np.ndarray, shard_size: int = 10_000) -> np.ndarray:
    """p(given label) as a build computes it: the fitted classifier, per-shard scores, the pool's thresholds."""
    import hashlib

    table = pa.table(
        {
            cols.TEXT: pa.array(texts, pa.string()),
            cols.LABEL: pa.array(labels.tolist(), pa.string()),
            cols.CONTENT_HASH: [hashlib.sha1(t.encode()).hexdigest() for t in texts],
            cols.SHARD: [f"shard-{i // shard_size:05d}" for i in range(len(texts))],
            cols.ROW: pa.array([i % shard_size for i in range(len(texts))], pa.int64()),
        }
    )
    shards = [table.slice(start, shard_size) for start in range(0, len(texts), shard_size)]
    sample = pool_sample(((shard, None) for shard in shards), len(texts), LabelClassifier.fit_sample_size, seed=0)
    classifier = LabelClassifier().fit(sample)
    scores = pa.concat_tables([score_shard(shard, None, [classifier]) for shard in shards])
    return LabelNoise().score(Batch(scores))["self_confidence"]


def pools() -> dict[str, tuple[list[str], np.ndarray, np.ndarray]]:
    """name -> (texts, labels, flipped) of labelled, non-junk records."""
    from benchmarks.newsgroups import PoolConfig, build_benchmark
    from benchmarks.synthetic import SyntheticConfig, SyntheticPool
    from dataselect.corruption import IS_FLIPPED, IS_JUNK

    out = {}
    for corpus in ("newsgroups", "amazon"):
        bench = build_benchmark(PoolConfig(corpus=corpus), work_dir=Path(tempfile.mkdtemp(prefix="label-noise-")))
        records = bench.records
        truth = bench.truth.set_index(cols.ID).loc[records.column(cols.ID).to_pylist()]
        keep = ~truth[IS_JUNK].to_numpy() & np.array([v is not None for v in records.column(cols.LABEL).to_pylist()])
        texts = [t for t, k in zip(records.column(cols.TEXT).to_pylist(), keep) if k]
        labels = np.array(records.column(cols.LABEL).to_pylist(), dtype=object)[keep].astype(str)
        out[f"{corpus} (corrupted benchmark pool)"] = (texts, labels, truth[IS_FLIPPED].to_numpy()[keep])
    synthetic = SyntheticPool(SyntheticConfig(n_records=100_000, seed=0))
    shards = [synthetic.shard(i) for i in range(synthetic.n_shards)]
    labels = np.concatenate([s.labels for s in shards]).astype(str)
    topics = np.concatenate([s.topics for s in shards])
    keep = ~np.concatenate([s.is_junk for s in shards])
    texts = [t for s in shards for t in s.texts.to_pylist()]
    flipped = labels != np.array([f"topic-{t}" for t in topics])
    out["synthetic 100k"] = ([t for t, k in zip(texts, keep) if k], labels[keep], flipped[keep])
    return out


def timed(function, repeats: int) -> tuple[np.ndarray, float]:
    seconds, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - started)
    return result, statistics.median(seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    rows = []
    for name, (texts, labels, flipped) in pools().items():
        old, old_seconds = timed(lambda: reference_self_confidence(texts, labels), args.repeats)
        new, new_seconds = timed(lambda: platform_self_confidence(texts, labels), args.repeats)
        old_auroc, new_auroc = roc_auc_score(flipped, 1 - old), roc_auc_score(flipped, 1 - new)
        rows.append((name, len(texts), old_auroc, new_auroc, old_seconds, new_seconds))
        print(rows[-1], flush=True)
    lines = [
        "# Label noise: the reference form against the platform's (`python -m benchmarks.label_noise_speed`)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}. Library-only (the "
        f"scorer alone, no Dagster); seconds are the median of {args.repeats} runs. AUROC of 1 − p(given label) against "
        f"the planted flips; the platform's form must stay within {MAX_AUROC_LOSS} of the reference.",
        "",
        "| pool | records | AUROC reference | AUROC platform | Δ AUROC | within 0.01 | seconds reference | seconds platform | speed-up |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for name, n, old_auroc, new_auroc, old_seconds, new_seconds in rows:
        within = "yes" if new_auroc >= old_auroc - MAX_AUROC_LOSS else "**no**"
        lines.append(
            f"| {name} | {n:,} | {old_auroc:.4f} | {new_auroc:.4f} | {new_auroc - old_auroc:+.4f} | {within} | "
            f"{old_seconds:.1f} | {new_seconds:.1f} | {old_seconds / new_seconds:.1f}× |"
        )
    args.results.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
