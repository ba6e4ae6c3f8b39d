"""The selection benchmarks: a corrupted pool, a target reference, and dev / test evaluation sets.

The setup follows DSIR's targeted-selection experiments (Xie et al. 2023, "Data Selection for
Language Models via Importance Resampling"): a large mixed pool, a small unlabelled sample of the
wanted domain as the reference, and a fixed downstream recipe scored on held-out in-domain data.
Here the pool is the 20 Newsgroups *training* messages corrupted by
:func:`dataselect.corruption.corrupt_pool` (exact and near duplicates, flipped labels, junk), the
target domain is ``sci.*``, the reference is 200 seeded ``sci.*`` *test* messages and the
remaining ``sci.*`` test messages are split, by the same seed, into a **dev** half (every choice
is made there) and a **test** half (headline numbers only).

The second corpus (``corpus="amazon"``) is the Multi-Domain Sentiment Dataset (Blitzer, Dredze
and Pereira, ACL 2007): the pool is every ``train`` review of books, dvd, electronics and kitchen,
the target is kitchen, the task is sentiment. Labels are shared by every domain, so a selection
must find in-domain *and* correctly labelled reviews. The ``domain`` field never reaches a
selection: it only marks the ground truth ``in_target``.

The pool goes through the platform's own ingest (:func:`dataselect.ingest.read_shard` on JSONL
landing shards), so records, content hashes, shard/row keys and quarantined rows are exactly what
the Dagster assets would see. Embeddings are cached under ``benchmarks/work/`` (git-ignored) as
``.npy`` keyed by the embedder and a hash of the texts.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from dataselect import records as cols
from dataselect.corruption import GROUND_TRUTH_COLUMNS, SOURCE_ID, TRUE_LABEL, corrupt_pool
from dataselect.ingest import read_shard
from dataselect.normalize import normalize_text
from dataselect.storage import atomic_write_bytes

REPO = Path(__file__).resolve().parents[1]
WORK_DIR = REPO / "benchmarks" / "work"
IN_TARGET = "in_target"  # ground truth: the record comes from the target domain


CORPORA = ("newsgroups", "amazon")


def newsgroups_path() -> Path:
    """``$DATASELECT_NEWSGROUPS``, else ``../shared/data/20newsgroups`` next to the repository."""
    return Path(os.environ.get("DATASELECT_NEWSGROUPS", REPO.parent / "shared" / "data" / "20newsgroups"))


def amazon_path() -> Path:
    """``$DATASELECT_AMAZON``, else ``../shared/data/amazon-multidomain`` next to the repository."""
    return Path(os.environ.get("DATASELECT_AMAZON", REPO.parent / "shared" / "data" / "amazon-multidomain"))


def corpus_path(corpus: str) -> Path:
    return newsgroups_path() if corpus == "newsgroups" else amazon_path()


def load_newsgroups(path: str | os.PathLike | None = None) -> pd.DataFrame:
    """Every message of the gzipped JSONL shards: ``id, text, label, split``."""
    directory = Path(path) if path is not None else newsgroups_path()
    return _load(str(directory.resolve())).copy()


@functools.lru_cache(maxsize=2)
def _load(directory: str) -> pd.DataFrame:
    directory = Path(directory)
    files = sorted(directory.glob("*.jsonl.gz"))
    if not files:
        raise FileNotFoundError(f"no corpus shards (*.jsonl.gz) under {directory}; set DATASELECT_NEWSGROUPS or DATASELECT_AMAZON")
    rows = []
    for file in files:
        with gzip.open(file, "rt", encoding="utf-8") as handle:
            rows.extend(json.loads(line) for line in handle)
    return pd.DataFrame(rows, columns=[cols.ID, cols.TEXT, cols.LABEL, "split", "domain"])


def _in_target(corpus: str, target: str, ids: pd.Series, labels: pd.Series) -> np.ndarray:
    """Ground truth only: newsgroups by (true) label prefix, Amazon by the domain in the id."""
    if corpus == "newsgroups":
        return labels.fillna("").astype(str).str.startswith(target).to_numpy()
    return ids.fillna("").astype(str).str.startswith(f"{target}-").to_numpy()


@dataclass
class PoolConfig:
    """The benchmark's fixed setup (the issue's numbers are the defaults)."""

    corpus: str = "newsgroups"  # one of CORPORA
    seed: int = 0  # corruption, reference choice, quick subsamples
    exact_dup: float = 0.10  # of the clean pool size
    near_dup: float = 0.05
    flip: float = 0.15
    junk: float = 0.03
    # The target domain: newsgroups whose name starts with this, or the Amazon domain.
    target_prefix: str | None = None  # None: "sci." for newsgroups, "kitchen" for amazon
    reference_size: int = 200  # target test records drawn as the reference
    dev_fraction: float = 0.5  # of the other target test records: dev (choices); the rest: test (headline)
    n_shards: int = 4  # landing shards the pool is split into (the platform scores per shard)
    # Quick mode (smoke tests): keep this many training records / dev and test records each (seeded).
    pool_limit: int | None = None
    eval_limit: int | None = None

    def __post_init__(self) -> None:
        if self.corpus not in CORPORA:
            raise ValueError(f"unknown corpus {self.corpus!r}; use one of {CORPORA}")
        if self.target_prefix is None:
            self.target_prefix = "sci." if self.corpus == "newsgroups" else "kitchen"


@dataclass
class Benchmark:
    """Everything a method needs, row-aligned where it matters."""

    config: PoolConfig
    shards: list[pa.Table]  # ingested records per landing shard (RECORD_SCHEMA columns)
    quarantine: pd.DataFrame  # rows ingest refused (shard, row, id, error, raw_excerpt)
    truth: pd.DataFrame  # one row per good record, in shard order: id + ground truth + in_target
    reference: pa.Table  # id, text, label (the labels are never used by the scorers)
    dev: pd.DataFrame  # id, text, label: every choice is made on it
    test: pd.DataFrame  # id, text, label: headline numbers only
    clean_target: pd.DataFrame  # id, text, label: the uncorrupted target-domain training records (the oracle's pool)
    raw_count: int
    landing_dir: Path
    notes: list[str] = field(default_factory=list)

    @property
    def records(self) -> pa.Table:
        return pa.concat_tables(self.shards)

    @property
    def evaluation(self) -> pd.DataFrame:
        """Dev then test, one evaluation set (a model is trained once and scored on both halves)."""
        return pd.concat([self.dev, self.test], ignore_index=True)

    @property
    def texts(self) -> list[str]:
        return [t for shard in self.shards for t in shard.column(cols.TEXT).to_pylist()]


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def build_benchmark(config: PoolConfig | None = None, path: str | os.PathLike | None = None, work_dir: Path = WORK_DIR) -> Benchmark:
    """Corrupt the training messages, land them as JSONL shards, ingest them, split the targets."""
    config = config or PoolConfig()
    path = corpus_path(config.corpus) if path is None else path
    corpus = load_newsgroups(path)
    rng = np.random.default_rng(config.seed)
    train = corpus[corpus["split"] == "train"].reset_index(drop=True)
    if config.pool_limit is not None and config.pool_limit < len(train):
        train = train.iloc[np.sort(rng.choice(len(train), config.pool_limit, replace=False))].reset_index(drop=True)
    test = corpus[corpus["split"] == "test"]
    test_target = test[_in_target(config.corpus, config.target_prefix, test[cols.ID], test[cols.LABEL])]
    test_target = test_target.sort_values(cols.ID).reset_index(drop=True)
    order = rng.permutation(len(test_target))
    n_reference = min(config.reference_size, len(test_target))
    n_dev = int(round(config.dev_fraction * (len(test_target) - n_reference)))
    reference = test_target.iloc[np.sort(order[:n_reference])]
    splits = {"dev": np.sort(order[n_reference : n_reference + n_dev]), "test": np.sort(order[n_reference + n_dev :])}
    if config.eval_limit is not None:
        splits = {
            name: np.sort(rng.choice(rows, config.eval_limit, replace=False)) if config.eval_limit < len(rows) else rows
            for name, rows in splits.items()
        }
    dev, test = (test_target.iloc[splits[name]].reset_index(drop=True) for name in ("dev", "test"))
    clean_target = train[_in_target(config.corpus, config.target_prefix, train[cols.ID], train[cols.LABEL])]
    clean_target = clean_target[clean_target[cols.TEXT].str.strip().astype(bool)]

    pool = corrupt_pool(train[[cols.ID, cols.TEXT, cols.LABEL]], config.seed, config.exact_dup, config.near_dup, config.flip, config.junk)
    # Land the pool as JSONL shards, as a user would drop files into the landing directory.
    landing = work_dir / f"landing-{_digest(config.__dict__, str(path))}"
    bounds = np.linspace(0, len(pool), config.n_shards + 1).astype(int)
    shards, quarantines = [], []
    for index, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
        file = landing / f"pool-{index:02d}.jsonl"
        if not file.exists():
            lines = pool.iloc[lo:hi][[cols.ID, cols.TEXT, cols.LABEL]].to_json(orient="records", lines=True, force_ascii=False)
            atomic_write_bytes(file, lines.encode("utf-8"))
        result = read_shard(file)
        shards.append(result.records)
        quarantines.append(result.quarantine.to_pandas())
    quarantine = pd.concat(quarantines, ignore_index=True)

    ids = [i for shard in shards for i in shard.column(cols.ID).to_pylist()]
    truth = pool.set_index(cols.ID).loc[ids, list(GROUND_TRUTH_COLUMNS)].reset_index()
    truth[IN_TARGET] = _in_target(config.corpus, config.target_prefix, truth[SOURCE_ID], truth[TRUE_LABEL])
    reference_table = pa.table(
        {
            cols.ID: reference[cols.ID].tolist(),
            cols.TEXT: [normalize_text(t) for t in reference[cols.TEXT]],
            cols.LABEL: reference[cols.LABEL].tolist(),
        }
    )
    return Benchmark(
        config=config,
        shards=shards,
        quarantine=quarantine,
        truth=truth,
        reference=reference_table,
        dev=dev[[cols.ID, cols.TEXT, cols.LABEL]].copy(),
        test=test[[cols.ID, cols.TEXT, cols.LABEL]].copy(),
        clean_target=pd.DataFrame(
            {
                cols.ID: clean_target[cols.ID].tolist(),
                cols.TEXT: [normalize_text(t) for t in clean_target[cols.TEXT]],
                cols.LABEL: clean_target[cols.LABEL].tolist(),
            }
        ),
        raw_count=len(pool),
        landing_dir=landing,
        notes=[f"{len(quarantine)} of {len(pool)} raw rows quarantined by ingest"] if len(quarantine) else [],
    )


@functools.cache
def code_fingerprint(package: Path = Path(cols.__file__).parent) -> str:
    """A digest of the ``dataselect`` package's source: caches keyed by it never outlive a change to
    the code that computed them (a cached embedding or score would otherwise report old code)."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\x00" + path.read_bytes())
    return digest.hexdigest()[:16]


