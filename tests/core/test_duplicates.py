"""Exact and near duplicates: planted copies, the keep rule, MinHash against datasketch and
exact Jaccard, and near-duplicate recall/precision on real newsgroup posts."""

import numpy as np
import pyarrow as pa
import pytest
from datasketch import MinHash

from dataselect.normalize import content_hashes
from dataselect.scorers.base import Batch
from dataselect.scorers.duplicates import (
    ExactDuplicates,
    MinHashSignatures,
    NearDuplicates,
    lsh_parameters,
    shingle_hashes,
)

BASE = [
    "The library will open two extra evenings a week from March.",
    "Heating costs rose sharply during the cold winter months.",
    "A new bicycle lane connects the station to the old harbour.",
    "The choir performs its spring concert in the town hall.",
    "Road repairs on the main street start next Monday morning.",
]


def exact(texts, shards=None, rows=None, with_hash=True):
    columns = {"id": [f"doc{i}" for i in range(len(texts))], "text": texts}
    if with_hash:
        columns["content_hash"] = content_hashes(texts)
    columns["shard"] = shards or ["s0"] * len(texts)
    columns["row"] = rows if rows is not None else list(range(len(texts)))
    return ExactDuplicates().score(Batch(pa.table(columns)))


def test_exact_duplicates_with_case_and_whitespace_variants():
    variants = [
        BASE[0].upper(),
        "  " + BASE[1].replace(" ", "   ") + "\n",
        BASE[1].replace(" ", "\t"),
        BASE[3].lower().replace(" ", " \n "),
    ]
    texts = BASE + variants
    out = exact(texts)
    # Every planted copy is found (recall 100%) and points to its original.
    np.testing.assert_array_equal(out["group"], [0, 1, 2, 3, 4, 0, 1, 1, 3])
    np.testing.assert_array_equal(out["keep"], [True] * 5 + [False] * 4)
    np.testing.assert_array_equal(out["group_size"], [2, 3, 1, 2, 1, 2, 3, 3, 2])
    np.testing.assert_array_equal(out["is_duplicate"], [True, True, False, True, False, True, True, True, True])
    assert list(out["reason"]) == [""] * 5 + [
        "exact duplicate of doc0",
        "exact duplicate of doc1",
        "exact duplicate of doc1",
        "exact duplicate of doc3",
    ]
    assert out["group"].dtype == np.int64
    # Without a content_hash column the text is hashed the same way.
    fallback = exact(texts, with_hash=False)
    np.testing.assert_array_equal(fallback["group"], out["group"])


def test_exact_keep_rule_is_first_in_shard_then_row_order():
    # Batch order is scrambled; rows compare as numbers (row 2 before row 10) and shards by name.
    texts = [BASE[0], BASE[0].upper(), BASE[0] + " ", BASE[2], BASE[2]]
    shards = ["shard-b", "shard-a", "shard-a", "shard-a", "shard-a"]
    rows = [0, 10, 2, 5, 7]
    out = exact(texts, shards, rows)
    np.testing.assert_array_equal(out["keep"], [False, False, True, True, False])
    np.testing.assert_array_equal(out["group"], [2, 2, 2, 3, 3])
    assert out["reason"][0] == "exact duplicate of doc2"
    # A new shard that sorts later never takes the "kept" slot from an existing record.
    more = exact(texts + [BASE[0]], shards + ["shard-c"], rows + [0])
    np.testing.assert_array_equal(more["keep"], [False, False, True, True, False, False])


def signatures(texts, **overrides):
    return MinHashSignatures(**overrides).score(Batch(pa.table({"text": texts})))["signature"]


def shingle_set(text):
    words = text.lower().split()
    if len(words) < 5:
        return {" ".join(words)}
    return {" ".join(words[i : i + 5]) for i in range(len(words) - 4)}


def test_minhash_matches_datasketch_and_is_deterministic():
    texts = [" ".join(BASE), BASE[0], "four words only here", "", "   "]
    sig = signatures(texts)
    assert sig.shape == (5, 128) and sig.dtype == np.uint32
    np.testing.assert_array_equal(sig, signatures(texts))
    hashes, parents = shingle_hashes(texts)
    np.testing.assert_array_equal(np.bincount(parents), [len(shingle_set(t)) for t in texts[:3]] + [1, 1])
    # Same permutations and min as datasketch, fed our shingle hashes through an identity hashfunc.
    for i in range(len(texts)):
        reference = MinHash(num_perm=128, seed=1, hashfunc=int)
        reference.update_batch(hashes[parents == i])
        np.testing.assert_array_equal(reference.hashvalues, sig[i])
    # Case and whitespace do not matter; empty and blank texts are identical.
    np.testing.assert_array_equal(signatures([BASE[0].upper().replace(" ", "\n")])[0], sig[1])
    np.testing.assert_array_equal(sig[3], sig[4])
    assert not np.array_equal(signatures(texts, seed=2), sig)


