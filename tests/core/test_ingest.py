"""Ingestion: normalisation, hashing, landing-file listing, and one test per bad input."""

import gzip
import hashlib
import json
import os
import unicodedata

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataselect.ingest import (
    IngestConfig,
    ShardReadError,
    file_fingerprint,
    list_landing_files,
    read_reference,
    read_shard,
    shard_key,
)
from dataselect.normalize import content_hash, content_hashes, normalize_text
from dataselect.storage import confined


def write_lines(path, lines: list[bytes]) -> str:
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return str(path)


def jline(**fields) -> bytes:
    return json.dumps(fields).encode()


def errors(result) -> dict[int, str]:
    return dict(zip(result.quarantine.column("row").to_pylist(), result.quarantine.column("error").to_pylist()))


def accounting_holds(result) -> bool:
    return result.records.num_rows + result.quarantine.num_rows == result.raw_count


# --------------------------------------------------------------------------- normalize


def test_normalize_text_known_answers():
    decomposed = "Cafe\u0301"
    assert normalize_text(decomposed) == "Caf\u00e9"
    assert normalize_text("  a\x00b\x07c\x1b[0m\u0085d\r\ne\rf\tg \n ") == "abc[0md\ne\nf\tg"
    # A NUL between a letter and its accent: removed first, so the pair still composes.
    assert normalize_text("e\x00\u0301") == "\u00e9"


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_normalize_text_is_idempotent_and_clean(text):
    once = normalize_text(text)
    assert normalize_text(once) == once
    assert unicodedata.is_normalized("NFC", once)
    assert not any(unicodedata.category(c) == "Cc" and c not in "\n\t" for c in once)


def test_content_hash_ignores_case_and_formatting_only():
    expected = hashlib.sha1(b"hello big world").hexdigest()
    assert content_hash("Hello  big\r\n\tWORLD \x00") == expected
    assert content_hash("hello\u00a0big world") == expected  # NBSP is whitespace too
    assert content_hash("hello big worlds") != expected
    texts = ["A b", "a  B", "c", ""]
    assert content_hashes(texts) == [content_hash(t) for t in texts]
    assert content_hashes([normalize_text(t) for t in texts], already_normalized=True) == content_hashes(texts)


# --------------------------------------------------------------------------- files


def test_shard_key_is_stable_and_confined(tmp_path):
    assert shard_key("/x/train-00000-of-00004.jsonl.gz") == "train-00000-of-00004"
    assert shard_key("a/b/part.PARQUET") == "part"
    assert shard_key("data.csv") == "data"
    for hostile in ["../../etc/passwd.jsonl", "..jsonl", "a\\..\\..\\b.csv", "x/\x00evil name.parquet"]:
        key = shard_key(hostile)
        assert "/" not in key and ".." not in key and "\x00" not in key and key
        assert str(confined(tmp_path, key)).startswith(str(tmp_path))


def test_file_fingerprint_is_sha256_of_bytes(tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 7)  # spans several read blocks
    (tmp_path / "f.jsonl").write_bytes(data)
    assert file_fingerprint(tmp_path / "f.jsonl") == hashlib.sha256(data).hexdigest()


def test_list_landing_files_filters_sorts_and_rejects_key_clashes(tmp_path):
    for name in ["b.jsonl", "a.parquet", "c.jsonl.gz", "d.csv", ".hidden.jsonl", ".b.jsonl.123.tmp", "notes.txt"]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub.jsonl").mkdir()
    files = list_landing_files(tmp_path)
    assert [f.key for f in files] == ["a", "b", "c", "d"]
    assert files[1].path.endswith("b.jsonl")
    assert files[0].fingerprint == hashlib.sha256(b"").hexdigest()

    (tmp_path / "b.csv").write_bytes(b"")
    with pytest.raises(ValueError, match=r"b\.(jsonl|csv) and .*b\.(jsonl|csv) both map to shard key 'b'"):
        list_landing_files(tmp_path)


# --------------------------------------------------------------------------- good input


