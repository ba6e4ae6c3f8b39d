"""Decontamination beyond exact copies: lightly edited evaluation texts planted in the pool are
found by shared word 13-grams and rejected by the selection, naming the evaluation record."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from dataselect import records as cols
from dataselect.decontamination import contamination, contamination_of_parts
from dataselect.selection import SelectionConfig, accounting, decide


def lightly_edited(text: str, rng: np.random.Generator) -> str:
    """Every 25th word replaced, the case changed, re-wrapped lines and a signature: no exact copy."""
    words = text.split()
    for i in range(0, len(words), 25):
        words[i] = rng.choice(["foo", "bar", "baz"])
    lines = [" ".join(words[i : i + 9]) for i in range(0, len(words), 9)]
    return "\n".join(lines).upper() + "\n-- \nsent from my terminal"


def test_known_answer():
    evaluation = ["one two three four five six seven eight nine ten eleven twelve thirteen fourteen", "too short to matter"]
    pool = [
        "One two three four five six seven eight nine ten eleven twelve thirteen, and more",  # 1 of e1's 2 13-grams
        "one two three four five six seven eight nine ten eleven twelve THIRTEEN FOURTEEN",  # 2 of 2 shared
        "one two three four five six seven eight nine ten eleven twelve",  # 12 words: no 13-gram
        "too short to matter",  # shorter than 13 tokens: exact copies are the hash check's job
        None,
    ]
    found = contamination(pool, ["e1", "e2"], evaluation)
    assert found["keep"].tolist() == [False, False, True, True, True]
    assert found["overlap"].tolist() == [0.5, 1.0, 0.0, 0.0, 0.0]
    assert found["reason"][1] == "holds 2 of the 2 word 13-grams of evaluation record e1 (100%)"
    # Below the share, an overlap is kept (boilerplate such as a shared organisation header).
    assert contamination(pool, ["e1", "e2"], evaluation, min_overlap=0.6)["keep"].tolist() == [True, False, True, True, True]


@pytest.mark.newsgroups
def test_planted_edited_copies_of_eval_texts_are_found(newsgroups_records):
    rng = np.random.default_rng(0)
    test = [r for r in newsgroups_records if r["split"] == "test" and len(r["text"].split()) >= 60]
    train = [r for r in newsgroups_records if r["split"] == "train"]
    evaluation = [test[i] for i in rng.choice(len(test), 200, replace=False)]
    planted = {f"planted-{i}": evaluation[i] for i in range(0, 200, 10)}  # 20 edited copies
    others = [train[i] for i in rng.choice(len(train), 1500, replace=False)]
    pool = [(r["id"], r["text"]) for r in others] + [(pid, lightly_edited(r["text"], rng)) for pid, r in planted.items()]
    order = rng.permutation(len(pool))
    ids, texts = [pool[i][0] for i in order], [pool[i][1] for i in order]
    assert not set(texts) & {r["text"] for r in evaluation}  # no exact copy: the hash check would miss them all

    found = contamination(texts, [r["id"] for r in evaluation], [r["text"] for r in evaluation])
    flagged = {record_id for record_id, keep in zip(ids, found["keep"]) if not keep}
    assert set(planted) <= flagged  # every planted copy
    # Replies quote other messages, so a few training messages really hold part of an evaluation message.
    assert len(flagged - set(planted)) <= 0.02 * len(others)
    reasons = dict(zip(ids, found["reason"]))
    # The build passes the pool's texts as one Arrow array (cut into slices by bytes, not characters).
    as_arrow = contamination(pa.array(texts, pa.string()), [r["id"] for r in evaluation], [r["text"] for r in evaluation])
    assert all(np.array_equal(as_arrow[key], found[key]) for key in ("keep", "reason", "overlap"))
    # filtered_set reads one shard's texts at a time: parts (an empty one among them) give the same columns.
    cuts = [0, 400, 400, 1100, len(texts)]
    parts = (pa.array(texts[a:b], pa.string()) for a, b in zip(cuts, cuts[1:]))
    by_part = contamination_of_parts(parts, [r["id"] for r in evaluation], [r["text"] for r in evaluation])
    assert all(np.array_equal(by_part[key], found[key]) for key in ("keep", "reason", "overlap"))
    for pid, source in planted.items():
        assert f"evaluation record {source['id']} (" in reasons[pid], pid

    # As a hard filter: the selection never takes them, and the accounting counts them.
    n = len(ids)
    scores = pd.DataFrame(
        {
            cols.ID: ids,
            cols.SHARD: "s0",
            cols.ROW: np.arange(n),
            "decontamination.keep": found["keep"],
            "decontamination.reason": found["reason"],
            # Planted copies rank first: only the filter keeps them out.
            "relevance.score": [1.0 if i in planted else rng.random() * 0.5 for i in ids],
        }
    )
    quarantine = pd.DataFrame({cols.SHARD: [], cols.ROW: [], cols.ERROR: []})
    decisions = decide(scores, quarantine, SelectionConfig(budget=100, weights={"relevance.score": 1.0}))
    table = decisions.set_index(cols.ID)
    assert (table.loc[list(planted), cols.DECIDED_BY] == "decontamination").all()
    assert not table.loc[list(planted), cols.STATUS].eq(cols.SELECTED).any()
    assert accounting(decisions)["rejections_by_reason"]["decontamination"] == len(flagged)


@pytest.mark.newsgroups
def test_found_while_a_shard_is_scored_as_in_the_selection(newsgroups_records):
    """quality_scores finds each shard's contamination on the tokens its n-gram scorers cut; the
    selection uses those columns when they were found against its evaluation set, else finds its own."""
    from dataselect.build import score_for_selection
    from dataselect.decontamination import EvaluationNgrams
    from dataselect.pipeline import score_shard
    from dataselect.scorers.heuristics import HeuristicRules

    rng = np.random.default_rng(1)
    test = [r for r in newsgroups_records if r["split"] == "test" and len(r["text"].split()) >= 60]
    first, second = test[:100], test[100:200]  # two evaluation sets
    train = [r for r in newsgroups_records if r["split"] == "train"][:1200]
    texts = [r["text"] for r in train] + [lightly_edited(r["text"], rng) for r in first[:10] + second[:10]]
    # One id twice: a record that fails both unique_id and decontamination is rejected by the filter
    # whose column comes first, so the frames' column order must be the same too.
    records = pa.table({cols.ID: [f"p{i}" for i in range(len(texts) - 1)] + [f"p{len(texts) - 20}"], cols.TEXT: texts})
    shards = [records.slice(0, 700), records.slice(700)]

    def against(evaluation):
        return [r["id"] for r in evaluation], [r["text"] for r in evaluation]

    scores = pa.concat_tables([score_shard(shard, None, [HeuristicRules()], EvaluationNgrams(*against(first))) for shard in shards])
    expected = contamination(texts, *against(first))
    assert (~expected["keep"]).sum() >= 10
    for name in ("keep", "reason", "overlap"):
        np.testing.assert_array_equal(scores.column(f"decontamination.{name}").to_numpy(zero_copy_only=False), expected[name])

    def frame_of(evaluation, decontaminated):
        table = None if evaluation is None else pd.DataFrame(dict(zip((cols.ID, cols.TEXT), against(evaluation))))
        parts = (shard.column(cols.TEXT).combine_chunks() for shard in shards)
        return score_for_selection(scores, None, ["unique_id"], None, None, table, parts, None, decontaminated)

    stored = frame_of(first, decontaminated=True)
    found_here = frame_of(first, decontaminated=False)
    pd.testing.assert_frame_equal(stored, found_here, check_dtype=False)  # columns in the same order too
    assert list(stored.columns)[-3:] == ["decontamination.keep", "decontamination.reason", "decontamination.overlap"]
    # Columns found against another evaluation set are dropped and found again; with none, dropped.
    other = contamination(texts, *against(second))
    np.testing.assert_array_equal(frame_of(second, decontaminated=False)["decontamination.keep"], other["keep"])
    assert not [c for c in frame_of(None, decontaminated=False).columns if c.startswith("decontamination.")]