def test_minhash_estimates_exact_shingle_jaccard():
    rng = np.random.default_rng(0)
    vocabulary = np.array([f"w{i}" for i in range(400)])
    base = list(rng.choice(vocabulary, 300))
    texts = [" ".join(base)]
    for keep in (280, 220, 150, 60):
        texts.append(" ".join(base[:keep] + list(rng.choice(vocabulary, 300 - keep))))
    sig = signatures(texts)
    for i in range(1, len(texts)):
        a, b = shingle_set(texts[0]), shingle_set(texts[i])
        true = len(a & b) / len(a | b)
        # Standard error sqrt(J(1-J)/128) <= 0.045; 0.12 is more than 2.5 of them.
        assert abs((sig[0] == sig[i]).mean() - true) < 0.12


def near(texts, sig, threshold, shards=None, rows=None):
    n = len(texts)
    table = pa.table(
        {
            "id": [f"doc{i}" for i in range(n)],
            "shard": shards or ["s0"] * n,
            "row": rows if rows is not None else list(range(n)),
            "minhash.signature": pa.FixedSizeListArray.from_arrays(pa.array(sig.ravel()), sig.shape[1]),
        }
    )
    return NearDuplicates(threshold=threshold).score(Batch(table))


def test_near_duplicate_groups_keep_rule_and_reason():
    long_text = " ".join(BASE * 4)
    edited = long_text.replace("cold winter", "freezing winter", 1)
    texts = [BASE[2] + " and more words here", edited, long_text, "something else entirely, not like the others"]
    sig = signatures(texts)
    out = near(texts, sig, 0.8, shards=["s1", "s1", "s0", "s1"], rows=[0, 1, 3, 2])
    # The unedited copy in shard s0 comes first and is kept.
    np.testing.assert_array_equal(out["keep"], [True, False, True, True])
    np.testing.assert_array_equal(out["group"], [0, 2, 2, 3])
    np.testing.assert_array_equal(out["group_size"], [1, 2, 2, 1])
    j = (sig[1] == sig[2]).mean()
    assert out["reason"][1] == f"near duplicate of doc2 (jaccard {j:.2f})"
    assert out["jaccard"][1] == pytest.approx(j) and out["jaccard"][2] == 1.0
    assert out["reason"][0] == out["reason"][2] == ""


def test_lsh_parameters_favour_recall():
    bands, rows = lsh_parameters(0.8, 128)
    assert (bands, rows) == (14, 9) and bands * rows <= 128
    # A pair at exactly the threshold becomes a candidate with probability 1 - (1 - s^r)^b.
    assert 1 - (1 - 0.8**rows) ** bands > 0.85
    assert 1 - (1 - 0.3**rows) ** bands < 0.001
    # datasketch's default equal weights would find such a pair less than half of the time.
    b, r = lsh_parameters(0.8, 128, false_negative_weight=0.5)
    assert 1 - (1 - 0.8**r) ** b < 0.5


def mutate(text, rng):
    """Replace 3-5% of the words (at least one) at random positions."""
    words = text.split()
    count = max(1, int(round(rng.uniform(0.03, 0.05) * len(words))))
    for i in rng.choice(len(words), count, replace=False):
        words[i] = f"edit{rng.integers(10**6)}"
    return " ".join(words)


@pytest.mark.newsgroups
def test_near_duplicate_recall_and_precision_on_newsgroups(newsgroups_records):
    rng = np.random.default_rng(0)
    train = [r["text"] for r in newsgroups_records if r["split"] == "train"]
    pool = [train[i] for i in rng.choice(len(train), 1000, replace=False)]
    sources = rng.choice(len(pool), 100, replace=False)
    texts = pool + [mutate(pool[i], rng) for i in sources]
    sig = signatures(texts)
    # Scattered edits to 3-5% of words remove up to 5 shingles each, so the true 5-gram
    # Jaccard of these copies is ~0.55-0.8 (median 0.70): the default 0.8 would miss most.
    out = near(texts, sig, threshold=0.5)
    copies = np.arange(1000, 1100)
    # Recall over planted pairs: the copy is grouped with its source.
    recall = np.mean(out["group"][copies] == out["group"][sources])
    # Precision over records: of the records dropped as near duplicates, the planted copies.
    dropped = np.flatnonzero(~out["keep"])
    precision = np.isin(dropped, copies).mean()
    assert recall >= 0.90, recall
    assert precision >= 0.95, precision
    # Sources precede their copies in (shard, row) order, so the source is the one kept.
    assert out["keep"][sources].all()


def test_mass_duplicates_form_one_group_beyond_the_bucket_pair_cap():
    texts = [" ".join(BASE)] * 250 + BASE
    out = near(texts, signatures(texts), 0.8)
    assert out["group_size"][0] == 250 and (out["group"][:250] == 0).all()
    assert out["keep"].sum() == 1 + len(BASE)