def test_jsonl_records_columns_metadata_and_ids(tmp_path):
    path = write_lines(
        tmp_path / "s-1.jsonl",
        [
            jline(id="a", text="  First text ", label="sci", source="web", extra={"k": [1, 2]}),
            b"",
            b"   ",
            jline(text="second", label=3),  # no id, int label
            jline(id=7, text="third", source="books"),  # int id, no label, no extra
        ],
    )
    result = read_shard(path)
    assert result.raw_count == 3  # blank lines are not rows
    records = result.records
    assert records.column_names == ["id", "text", "label", "content_hash", "shard", "row", "source", "extra"]
    assert records.schema.field("row").type == pa.int64()
    assert records.column("id").to_pylist() == ["a", "s-1:1", "7"]
    assert records.column("text").to_pylist() == ["First text", "second", "third"]
    assert records.column("label").to_pylist() == ["sci", "3", None]
    assert records.column("row").to_pylist() == [0, 1, 2]
    assert records.column("shard").to_pylist() == ["s-1"] * 3
    assert records.column("content_hash").to_pylist() == content_hashes(["first text", "second", "third"])
    assert records.column("source").to_pylist() == ["web", None, "books"]
    assert records.column("extra").to_pylist() == ['{"k": [1, 2]}', None, None]
    assert result.quarantine.num_rows == 0


def test_custom_field_names_and_reserved_metadata(tmp_path):
    path = write_lines(tmp_path / "c.jsonl", [jline(doc="x1", body="hello", topic="t", shard="evil", row=5)])
    result = read_shard(path, key="k", config=IngestConfig(text_field="body", id_field="doc", label_field="topic"))
    row = result.records.to_pylist()[0]
    assert row == {
        "id": "x1",
        "text": "hello",
        "label": "t",
        "content_hash": content_hash("hello"),
        "shard": "k",
        "row": 0,
        "meta_shard": "evil",
        "meta_row": 5,
    }


# --------------------------------------------------------------------------- bad input, one each


def test_malformed_json_lines_are_quarantined_and_reading_continues(tmp_path):
    path = write_lines(
        tmp_path / "m.jsonl",
        [
            jline(id="a", text="ok"),
            b'{"id": "b" "text": "x"}',
            b'{"id": "c", "text": "unterminated',
            b"[1, 2]",
            jline(id="d", text="ok too"),
        ],
    )
    result = read_shard(path)
    assert result.records.column("id").to_pylist() == ["a", "d"]
    assert errors(result) == {
        1: "invalid JSON: Expecting ',' delimiter at column 12",
        2: "invalid JSON: Unterminated string starting at column 21",
        3: "JSON line is not an object (got list)",
    }
    assert result.quarantine.column("raw_excerpt").to_pylist()[0] == '{"id": "b" "text": "x"}'
    assert result.raw_count == 5


def test_missing_or_wrong_text_field_jsonl(tmp_path):
    path = write_lines(
        tmp_path / "w.jsonl",
        [
            jline(id="a", body="no text here"),
            jline(id="b", text=42),
            jline(id="c", text=None),
            jline(id="d", text=["a"]),
            jline(id="e", text="fine"),
            jline(id={"x": 1}, text="bad id"),
        ],
    )
    result = read_shard(path)
    assert result.records.column("id").to_pylist() == ["e"]
    assert errors(result) == {
        0: "missing 'text' field",
        1: "'text' is not a string (got int)",
        2: "'text' is null",
        3: "'text' is not a string (got list)",
        5: "'id' is not a string or number (got dict)",
    }
    assert result.quarantine.column("id").to_pylist() == ["a", "b", "c", "d", None]


def test_non_utf8_bytes_quarantine_only_their_line(tmp_path):
    path = write_lines(tmp_path / "u.jsonl", [b'{"id": "a", "text": "caf\xe9"}', jline(id="b", text="fine")])
    result = read_shard(path)
    assert errors(result) == {0: "invalid UTF-8 at byte 24"}  # the offset of \xe9 in the line
    assert result.quarantine.column("raw_excerpt")[0].as_py() == '{"id": "a", "text": "caf\ufffd"}'
    assert result.records.column("id").to_pylist() == ["b"]


