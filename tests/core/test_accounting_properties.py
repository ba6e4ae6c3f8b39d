"""Property tests of the accounting guarantee: every raw line ends in exactly one decision.

Random record-level and byte-level mutations of landing shards go through the core path the
platform runs (ingest -> score_shard with heuristics + minhash -> build.select with unique_id,
exact_dup and near_dup -> decide). Whatever the damage, nothing crashes below the shard level,
and the decisions table has one row per raw line: (shard, row) covers 0..raw_count-1 exactly,
statuses partition it, every rejection names its scorer and reason, and every quarantined
row carries its ingest error.
"""

from __future__ import annotations

import gzip
import json
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataselect import records as cols
from dataselect.build import select
from dataselect.ingest import ShardReadError, read_shard, shard_key
from dataselect.pipeline import make_scorers, score_shard
from dataselect.selection import DECISION_COLUMNS, SelectionConfig, accounting

WORDS = "the star of a bright galaxy was observed with that telescope and measured over many nights by astronomers".split()
# Fixed documents, long enough that some pass the heuristics; records draw from them, so
# exact duplicates (same index) and cross-shard repeats arise on their own.
DOCUMENTS = [" ".join(WORDS[(i * 7 + j * (i + 3)) % len(WORDS)] for j in range(20 + 9 * i)) for i in range(8)]

RECORD_MUTATIONS = [
    "none",
    "drop_text",
    "text_null",
    "text_number",
    "text_list",
    "text_empty",
    "text_whitespace",
    "text_control",
    "text_surrogate",
    "id_repeat_in_shard",
    "id_repeat_across_shards",
    "id_null",
    "id_object",
    "id_path",
    "label_object",
    "reserved_keys",
    "not_an_object",
    "garbage_line",
]
BYTE_OPS = ["flip", "insert", "delete", "newline", "truncate", "nul", "invalid_utf8"]


def _record_line(shard: int, row: int, doc: int, mutation: str) -> bytes:
    record: object = {"id": f"s{shard}-r{row}", "text": DOCUMENTS[doc], "label": f"topic{doc % 3}"}
    if mutation == "drop_text":
        del record["text"]
    elif mutation == "text_null":
        record["text"] = None
    elif mutation == "text_number":
        record["text"] = 42
    elif mutation == "text_list":
        record["text"] = ["a", "b"]
    elif mutation == "text_empty":
        record["text"] = ""
    elif mutation == "text_whitespace":
        record["text"] = " \t\n  "
    elif mutation == "text_control":
        record["text"] = "\x00\x07" + DOCUMENTS[doc] + "\u200b\x1b"
    elif mutation == "text_surrogate":
        record["text"] = DOCUMENTS[doc] + "\ud800"
    elif mutation == "id_repeat_in_shard":
        record["id"] = f"s{shard}-r0"
    elif mutation == "id_repeat_across_shards":
        record["id"] = "s0-r0"
    elif mutation == "id_null":
        record["id"] = None
    elif mutation == "id_object":
        record["id"] = {"nested": 1}
    elif mutation == "id_path":
        record["id"] = "../../etc/passwd"
    elif mutation == "label_object":
        record["label"] = {"x": [1]}
    elif mutation == "reserved_keys":
        record.update({"shard": "other", "row": -5, "content_hash": 3})
    elif mutation == "not_an_object":
        record = [1, 2, 3]
    elif mutation == "garbage_line":
        return b'{"id": "half", "text": "unterminated\n'
    return (json.dumps(record) + "\n").encode()


shard_strategy = st.lists(st.tuples(st.integers(0, len(DOCUMENTS) - 1), st.sampled_from(RECORD_MUTATIONS)), min_size=0, max_size=12)
byte_op_strategy = st.lists(st.tuples(st.sampled_from(BYTE_OPS), st.floats(0, 1), st.binary(min_size=1, max_size=6)), max_size=3)


def _mutate(data: bytes, ops: list[tuple[str, float, bytes]]) -> bytes:
    for op, where, payload in ops:
        at = int(where * len(data))
        if op == "flip" and data:
            at = min(at, len(data) - 1)
            data = data[:at] + bytes([data[at] ^ payload[0] | 1]) + data[at + 1 :]
        elif op == "insert":
            data = data[:at] + payload + data[at:]
        elif op == "delete":
            data = data[:at] + data[at + len(payload) :]
        elif op == "newline":
            data = data[:at] + b"\n" + data[at:]
        elif op == "truncate":
            data = data[:at]
        elif op == "nul":
            data = data[:at] + b"\x00" + data[at:]
        elif op == "invalid_utf8":
            data = data[:at] + b"\xff\xfe\xc3" + data[at:]
    return data


def _run(directory: Path, shards: list[tuple[str, bytes]]) -> tuple[pd.DataFrame, dict[str, int]]:
    """What the platform does, minus Dagster: returns decisions and each read shard's raw_count."""
    scorers = make_scorers(["heuristics", "minhash"])
    score_tables, quarantines, raw_counts = [], [], {}
    for name, data in shards:
        path = directory / name
        path.write_bytes(data)
        try:
            result = read_shard(path)
        except ShardReadError:
            continue  # a whole-file failure (e.g. not gzip at all) fails that partition only
        raw_counts[shard_key(path)] = result.raw_count
        score_tables.append(score_shard(result.records, None, scorers))
        quarantines.append(result.quarantine.to_pandas())
    if not score_tables:
        return pd.DataFrame(columns=DECISION_COLUMNS), raw_counts
    scores = pa.concat_tables(score_tables, promote_options="permissive")
    quarantine = pd.concat(quarantines, ignore_index=True)
    selection = SelectionConfig(budget=0.5, weights={"heuristics.score": 1.0}, seed=0)
    decisions = select(scores, quarantine, None, selection, ["unique_id", "exact_dup", "near_dup"])
    return decisions, raw_counts


