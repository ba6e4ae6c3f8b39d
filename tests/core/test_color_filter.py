"""CoLoR-Filter and its tiny LM on a synthetic two-domain corpus (space vs cooking)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from dataselect import tiny_lm
from dataselect.scorers.base import Batch
from dataselect.scorers.color_filter import ColorFilter, resolve_device

COMMON = "the a of and is with in to we saw it this that for on".split()
SPACE = ("star planet orbit telescope galaxy comet rocket moon solar nebula astronaut satellite gravity asteroid launch").split()
COOKING = "flour butter oven recipe garlic onion simmer bake sauce pepper salt kitchen dinner pasta soup".split()

# Small everything: the tests check behaviour, not quality at scale.
SMALL = dict(
    vocab_size=200,
    context_length=32,
    max_tokens_scored=64,
    d_model=32,
    n_layers=1,
    n_heads=2,
    adaptive_cutoffs=(16,),
    prior_steps=60,
    conditional_steps=30,
    batch_size=16,
    learning_rate=1e-2,
    eval_batch_size=32,
    device="cpu",
    cpu_threads=1,
)


def documents(words: list[str], count: int, seed: int) -> list[str]:
    """Texts alternating a common word and a domain word, 20-40 words each."""
    rng = np.random.default_rng(seed)
    texts = []
    for _ in range(count):
        length = int(rng.integers(10, 20))
        pairs = zip(rng.choice(COMMON, length), rng.choice(words, length))
        texts.append(" ".join(f"{common} {domain}" for common, domain in pairs))
    return texts


def batch(texts: list[str]) -> Batch:
    return Batch(pa.table({"id": [str(i) for i in range(len(texts))], "text": texts}))


@pytest.fixture(scope="module")
def corpus() -> dict[str, list[str]]:
    return {
        "pool": documents(SPACE, 60, 1) + documents(COOKING, 60, 2),
        "target": documents(SPACE, 30, 3),
        "space": documents(SPACE, 30, 4),
        "cooking": documents(COOKING, 30, 5),
    }


@pytest.fixture(scope="module")
def fitted(corpus) -> ColorFilter:
    return ColorFilter(**SMALL).fit(batch(corpus["pool"]), batch(corpus["target"]))


def test_target_domain_scores_higher(fitted, corpus):
    space = fitted.score(batch(corpus["space"]))["score"]
    cooking = fitted.score(batch(corpus["cooking"]))["score"]
    # Fine-tuning on space text lowers the loss on space text and raises it on cooking text.
    assert space.mean() - cooking.mean() > 0.5
    assert space.min() > cooking.max()  # perfectly separated on this easy corpus


def test_conditional_model_has_lower_loss_on_held_out_target(fitted, corpus):
    columns = fitted.score(batch(corpus["space"]))
    assert columns["loss_conditional"].mean() < columns["loss_prior"].mean() - 0.1
    np.testing.assert_allclose(columns["score"], columns["loss_prior"] - columns["loss_conditional"])
    # The prior learned something: far below the uniform-distribution loss log(n_classes).
    assert columns["loss_prior"].mean() < np.log(fitted.vocab_.n_classes) - 0.5


def test_save_load_gives_identical_scores(fitted, corpus, tmp_path):
    fitted.save(tmp_path)
    assert (tmp_path / "color.safetensors").exists() and not list(tmp_path.glob("*.pkl"))
    loaded = ColorFilter.load(tmp_path)
    assert loaded.config == fitted.config
    texts = corpus["space"][:5] + corpus["cooking"][:5]
    expected, actual = fitted.score(batch(texts)), loaded.score(batch(texts))
    for column in ("loss_prior", "loss_conditional", "score"):
        np.testing.assert_array_equal(actual[column], expected[column])


def test_fit_is_deterministic_for_a_seed(corpus):
    short = {**SMALL, "prior_steps": 8, "conditional_steps": 4}
    texts = corpus["space"][:5] + corpus["cooking"][:5]
    runs = [ColorFilter(**short, seed=seed).fit(batch(corpus["pool"]), batch(corpus["target"])).score(batch(texts)) for seed in (0, 0, 1)]
    np.testing.assert_array_equal(runs[0]["score"], runs[1]["score"])
    assert not np.array_equal(runs[0]["score"], runs[2]["score"])


def test_scores_do_not_depend_on_batch_composition(fitted, corpus):
    # Windows are bucketed by length and trimmed per batch; a record's loss must not change.
    texts = [corpus["space"][0], corpus["cooking"][0] * 3, "moon", corpus["space"][1][:40]]
    together = fitted.score(batch(texts))["score"]
    alone = np.array([fitted.score(batch([text]))["score"][0] for text in texts])
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-5)


def test_empty_texts_get_nan(fitted):
    columns = fitted.score(batch(["", "   ", "the moon and the star"]))
    assert np.isnan(columns["score"][:2]).all() and np.isnan(columns["loss_prior"][:2]).all()
    assert np.isfinite(columns["score"][2])


def test_device_resolution():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


def test_make_windows_known_answer():
    flat = np.array([10, 11, 12, 20, 21, 22, 23, 24])
    windows = tiny_lm.make_windows(flat, np.array([3, 0, 5]), context_length=2, bos=99)
    np.testing.assert_array_equal(windows.record, [0, 0, 2, 2, 2])
    np.testing.assert_array_equal(windows.targets.numpy(), [[10, 11], [12, -1], [20, 21], [22, 23], [24, -1]])
    np.testing.assert_array_equal(windows.inputs.numpy(), [[99, 10], [99, 12], [99, 20], [99, 22], [99, 24]])


def test_compact_vocab_orders_by_frequency_and_maps_rare_to_unk():
    flat = np.array([5, 7, 7, 9, 9, 9, 3])
    vocab = tiny_lm.CompactVocab.fit(flat, vocab_size=2)
    np.testing.assert_array_equal(vocab.wordpiece_ids, [9, 7])
    np.testing.assert_array_equal(vocab.encode(np.array([9, 7, 5, 3])), [1, 2, 0, 0])
    assert vocab.n_classes == 3 and vocab.bos == 3