def test_lone_surrogate_escape_is_quarantined(tmp_path):
    path = write_lines(tmp_path / "s.jsonl", [b'{"id": "a", "text": "bad \\ud800 here"}', b'{"id": "b", "text": "pair \\ud83d\\ude00 ok"}'])
    result = read_shard(path)
    assert errors(result) == {0: "invalid Unicode: unpaired surrogate escape"}
    assert result.records.column("text").to_pylist() == ["pair \U0001f600 ok"]


def test_nul_and_control_characters_are_stripped_and_record_kept(tmp_path):
    path = write_lines(tmp_path / "n.jsonl", [jline(id="a", text="he\u0000llo\u0007 wor\u001bld\r\nnext\tline")])
    result = read_shard(path)
    assert result.quarantine.num_rows == 0
    assert result.records.column("text").to_pylist() == ["hello world\nnext\tline"]


def test_empty_and_whitespace_only_texts(tmp_path):
    path = write_lines(
        tmp_path / "e.jsonl",
        [jline(id="a", text=""), jline(id="b", text=" \n\t "), jline(id="c", text="\u0000\u0001"), jline(id="d", text="x")],
    )
    result = read_shard(path)
    assert errors(result) == {i: "empty text after normalisation" for i in range(3)}
    assert result.records.column("id").to_pylist() == ["d"]
    short = read_shard(path, config=IngestConfig(min_text_chars=2))
    assert errors(short)[3] == "text too short: 1 chars < 2"


def test_fifty_megabyte_record_is_quarantined_neighbours_kept(tmp_path):
    big = "a" * (50 * 1024 * 1024)
    path = tmp_path / "big.jsonl"
    with path.open("wb") as handle:
        handle.write(jline(id="before", text="small one") + b"\n")
        handle.write(b'{"id": "huge", "text": "' + big.encode() + b'"}\n')
        handle.write(jline(id="after", text="small two") + b"\n")
    del big
    result = read_shard(path)
    assert result.records.column("id").to_pylist() == ["before", "after"]
    assert errors(result) == {1: "text too long: 52428800 chars > 1000000"}
    assert result.quarantine.column("id").to_pylist() == ["huge"]
    assert len(result.quarantine.column("raw_excerpt")[0].as_py()) == 200

    # A line past max_line_bytes is skipped unparsed, and the reader resynchronises after it.
    result = read_shard(path, config=IngestConfig(max_line_bytes=1024 * 1024))
    assert errors(result) == {1: "line too long: more than 1048576 bytes"}
    assert result.records.column("id").to_pylist() == ["before", "after"]


def test_duplicate_ids_within_shard(tmp_path):
    path = write_lines(
        tmp_path / "d.jsonl",
        [
            jline(id="x", text=""),
            jline(id="x", text="first good"),
            jline(id="y", text="y"),
            jline(id="x", text="again"),
            jline(id=1, text="int"),
            jline(id="1", text="str"),
        ],
    )
    result = read_shard(path)
    assert result.records.column("id").to_pylist() == ["x", "y", "1"]
    assert result.records.column("text").to_pylist() == ["first good", "y", "int"]
    assert errors(result) == {
        0: "empty text after normalisation",
        3: "duplicate id 'x' (first seen at row 1)",
        5: "duplicate id '1' (first seen at row 4)",
    }


def test_truncated_gzip_keeps_complete_lines(tmp_path):
    lines = [jline(id=f"d{i}", text=f"document number {i} " * 20) for i in range(200)]
    data = gzip.compress(b"".join(line + b"\n" for line in lines), mtime=0)
    path = tmp_path / "t.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    result = read_shard(path)
    kept = result.records.column("id").to_pylist()
    assert 0 < len(kept) < 200 and kept == [f"d{i}" for i in range(len(kept))]
    assert result.quarantine.num_rows == 1
    assert result.quarantine.column("row").to_pylist() == [len(kept)]
    error = result.quarantine.column("error")[0].as_py()
    assert error.startswith(f"truncated gzip stream after {len(kept)} complete rows")
    assert result.raw_count == len(kept) + 1

    # A file that is not gzip at all is a shard-level failure, not a record-level one.
    (tmp_path / "plain.jsonl.gz").write_bytes(b"".join(line + b"\n" for line in lines))
    with pytest.raises(ShardReadError, match="plain.jsonl.gz"):
        read_shard(tmp_path / "plain.jsonl.gz")


