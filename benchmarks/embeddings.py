"""The two embedding backends side by side: speed, and quality as 20 Newsgroups accuracy.

``python -m benchmarks.embeddings --per-split 1000``

Both backends embed the same seeded sample of 20 Newsgroups messages (``--per-split`` from the
train split, as many from the test split), normalised as ingest normalises them:

- ``transformer``: all-MiniLM-L6-v2 (sentence-transformers), the real model, on this machine's CPU;
- ``static``: its distilled static embeddings (model2vec), the fast CPU backend.

Speed is documents per second over the whole sample (median of ``--repeats`` runs for the static
backend; the transformer runs once, it takes minutes). Quality is the accuracy on the test
messages of two classifiers trained on the train messages' vectors: 10-nearest-neighbour vote
(cosine) and a linear probe (logistic regression). Writes ``benchmarks/results/embeddings.md``.
The GPU path of the transformer backend is not timed: these machines have no GPU.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier

from benchmarks.newsgroups import load_newsgroups

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "embeddings.md"


def sample(per_split: int, seed: int = 0) -> tuple[list[str], np.ndarray, list[str], np.ndarray]:
    """(train texts, train labels, test texts, test labels), ``per_split`` of each, seeded."""
    from dataselect.normalize import normalize_text

    frame = load_newsgroups()
    parts = []
    for split in ("train", "test"):
        rows = frame[frame["split"] == split]
        rows = rows.sample(n=min(per_split, len(rows)), random_state=seed)
        parts += [[normalize_text(t) for t in rows["text"]], rows["label"].to_numpy()]
    return parts[0], parts[1], parts[2], parts[3]


def quality(train: np.ndarray, train_labels: np.ndarray, test: np.ndarray, test_labels: np.ndarray) -> dict[str, float]:
    knn = KNeighborsClassifier(n_neighbors=10, metric="cosine").fit(train, train_labels)
    probe = LogisticRegression(C=10.0, max_iter=2000).fit(train, train_labels)
    return {
        "knn_accuracy": float((knn.predict(test) == test_labels).mean()),
        "probe_accuracy": float((probe.predict(test) == test_labels).mean()),
    }


def measure(backend: str, texts: list[str], repeats: int) -> tuple[np.ndarray, list[float], str]:
    """(vectors, seconds per run, embedder name); the model is loaded before the clock starts."""
    from dataselect.embedding import make_embedder

    embedder = make_embedder(backend, device="cpu") if backend == "transformer" else make_embedder(backend)
    embedder.embed(texts[:8])  # load weights and warm up outside the timing
    seconds, vectors = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        vectors = embedder.embed(texts)
        seconds.append(time.perf_counter() - started)
    return vectors, seconds, embedder.name


def run(per_split: int, repeats: int, results: Path = RESULTS) -> list[dict]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    train_texts, train_labels, test_texts, test_labels = sample(per_split)
    texts = train_texts + test_texts
    rows = []
    for backend, runs in (("static", repeats), ("transformer", 1)):
        vectors, seconds, name = measure(backend, texts, runs)
        n_train = len(train_texts)
        row = {
            "backend": backend,
            "model": name,
            "dim": int(vectors.shape[1]),
            "runs": runs,
            "seconds": float(np.median(seconds)),
            "docs_per_second": len(texts) / float(np.median(seconds)),
            **quality(vectors[:n_train], train_labels, vectors[n_train:], test_labels),
        }
        rows.append(row)
        print(f"[embeddings] {row}", flush=True)
    text = markdown(rows, len(train_texts), len(test_texts))
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(text)
    print(text)
    return rows


def markdown(rows: list[dict], n_train: int, n_test: int) -> str:
    by = {r["backend"]: r for r in rows}
    lines = [
        "# Embedding backends (`python -m benchmarks.embeddings`)",
        "",
        f"{n_train:,} 20 Newsgroups training messages and {n_test:,} test messages (seeded sample, ingest-normalised), "
        f"embedded on {platform.machine()} with {os.cpu_count()} CPUs. Quality: accuracy over the 20 groups on the test "
        "messages of a 10-nearest-neighbour vote (cosine) and of a logistic-regression probe, both trained on the training "
        "messages' vectors.",
        "",
        "| backend | model | dim | runs | seconds (median) | docs/s | kNN accuracy | linear-probe accuracy |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['backend']} | {r['model']} | {r['dim']} | {r['runs']} | {r['seconds']:.1f} | {r['docs_per_second']:,.0f} | "
            f"{r['knn_accuracy']:.3f} | {r['probe_accuracy']:.3f} |"
        )
    if "static" in by and "transformer" in by:
        s, t = by["static"], by["transformer"]
        lines += [
            "",
            f"Static / transformer: {s['docs_per_second'] / t['docs_per_second']:.0f}× the speed, "
            f"{s['knn_accuracy'] - t['knn_accuracy']:+.3f} kNN and {s['probe_accuracy'] - t['probe_accuracy']:+.3f} "
            "probe accuracy.",
        ]
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-split", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    run(args.per_split, args.repeats, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