def cached_embeddings(texts: list[str], embedder, work_dir: Path = WORK_DIR) -> tuple[np.ndarray, float]:
    """``(embedder.embed(texts), seconds it took)``, cached as ``.npy`` (+ ``.json`` with the seconds)
    keyed by the embedder name, the code and the texts, so a cached run still reports the real embedding cost."""
    digest = hashlib.sha256(f"{embedder.name}\x00{code_fingerprint()}".encode())
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass"))
        digest.update(b"\x00")
    file = Path(work_dir) / "embeddings" / f"{digest.hexdigest()[:24]}.npy"
    timing = file.with_suffix(".json")
    if file.exists() and timing.exists():
        return np.load(file, allow_pickle=False), float(json.loads(timing.read_text())["seconds"])
    started = time.perf_counter()
    vectors = embedder.embed(texts)
    seconds = time.perf_counter() - started
    file.parent.mkdir(parents=True, exist_ok=True)
    temporary = file.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(temporary, vectors, allow_pickle=False)
    os.replace(temporary, file)
    atomic_write_bytes(timing, json.dumps({"seconds": seconds, "texts": len(texts)}).encode())
    return vectors, seconds


def write_build_inputs(
    out: Path, clean: bool = False, path: str | os.PathLike | None = None, corpus: str = "newsgroups"
) -> dict[str, Path]:
    """Landing shards, ``reference.jsonl``, ``dev.jsonl`` and ``eval.jsonl`` (the test split) for
    ``dataselect build`` on this setup (``clean``: the training records as they are, no corruption)."""
    noise = {"exact_dup": 0, "near_dup": 0, "flip": 0, "junk": 0} if clean else {}
    bench = build_benchmark(PoolConfig(corpus=corpus, **noise), path, Path(out))
    out = Path(out)
    files = {"landing": bench.landing_dir, "reference": out / "reference.jsonl", "dev": out / "dev.jsonl", "eval": out / "eval.jsonl"}
    reference = bench.reference.select([cols.ID, cols.TEXT]).to_pandas()
    for name, frame in (("reference", reference), ("dev", bench.dev), ("eval", bench.test)):
        atomic_write_bytes(files[name], frame.to_json(orient="records", lines=True, force_ascii=False).encode("utf-8"))
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a benchmark's inputs for `dataselect build`.")
    parser.add_argument("--out", type=Path, required=True, help="folder for the landing shards, reference, dev and eval files")
    parser.add_argument("--corpus", choices=CORPORA, default="newsgroups")
    parser.add_argument("--clean", action="store_true", help="the training records without corruption")
    args = parser.parse_args(argv)
    files = write_build_inputs(args.out, args.clean, corpus=args.corpus)
    print(
        f"dataselect build --landing {files['landing']} --reference {files['reference']} --eval {files['eval']} "
        "--budget 0.1 --seed 0 --backend static --out <build folder>"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