def test_empty_files_of_every_format(tmp_path):
    (tmp_path / "e1.jsonl").write_bytes(b"")
    (tmp_path / "e2.jsonl.gz").write_bytes(gzip.compress(b"", mtime=0))
    (tmp_path / "e3.csv").write_bytes(b"")
    (tmp_path / "e4.csv").write_bytes(b"id,text,label\n")
    empty = pa.table({"id": pa.array([], pa.string()), "text": pa.array([], pa.string())})
    pq.write_table(empty, tmp_path / "e5.parquet")
    (tmp_path / "e6.jsonl").write_bytes(b"\n\n  \n")
    for name in ["e1.jsonl", "e2.jsonl.gz", "e3.csv", "e4.csv", "e5.parquet", "e6.jsonl"]:
        result = read_shard(tmp_path / name)
        assert (result.records.num_rows, result.quarantine.num_rows, result.raw_count) == (0, 0, 0), name
        assert result.records.column_names[:6] == ["id", "text", "label", "content_hash", "shard", "row"]


def test_parquet_without_text_column_quarantines_every_row(tmp_path):
    pq.write_table(pa.table({"id": ["a", "b", "c"], "body": ["x", "y", "z"]}), tmp_path / "p.parquet")
    result = read_shard(tmp_path / "p.parquet")
    assert (result.records.num_rows, result.raw_count) == (0, 3)
    assert result.quarantine.column("error").to_pylist() == ["missing 'text' column"] * 3
    assert result.quarantine.column("id").to_pylist() == ["a", "b", "c"]
    assert json.loads(result.quarantine.column("raw_excerpt")[0].as_py()) == {"id": "a", "body": "x"}


def test_parquet_with_unexpected_schema(tmp_path):
    table = pa.table(
        {
            "id": pa.array([1, 2, 3], pa.int64()),
            "text": pa.array(["good one", None, "good two"]),
            "label": pa.array([0, 1, None], pa.int32()),
            "nested": pa.array([{"a": 1, "b": [1, 2]}, None, {"a": 3, "b": []}]),
            "score": pa.array([0.5, 0.25, 1.0]),
        }
    )
    pq.write_table(table, tmp_path / "odd.parquet", row_group_size=2)
    result = read_shard(tmp_path / "odd.parquet")
    assert result.records.to_pylist() == [
        {
            "id": "1",
            "text": "good one",
            "label": "0",
            "content_hash": content_hash("good one"),
            "shard": "odd",
            "row": 0,
            "nested": '{"a": 1, "b": [1, 2]}',
            "score": 0.5,
        },
        {
            "id": "3",
            "text": "good two",
            "label": None,
            "content_hash": content_hash("good two"),
            "shard": "odd",
            "row": 2,
            "nested": '{"a": 3, "b": []}',
            "score": 1.0,
        },
    ]
    assert errors(result) == {1: "'text' is null"}

    pq.write_table(pa.table({"id": ["a"], "text": pa.array([5], pa.int64())}), tmp_path / "int.parquet")
    assert errors(read_shard(tmp_path / "int.parquet")) == {0: "'text' is not a string (got int)"}


