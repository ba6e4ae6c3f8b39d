"""Embedding backends: real MiniLM and its Model2Vec distillation, no stand-ins.

The static model is distilled once into the default cache (``$DATASELECT_CACHE`` or
``~/.cache/dataselect``) and reused by later runs; the first run pays the distillation.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from dataselect import storage
from dataselect.embedding import (
    StaticEmbedder,
    TransformerEmbedder,
    arrow_to_vectors,
    choose_backend,
    default_static_cache_dir,
    make_embedder,
    resolve_device,
    run_adaptive_batches,
    vectors_to_arrow,
)

TELESCOPE = "The telescope observed a distant galaxy"
ASTRONOMY = "Astronomers study stars and nebulae"
BAKING = "Add two cups of flour to the batter"

# Distinct lengths, several batches at batch_size=2, one long text that hits truncation.
TEXTS = [
    BAKING,
    "GPU drivers crash when the monitor wakes from sleep.",
    TELESCOPE,
    "Hockey playoffs start tonight",
    ASTRONOMY,
    "Is the new health insurance law constitutional? " * 6,
    "buy cheap meds",
]


@pytest.fixture(scope="module")
def transformer() -> TransformerEmbedder:
    # A small batch makes the length sort and order restoration span several batches.
    return TransformerEmbedder(device="cpu", batch_size=2)


@pytest.fixture(scope="module")
def static() -> StaticEmbedder:
    return StaticEmbedder()


@pytest.fixture(params=["transformer", "static"])
def embedder(request):
    return request.getfixturevalue(request.param)


# --- device resolution ---------------------------------------------------------------------


def test_resolve_device_auto_follows_cuda_flag():
    assert resolve_device("auto", cuda_available=True) == "cuda"
    assert resolve_device("auto", cuda_available=False) == "cpu"
    assert resolve_device("AUTO ", cuda_available=True) == "cuda"
    assert resolve_device() == ("cuda" if torch.cuda.is_available() else "cpu")


def test_resolve_device_explicit_choices():
    assert resolve_device("cpu", cuda_available=True) == "cpu"
    assert resolve_device("cuda", cuda_available=True) == "cuda"
    assert resolve_device("cuda:1", cuda_available=True) == "cuda:1"
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        resolve_device("cuda", cuda_available=False)
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu", cuda_available=True)


def test_choose_backend_prefers_transformer_only_on_cuda():
    assert choose_backend("auto", cuda_available=True) == "transformer"
    assert choose_backend("auto", cuda_available=False) == "static"
    # An explicit CPU device means the transformer would be the slow path: stay static.
    assert choose_backend("auto", device="cpu", cuda_available=True) == "static"
    assert choose_backend("transformer", cuda_available=False) == "transformer"
    assert choose_backend("static", cuda_available=True) == "static"
    with pytest.raises(ValueError, match="unknown embedding backend"):
        choose_backend("word2vec")


def test_make_embedder_builds_configured_backends():
    made = make_embedder("transformer", device="cpu", batch_size=4, max_tokens=128)
    assert isinstance(made, TransformerEmbedder)
    assert (made.device, made.config.batch_size, made.config.max_tokens) == ("cpu", 4, 128)
    made = make_embedder("static", pca_dims=64, max_tokens=100, batch_size=7)  # batch_size is the transformer's
    assert isinstance(made, StaticEmbedder)
    assert (made.dim, made.name, made.config.max_tokens) == (64, "static-minilm-l6-v2-64", 100)
    # A resource passes one set of options whatever the backend: the other backend's are ignored.
    made = make_embedder("static", device="cpu", half_precision=True)
    assert isinstance(made, StaticEmbedder) and made.dim == 256
    with pytest.raises(TypeError, match="batchsize"):
        make_embedder("transformer", device="cpu", batchsize=4)


def test_make_embedder_auto_drops_other_backends_options_but_not_typos():
    made = make_embedder("auto", device="cpu", half_precision=False, pca_dims=128)
    assert isinstance(made, StaticEmbedder) and made.dim == 128
    with pytest.raises(TypeError, match="pca_dimz"):
        make_embedder("auto", device="cpu", pca_dimz=128)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_transformer_on_missing_cuda_fails_at_construction():
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        TransformerEmbedder(device="cuda")


# --- adaptive batching ---------------------------------------------------------------------


def test_adaptive_batches_halve_on_out_of_memory_and_keep_order():
    calls: list[tuple[int, int]] = []
    cache_clears = []

    def run_batch(start: int, stop: int) -> list[int]:
        calls.append((start, stop))
        if stop - start > 3:
            raise torch.OutOfMemoryError("CUDA out of memory (synthetic capacity of 3 rows)")
        return list(range(start, stop))

    outputs, final = run_adaptive_batches(10, 16, run_batch, after_out_of_memory=lambda: cache_clears.append(1))
    assert final == 2  # 16 -> 8 -> 4 -> 2, the first size that fits
    assert len(cache_clears) == 3
    assert [i for part in outputs for i in part] == list(range(10))
    assert calls[:3] == [(0, 10), (0, 8), (0, 4)]
    assert calls[3:] == [(0, 2), (2, 4), (4, 6), (6, 8), (8, 10)]


def test_adaptive_batches_reraise_other_errors_and_oom_at_one():
    def broken(start: int, stop: int):
        raise ValueError("not a memory problem")

    with pytest.raises(ValueError):
        run_adaptive_batches(4, 4, broken)

    def always_oom(start: int, stop: int):
        raise torch.OutOfMemoryError("out of memory")

    with pytest.raises(torch.OutOfMemoryError):
        run_adaptive_batches(4, 4, always_oom)


# --- both backends -------------------------------------------------------------------------


def test_names_and_dims(transformer, static):
    assert (transformer.name, transformer.dim, transformer.device) == ("minilm-l6-v2", 384, "cpu")
    assert (static.name, static.dim, static.device) == ("static-minilm-l6-v2-256", 256, "cpu")


def test_float32_unit_norm(embedder):
    vectors = embedder.embed(TEXTS)
    assert vectors.dtype == np.float32
    assert vectors.shape == (len(TEXTS), embedder.dim)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_empty_input(embedder):
    vectors = embedder.embed([])
    assert vectors.shape == (0, embedder.dim) and vectors.dtype == np.float32


def test_semantic_known_answer(embedder):
    telescope, astronomy, baking = embedder.embed([TELESCOPE, ASTRONOMY, BAKING])
    assert telescope @ astronomy > telescope @ baking + 0.2


def test_order_restored_after_length_sort(embedder):
    vectors = embedder.embed(TEXTS)
    permutation = np.random.default_rng(7).permutation(len(TEXTS))
    shuffled = embedder.embed([TEXTS[i] for i in permutation])
    np.testing.assert_allclose(shuffled, vectors[permutation], atol=1e-5)
    # One at a time (no batch-mates, no padding) must give each text its own row.
    singles = np.vstack([embedder.embed([text]) for text in TEXTS])
    np.testing.assert_allclose(singles, vectors, atol=1e-4)
    # Wrong restoration would swap rows: each row matches only itself.
    assert (singles @ vectors.T).argmax(axis=1).tolist() == list(range(len(TEXTS)))


def test_deterministic(embedder):
    first = embedder.embed(TEXTS)
    assert np.array_equal(first, embedder.embed(TEXTS))


def test_transformer_truncates_to_max_tokens():
    long_text = TEXTS[5] + " Completely unrelated: recipe for pancakes with flour and eggs."
    short = TransformerEmbedder(device="cpu", max_tokens=32)
    # Past 32 tokens the appended sentence is invisible, so the two texts embed identically.
    a, b = short.embed([TEXTS[5], long_text])
    np.testing.assert_allclose(a, b, atol=1e-6)


# --- static backend: cache and real data ---------------------------------------------------


def test_static_cache_is_complete_and_reloads_identically(static):
    vectors = static.embed(TEXTS)
    assert (static.cache_dir / "model.safetensors").exists()
    staging_leftovers = list(static.cache_dir.parent.glob(f".{static.cache_dir.name}.*"))
    assert staging_leftovers == []
    fresh = StaticEmbedder(cache_dir=str(static.cache_dir))
    assert np.array_equal(fresh.embed(TEXTS), vectors)


def test_static_cache_dir_honours_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("DATASELECT_CACHE", str(tmp_path))
    assert default_static_cache_dir(64) == tmp_path / "static-minilm-64"
    assert StaticEmbedder(pca_dims=64).cache_dir == tmp_path / "static-minilm-64"
    assert StaticEmbedder(pca_dims=64, cache_dir=str(tmp_path / "x")).cache_dir == tmp_path / "x"
    monkeypatch.delenv("DATASELECT_CACHE")
    assert str(default_static_cache_dir(256)).endswith(".cache/dataselect/static-minilm-256")


def test_static_empty_text_is_a_zero_row(static):
    vectors = static.embed(["", TELESCOPE])
    assert np.all(vectors[0] == 0)
    assert abs(np.linalg.norm(vectors[1]) - 1) < 1e-5


def test_texts_the_static_model_cannot_represent_are_rejected_by_the_embeddable_filter(static):
    from dataselect.embedding import represented
    from dataselect.scorers.base import Batch
    from dataselect.scorers.embeddable import NO_EMBEDDING, Embeddable

    # One 900,000-character token (WordPiece gives up on words over 100 characters) and
    # symbols outside the vocabulary have no known token: the zero vector.
    texts = ["x" * 900_000, "\U0001f701\U0001f702 \U0001f703", TELESCOPE]
    vectors = static.embed(texts)
    assert represented(vectors).tolist() == [False, False, True]
    assert np.all(vectors[:2] == 0)
    out = Embeddable().score(Batch(pa.table({"id": ["a", "b", "c"], "text": texts}), vectors))
    assert out["keep"].tolist() == [False, False, True]
    assert out["reason"].tolist() == [NO_EMBEDDING, NO_EMBEDDING, ""]


def test_static_neighbours_share_newsgroup(static, newsgroups_records):
    # A seeded sample over all 20 groups (the largest holds ~6%): topical embeddings put most
    # nearest neighbours in the same newsgroup (0.52 measured on this sample, 0.69 on 4,000).
    rows = np.random.default_rng(0).choice(len(newsgroups_records), size=1500, replace=False)
    records = [newsgroups_records[i] for i in rows]
    labels = np.array([record["label"] for record in records])
    assert len(set(labels)) == 20
    vectors = static.embed([record["text"] for record in records])
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -np.inf)
    agreement = (labels[similarity.argmax(axis=1)] == labels).mean()
    assert agreement > 0.35


# --- Arrow ---------------------------------------------------------------------------------


def test_arrow_round_trip_is_zero_copy():
    vectors = np.random.default_rng(0).standard_normal((5, 8)).astype(np.float32)
    ids = [f"doc-{i}" for i in range(5)]
    table = vectors_to_arrow(ids, vectors)
    assert table.column_names == ["id", "vector"]
    assert table.schema.field("id").type == pa.string()
    assert table.schema.field("vector").type == pa.list_(pa.float32(), 8)
    back_ids, back = arrow_to_vectors(table)
    assert back_ids == ids
    assert back.dtype == np.float32 and np.array_equal(back, vectors)
    assert np.shares_memory(back, vectors)


def test_arrow_slices_chunks_empty_and_parquet(tmp_path):
    vectors = np.arange(24, dtype=np.float32).reshape(6, 4)
    table = vectors_to_arrow(np.array([str(i) for i in range(6)]), vectors)
    ids, sliced = arrow_to_vectors(table.slice(2, 3))
    assert ids == ["2", "3", "4"] and np.array_equal(sliced, vectors[2:5])
    ids, combined = arrow_to_vectors(pa.concat_tables([table.slice(0, 2), table.slice(4)]))
    assert ids == ["0", "1", "4", "5"] and np.array_equal(combined, vectors[[0, 1, 4, 5]])
    ids, empty = arrow_to_vectors(vectors_to_arrow([], np.empty((0, 4), dtype=np.float32)))
    assert ids == [] and empty.shape == (0, 4) and empty.dtype == np.float32
    storage.write_parquet(tmp_path / "vectors.parquet", table)
    ids, read = arrow_to_vectors(storage.read_parquet(tmp_path / "vectors.parquet"))
    assert ids == [str(i) for i in range(6)] and np.array_equal(read, vectors)
    with pytest.raises(ValueError, match="2 ids for 6 vectors"):
        vectors_to_arrow(["a", "b"], vectors)