def _check(decisions: pd.DataFrame, raw_counts: dict[str, int]) -> None:
    assert len(decisions) == sum(raw_counts.values())
    for shard, raw in raw_counts.items():
        rows = sorted(decisions.loc[decisions[cols.SHARD] == shard, cols.ROW].tolist())
        assert rows == list(range(raw)), f"shard {shard}: rows {rows} != 0..{raw - 1}"
    assert set(decisions[cols.SHARD]) <= set(raw_counts)
    status = decisions[cols.STATUS]
    assert status.isin([cols.SELECTED, cols.REJECTED, cols.QUARANTINED]).all()
    counts = accounting(decisions)
    assert counts["selected"] + counts["rejected"] + counts["quarantined"] == counts["raw"] == len(decisions)
    assert sum(counts["rejections_by_reason"].values()) == counts["rejected"]
    rejected = decisions[status == cols.REJECTED]
    assert rejected[cols.DECIDED_BY].map(lambda v: isinstance(v, str) and v != "").all()
    assert rejected[cols.REASON].map(lambda v: isinstance(v, str) and v != "").all()
    quarantined = decisions[status == cols.QUARANTINED]
    assert (quarantined[cols.DECIDED_BY] == "ingest").all()
    assert quarantined[cols.REASON].map(lambda v: isinstance(v, str) and v.strip() != "").all()
    selected = decisions[status == cols.SELECTED]
    assert selected[cols.ID].is_unique, "an id was selected twice"
    assert len(selected) <= SelectionConfig(budget=0.5).budget_count(len(decisions))


@settings(max_examples=50, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    shards=st.lists(
        st.tuples(shard_strategy, byte_op_strategy, st.sampled_from([".jsonl", ".jsonl.gz", ".gz-cut"])), min_size=1, max_size=3
    )
)
def test_accounting_holds_under_random_record_and_byte_mutations(shards):
    files = []
    for index, (records, ops, kind) in enumerate(shards):
        plain = b"".join(_record_line(index, row, doc, mutation) for row, (doc, mutation) in enumerate(records))
        if kind == ".jsonl":
            files.append((f"shard{index}.jsonl", _mutate(plain, ops)))
        elif kind == ".jsonl.gz":
            # Mutations inside the decompressed lines; the gzip stream itself is intact.
            files.append((f"shard{index}.jsonl.gz", gzip.compress(_mutate(plain, ops), mtime=0)))
        else:
            # Damage to the compressed bytes: a truncated or corrupt stream part-way through.
            files.append((f"shard{index}.jsonl.gz", _mutate(gzip.compress(plain, mtime=0), ops)))
    with tempfile.TemporaryDirectory() as directory:
        decisions, raw_counts = _run(Path(directory), files)
    _check(decisions, raw_counts)
    # A plain JSONL shard's raw_count is its number of non-blank lines, counted independently.
    for name, data in files:
        key = name.split(".")[0]
        if name.endswith(".jsonl") and key in raw_counts:
            lines = data.removeprefix(b"\xef\xbb\xbf").split(b"\n")
            assert raw_counts[key] == sum(1 for line in lines if line.strip())


def test_known_mix_ends_in_the_expected_states(tmp_path):
    """A fixed example with a known answer, so the property test's oracle is itself checked."""
    good = lambda row, doc: _record_line(0, row, doc, "none")  # noqa: E731
    shard0 = b"".join(
        [
            good(0, 7),
            _record_line(0, 1, 7, "none"),  # same text as row 0: exact duplicate
            _record_line(0, 2, 6, "drop_text"),
            _record_line(0, 3, 6, "garbage_line"),
            b"\n",  # blank: not a row
            _record_line(0, 4, 6, "id_repeat_in_shard"),
        ]
    )
    shard1 = _record_line(1, 0, 5, "id_repeat_across_shards") + b"\xff\xfe\n"
    decisions, raw_counts = _run(tmp_path, [("shard0.jsonl", shard0), ("shard1.jsonl", shard1)])
    _check(decisions, raw_counts)
    assert raw_counts == {"shard0": 5, "shard1": 2}
    by_row = {(r.shard, r.row): r for r in decisions.itertuples()}
    assert by_row[("shard0", 1)].decided_by == "exact_dup" and by_row[("shard0", 1)].reason == "exact duplicate of s0-r0"
    assert by_row[("shard0", 2)].status == cols.QUARANTINED and by_row[("shard0", 2)].reason == "missing 'text' field"
    assert by_row[("shard0", 3)].reason.startswith("invalid JSON: Unterminated string")
    assert by_row[("shard0", 4)].reason == "duplicate id 's0-r0' (first seen at row 0)"
    assert by_row[("shard1", 0)].decided_by == "unique_id"
    assert by_row[("shard1", 0)].reason == "duplicate id 's0-r0' (first in shard shard0 row 0)"
    assert by_row[("shard1", 1)].reason == "invalid UTF-8 at byte 0"
    assert by_row[("shard0", 0)].status == cols.SELECTED