def test_parquet_binary_text_is_decoded_and_only_invalid_utf8_quarantined(tmp_path):
    # Older writers store strings as binary; valid UTF-8 in them is ordinary text.
    table = pa.table(
        {
            "id": pa.array([b"a", b"b", b"c", b"d"], pa.binary()),
            "text": pa.array(["caf\u00e9 au lait".encode(), b"caf\xe9", b"  ", "\u661f\u7a7a".encode()], pa.binary()),
            "label": pa.array([b"x", b"y", b"z", b"\xff"], pa.binary()),
        }
    )
    pq.write_table(table, tmp_path / "binary.parquet")
    result = read_shard(tmp_path / "binary.parquet")
    assert accounting_holds(result)
    assert result.records.select(["id", "text", "label"]).to_pylist() == [{"id": "a", "text": "caf\u00e9 au lait", "label": "x"}]
    assert errors(result) == {
        1: "invalid UTF-8 in 'text' at byte 3",
        2: "empty text after normalisation",
        3: "invalid UTF-8 in 'label' at byte 0",
    }
    assert json.loads(result.quarantine.column("raw_excerpt")[0].as_py())["text"] == "caf\ufffd"


def test_csv_embedded_newlines_bad_rows_and_bad_bytes(tmp_path):
    path = tmp_path / "c.csv"
    path.write_bytes(
        b"\xef\xbb\xbfid,text,label\r\n"
        b'a,"line one\r\nline two, with comma and ""quotes""",sci\r\n'
        b"\r\n"
        b"b,too,many,fields\r\n"
        b"c,caf\xe9,x\r\n"
        b'd,"",y\r\n'
        b",no id,3\r\n"
    )
    result = read_shard(path)
    assert result.raw_count == 5
    assert result.records.to_pylist() == [
        {
            "id": "a",
            "text": 'line one\nline two, with comma and "quotes"',
            "label": "sci",
            "content_hash": content_hash('line one line two, with comma and "quotes"'),
            "shard": "c",
            "row": 0,
        },
        {"id": "c:4", "text": "no id", "label": "3", "content_hash": content_hash("no id"), "shard": "c", "row": 4},
    ]
    assert errors(result) == {
        1: "CSV row has 4 fields, header has 3",
        2: "invalid UTF-8 in column 'text' at byte 3",
        3: "empty text after normalisation",
    }

    (tmp_path / "nt.csv").write_bytes(b"id,body\n1,x\n2,y\n")
    assert errors(read_shard(tmp_path / "nt.csv")) == {0: "missing 'text' column", 1: "missing 'text' column"}


def test_unreadable_files_raise_shard_read_error(tmp_path):
    with pytest.raises(ShardReadError, match="missing.jsonl"):
        read_shard(tmp_path / "missing.jsonl")
    (tmp_path / "fake.parquet").write_bytes(b"this is not parquet at all")
    with pytest.raises(ShardReadError, match="fake.parquet: not a readable Parquet file"):
        read_shard(tmp_path / "fake.parquet")
    (tmp_path / "notes.txt").write_bytes(b"{}")
    with pytest.raises(ShardReadError, match="unsupported file type"):
        read_shard(tmp_path / "notes.txt")
    (tmp_path / "dir.jsonl").mkdir()
    with pytest.raises(ShardReadError, match="dir.jsonl"):
        read_shard(tmp_path / "dir.jsonl")
    if os.geteuid() != 0:  # root reads through permissions
        locked = tmp_path / "locked.jsonl"
        locked.write_bytes(jline(text="x"))
        locked.chmod(0)
        with pytest.raises(ShardReadError, match="locked.jsonl"):
            read_shard(locked)


def test_read_reference_file_and_folder(tmp_path):
    write_lines(tmp_path / "ref.jsonl", [jline(id="r1", text="alpha"), jline(id="r2", text=""), jline(text="gamma")])
    single = read_reference(tmp_path / "ref.jsonl")
    assert single.records.column("id").to_pylist() == ["r1", "ref:2"]
    assert (single.raw_count, single.quarantine.num_rows) == (3, 1)

    folder = tmp_path / "refs"
    folder.mkdir()
    write_lines(folder / "a.jsonl", [jline(id="x", text="one", label="l", extra=1)])
    pq.write_table(pa.table({"id": ["x", "y"], "text": ["two", "three"], "other": [[1], [2]]}), folder / "b.parquet")
    result = read_reference(folder)
    assert result.records.column_names == ["id", "text", "label", "content_hash", "shard", "row"]
    assert result.records.column("id").to_pylist() == ["x", "y"]
    assert result.records.column("text").to_pylist() == ["one", "three"]
    assert errors(result) == {0: "duplicate id 'x' (first seen in a at row 0)"}
    assert result.raw_count == 3 and accounting_holds(result)


