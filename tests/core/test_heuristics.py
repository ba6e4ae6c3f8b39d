"""Heuristic quality rules: hand-computed statistics, crafted junk, real newsgroup posts."""

import numpy as np
import pyarrow as pa
import pytest

from dataselect.scorers.base import Batch
from dataselect.scorers.heuristics import HeuristicRules

ARTICLE = (
    "The committee met on Tuesday to discuss the budget for the coming year. Several members "
    "argued that the library should have longer opening hours, and that the money for this "
    "could come from the road maintenance fund. Others were worried about the cost of heating "
    "the old building during the winter months. After a long debate the chair proposed a "
    "compromise: the library will stay open two extra evenings a week, and the heating system "
    "will be inspected before any decision is made. The proposal was accepted with a large "
    "majority, and the next meeting is planned for the first week of March."
)


def score(texts, **overrides):
    return HeuristicRules(**overrides).score(Batch(pa.table({"text": texts})))


def test_statistics_match_hand_computation():
    out = score(["The cat\nThe cat\n\nsat on the mat..."])
    # Words: The cat The cat sat on the mat... -> 8 words, 3+3+3+3+3+2+3+6 = 26 characters.
    assert out["word_count"][0] == 8
    assert out["mean_word_length"][0] == pytest.approx(26 / 8)
    assert out["symbol_word_ratio"][0] == pytest.approx(1 / 8)
    assert out["alpha_word_fraction"][0] == pytest.approx(1.0)
    assert out["stop_word_count"][0] == 3
    # Three non-blank lines, the second "The cat" is a duplicate, the last ends with "...".
    assert out["duplicate_line_fraction"][0] == pytest.approx(1 / 3)
    assert out["ellipsis_line_fraction"][0] == pytest.approx(1 / 3)
    assert out["non_alnum_fraction"][0] == pytest.approx(3 / 26)
    assert out["longest_word"][0] == 6
    # Fails word_count first (8 < 30), also symbol ratio, duplicates and ellipsis lines.
    assert not out["keep"][0]
    assert out["reason"][0] == "word_count 8 < 30"
    failed = {"word_count", "symbol_word_ratio", "duplicate_line_fraction", "ellipsis_line_fraction"}
    assert out["score"][0] == pytest.approx(1 - len(failed) / 11)
    for rule in failed:
        assert not out[f"{rule}_pass"][0]


JUNK = {
    "longest_word": ARTICLE + "\nAttachment: " + "QmFzZTY0IGJsb2IgZGF0YQ" * 20 + "==",
    "lorem_ipsum": "Welcome to the home page of our company.\n" + ARTICLE + "\nLorem ipsum dolor sit amet, consectetur adipiscing elit.",
    "boilerplate_line_fraction": "We use cookies to improve your experience on the site.\n"
    "By continuing you agree to the cookie policy and to the privacy policy.\n"
    "Please enable JavaScript in your browser to see the comments.\n"
    "Read the terms of use before you post anything.\n" + ARTICLE,
    "word_count": "  \n Hi \n\n",
    "duplicate_line_fraction": "\n".join(["Buy the best watches now with free shipping to your home!"] * 20),
    "non_alnum_fraction": " ".join(["the{$(a)};", "to[@x]!?", "and<%b%>", "of=>(z)"] * 15),
    "ellipsis_line_fraction": "\n".join(
        ["and then the story goes on and on without an end to it..."] * 3
        + [f"line {i} of the tale is complete and with an end." for i in range(4)]
    ),
    "mean_word_length": " ".join(["a to b of c the d and e"] * 10),
    "alpha_word_fraction": ARTICLE[:200] + " " + " ".join(str(1000 + i) for i in range(60)),
}


@pytest.mark.parametrize("rule", sorted(JUNK))
def test_crafted_junk_fails_with_the_right_rule(rule):
    out = score([JUNK[rule], ARTICLE])
    assert not out["keep"][0]
    assert out["reason"][0].startswith(rule + " "), out["reason"][0]
    assert not out[f"{rule}_pass"][0]
    # The clean article in the same batch passes every rule.
    assert out["keep"][1] and out["reason"][1] == "" and out["score"][1] == 1.0


def test_reason_format_names_value_and_threshold():
    out = score([" ".join(["ab cd ef"] * 20)])
    assert out["reason"][0] == "mean_word_length 2.00 < 3.0"


def test_empty_batch_and_empty_text():
    out = score(pa.array([], pa.string()))
    assert len(out["keep"]) == 0
    out = score(["", None])
    assert list(out["keep"]) == [False, False]
    assert out["reason"][0] == "word_count 0 < 30"


@pytest.mark.newsgroups
def test_real_newsgroup_posts_mostly_pass(newsgroups_records):
    train = [r["text"] for r in newsgroups_records if r["split"] == "train"]
    rng = np.random.default_rng(0)
    sample = [train[i] for i in rng.choice(len(train), size=500, replace=False)]
    out = score(sample)
    assert out["keep"].mean() >= 0.95
    assert out["keep"].dtype == bool and out["score"].dtype == np.float64


def test_boilerplate_is_c4s_phrases_not_every_cookie():
    """C4 drops cookie *policy* notices; a baking review mentioning cookie sheets is content."""
    review = (
        "I bought two of these cookie sheets for holiday baking and they are great.\n"
        "The cookies brown evenly and slide right off, even without parchment paper."
    )
    banners = [
        "Our partners use cookies to store information on your device.",
        "This site uses cookies. Read our Cookie Policy.",
        "By continuing you accept the use of cookies and the terms of service.",
    ]
    out = score([review, *banners])
    assert out["boilerplate_line_fraction"][0] == 0.0
    assert list(out["boilerplate_line_fraction"][1:]) == [1.0, 1.0, 1.0]
