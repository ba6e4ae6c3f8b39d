"""The selection's pool scorers reading the shards' wide score columns from their files, one at a
time, decide exactly what they decide with every column in memory."""

import hashlib

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dataselect.build import score_for_selection
from dataselect.embedding import StaticEmbedder
from dataselect.pipeline import make_scorers, score_shard
from dataselect.scorers import DEFAULT_POOL_SCORERS
from dataselect.scorers.base import Batch
from dataselect.scorers.label_noise import LabelClassifier
from dataselect.shard_pool import ShardColumns


def _pool(newsgroups_records, n: int = 900) -> pa.Table:
    """Real messages with near copies (a word appended) and every 11th label moved to another group, in three shards."""
    train = [r for r in newsgroups_records if r["split"] == "train"][:n]
    texts = [r["text"] if i % 10 else train[i - 1]["text"] + " again" for i, r in enumerate(train)]
    groups = sorted({r["label"] for r in train})
    labels = [groups[(groups.index(r["label"]) + 1) % len(groups)] if i % 11 == 0 else r["label"] for i, r in enumerate(train)]
    size = n // 3
    return pa.table(
        {
            "id": [f"m{i}" for i in range(n)],
            "text": texts,
            "label": labels,
            "shard": [f"s{i // size}" for i in range(n)],
            "row": pa.array([i % size for i in range(n)], pa.int64()),
            "content_hash": [hashlib.sha1(t.encode()).hexdigest() for t in texts],
        }
    )


def test_pool_scorers_read_the_wide_columns_from_the_shards_and_decide_the_same(newsgroups_records, tmp_path):
    records = _pool(newsgroups_records)
    vectors = StaticEmbedder().embed(records.column("text").to_pylist())
    scorers = [*make_scorers(["minhash"]), LabelClassifier(max_train_per_fold=400).fit(Batch(records, vectors))]
    files, shards = [], records.column("shard").to_numpy(zero_copy_only=False)
    for shard in sorted(set(shards)):
        rows = np.flatnonzero(shards == shard)
        files.append(tmp_path / f"{shard}.parquet")
        pq.write_table(score_shard(records.take(rows), vectors[rows], scorers), files[-1])
    whole = pa.concat_tables([pq.read_table(f) for f in files])
    wide = ["minhash.signature", "label_classifier.proba"]
    assert all(pa.types.is_fixed_size_list(whole.schema.field(name).type) for name in wide)
    options = {"label_noise": {"max_train_per_fold": 400}}
    expected = score_for_selection(whole, vectors, DEFAULT_POOL_SCORERS, options)
    stored = ShardColumns(files, wide)
    assert ShardColumns(files).names == wide  # unnamed: the files' list columns, as filtered_set reads them
    frame = score_for_selection(whole.drop_columns(wide), vectors, DEFAULT_POOL_SCORERS, options, stored=stored)
    pd.testing.assert_frame_equal(frame, expected)
    # The scorers found something to decide on: near copies and moved labels.
    assert (~frame["near_dup.keep"]).sum() >= 50 and (~frame["label_noise.keep"]).sum() >= 40
    # The probabilities' settings travel in the first shard's field metadata, as in a concatenation.
    assert stored.field("label_classifier.proba").metadata == whole.schema.field("label_classifier.proba").metadata


def test_stored_columns_read_whole_or_as_a_matrix_and_a_shard_without_one_reads_as_nulls(tmp_path):
    vectors = pa.list_(pa.int64(), 2)
    pq.write_table(pa.table({"v": pa.array([[1, 2], [3, 4]], vectors)}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"v": pa.array([[5, 6]], vectors)}), tmp_path / "b.parquet")
    pq.write_table(pa.table({"x": [1, 2, 3]}), tmp_path / "c.parquet")
    np.testing.assert_array_equal(
        ShardColumns([tmp_path / "a.parquet", tmp_path / "b.parquet"], ["v"]).matrix("v", np.uint32), [[1, 2], [3, 4], [5, 6]]
    )
    stored = ShardColumns([tmp_path / "a.parquet", tmp_path / "c.parquet"], ["v"])
    assert stored.read("v").to_pylist() == [[1, 2], [3, 4], None, None, None]
    with pytest.raises(ValueError, match="has no 'v' column"):
        stored.matrix("v", np.uint32)