# --------------------------------------------------------------------------- properties


VALID_LINES = [jline(id=f"r{i}", text=f"record {i} says hello", label=["a", "b"][i % 2], meta={"n": i}) for i in range(6)]
VALID_SHARD = b"".join(line + b"\n" for line in VALID_LINES)


def check_invariants(result):
    assert accounting_holds(result)
    ids = result.records.column("id").to_pylist()
    assert len(ids) == len(set(ids))
    assert set(result.records.column("row").to_pylist()).isdisjoint(result.quarantine.column("row").to_pylist())


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.tuples(st.integers(0, len(VALID_SHARD) - 1), st.integers(0, 255), st.sampled_from(["set", "insert", "delete"])),
        max_size=12,
    )
)
def test_random_byte_mutations_never_raise(tmp_path, mutations):
    data = bytearray(VALID_SHARD)
    for position, value, kind in mutations:
        position = min(position, len(data) - 1) if data else 0
        if kind == "set" and data:
            data[position] = value
        elif kind == "insert":
            data.insert(position, value)
        elif data:
            del data[position]
    path = tmp_path / "mutated.jsonl"
    path.write_bytes(bytes(data))
    result = read_shard(path)
    check_invariants(result)
    assert result.raw_count == sum(1 for line in bytes(data).split(b"\n") if line.strip())


json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
records_strategy = st.lists(
    st.dictionaries(st.sampled_from(["id", "text", "label", "meta", "shard", ""]), json_values, max_size=5)
    | st.fixed_dictionaries({"id": st.sampled_from(["a", "b", 1, None]), "text": st.text(max_size=30)}),
    max_size=10,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records_strategy, st.sampled_from(["jsonl", "parquet", "csv"]))
def test_random_record_mutations_never_raise(tmp_path, rows, fmt):
    if fmt == "jsonl":
        path = tmp_path / "r.jsonl"
        path.write_bytes(b"".join(json.dumps(row).encode() + b"\n" for row in rows))
        expected_rows = len(rows)
    elif fmt == "parquet":
        path = tmp_path / "r.parquet"
        # Arrow needs one type per column: store each value as its JSON text, except "text".
        names = sorted({k for row in rows for k in row} | {"text"})
        table = pa.table(
            {n: [r.get(n) if n == "text" and isinstance(r.get(n), str) else json.dumps(r.get(n)) for r in rows] for n in names}
        )
        pq.write_table(table, path)
        expected_rows = len(rows)
    else:
        import csv
        import io

        names = ["id", "text", "label"]
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(names)
        for row in rows:
            writer.writerow([row.get(n) if isinstance(row.get(n), str) else json.dumps(row.get(n)) for n in names])
        path = tmp_path / "r.csv"
        path.write_bytes(buffer.getvalue().encode("utf-8", "surrogatepass"))
        expected_rows = None  # a row of only empty fields reads as a blank line
    result = read_shard(path)
    check_invariants(result)
    if expected_rows is not None:
        assert result.raw_count == expected_rows


# --------------------------------------------------------------------------- real data


def test_newsgroups_shard_ingests_cleanly(newsgroups_dir):
    path = newsgroups_dir / "train-00000-of-00004.jsonl.gz"
    with gzip.open(path, "rb") as handle:
        lines = [json.loads(line) for line in handle if line.strip()]
    result = read_shard(path)
    assert result.raw_count == len(lines) and accounting_holds(result)
    kept = set(result.records.column("id").to_pylist())
    assert kept | set(result.quarantine.column("id").to_pylist()) == {line["id"] for line in lines}
    # Only texts that normalise to nothing may be quarantined from a clean corpus.
    assert set(result.quarantine.column("error").to_pylist()) <= {"empty text after normalisation"}
    labels = set(result.records.column("label").to_pylist())
    assert "sci.space" in labels and len(labels) == 20
    assert result.records.column("split").unique().to_pylist() == ["train"]
