"""Landing files -> validated record tables, with every bad line kept and explained.

The design follows datatrove's readers and filters (HuggingFace, 2024): documents are
streamed one line/row at a time and every rejection carries its reason. Here rejections
are *quarantined*: each bad raw line/row becomes one row of a quarantine table with the
error and a raw excerpt, so that for every shard

    records.num_rows + quarantine.num_rows == raw_count

holds exactly and nothing is ever dropped silently. Only a file that cannot be opened at
all (missing, unreadable, not Parquet) is a shard-level failure (:class:`ShardReadError`).

Formats: ``.jsonl`` and ``.jsonl.gz`` (streamed line by line), ``.parquet`` (row group by
row group) and ``.csv`` (header row, RFC 4180 quoting, newlines allowed inside quotes).
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import io
import json
import os
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from dataselect import records as cols
from dataselect.normalize import content_hashes, is_invisible, normalize_text
from dataselect.storage import as_path, safe_name

SUPPORTED_SUFFIXES = (".jsonl", ".jsonl.gz", ".parquet", ".csv")
# Longest first, so "x.jsonl.gz" is not taken for an unsupported "x.jsonl" + ".gz".
_SUFFIXES_LONGEST_FIRST = tuple(sorted(SUPPORTED_SUFFIXES, key=len, reverse=True))

EXCERPT_CHARS = 200

RECORD_SCHEMA = pa.schema(
    [
        (cols.ID, pa.string()),
        (cols.TEXT, pa.string()),
        (cols.LABEL, pa.string()),
        (cols.CONTENT_HASH, pa.string()),
        (cols.SHARD, pa.string()),
        (cols.ROW, pa.int64()),
    ]
)
QUARANTINE_SCHEMA = pa.schema(
    [
        (cols.SHARD, pa.string()),
        (cols.ROW, pa.int64()),
        (cols.ID, pa.string()),
        (cols.ERROR, pa.string()),
        (cols.RAW_EXCERPT, pa.string()),
    ]
)
# Input keys with these names would collide with the columns we add.
_RESERVED = frozenset(RECORD_SCHEMA.names)

# json.loads turns "\\ud800" escapes into lone surrogates that cannot be written as UTF-8;
# this cheap scan decides when the full check is needed.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
# CSV is decoded with surrogateescape: an undecodable byte becomes one of these.
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")


class ShardReadError(RuntimeError):
    """The whole file could not be read (missing, permissions, not the format it claims)."""


@dataclass
class IngestConfig:
    """How raw rows become records."""

    max_text_chars: int = 1_000_000  # longer texts are quarantined, never truncated silently
    min_text_chars: int = 1  # after normalisation; 1 means only empty texts are quarantined
    text_field: str = "text"
    id_field: str = "id"
    label_field: str = "label"
    # A line longer than this is skipped unparsed (quarantined) so one hostile line cannot
    # exhaust memory; it must exceed the largest legitimate record (JSON escapes included).
    max_line_bytes: int = 128 * 1024 * 1024


@dataclass
class IngestResult:
    """Good records, quarantined rows, and how many raw lines/rows the input had."""

    records: pa.Table
    quarantine: pa.Table
    raw_count: int


@dataclass(frozen=True)
class LandingFile:
    key: str  # shard partition key, safe as a file name
    path: str
    fingerprint: str  # sha256 of the file bytes, hex


# --------------------------------------------------------------------------- files


def _supported_suffix(name: str) -> str | None:
    lowered = name.lower()
    return next((s for s in _SUFFIXES_LONGEST_FIRST if lowered.endswith(s)), None)


def _file_name(path: str | os.PathLike) -> str:
    return str(path).replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


def shard_key(path: str | os.PathLike) -> str:
    """``.../train-00000-of-00004.jsonl.gz`` -> ``train-00000-of-00004``, safe as a path part."""
    name = _file_name(path)
    suffix = _supported_suffix(name)
    stem = name[: -len(suffix)] if suffix else name
    return safe_name(stem)


def file_fingerprint(path: str | os.PathLike) -> str:
    """sha256 of the file bytes, streamed in blocks (hex)."""
    with as_path(path).open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def supported_files(directory: str | os.PathLike) -> list[tuple[str, str]]:
    """(key, path) of the supported, non-hidden files, sorted by key; key clashes raise."""
    by_key: dict[str, str] = {}
    for entry in as_path(directory).iterdir():
        # Hidden names include the ".name.<uuid>.tmp" files of in-flight atomic writes.
        if entry.name.startswith(".") or _supported_suffix(entry.name) is None or not entry.is_file():
            continue
        key = shard_key(entry.name)
        if key in by_key:
            raise ValueError(f"landing files {by_key[key]} and {entry} both map to shard key {key!r}; rename one")
        by_key[key] = str(entry)
    return sorted(by_key.items())


def list_landing_files(directory: str | os.PathLike) -> list[LandingFile]:
    """Supported files of ``directory`` with their keys and fingerprints, sorted by key."""
    return [LandingFile(key, path, file_fingerprint(path)) for key, path in supported_files(directory)]


# --------------------------------------------------------------------------- records


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _scalar_to_str(value: Any, field: str) -> tuple[str | None, str | None]:
    """(string value or None when absent, error or None). Numbers become their decimal text."""
    if value is None or value == "":
        return None, None
    if isinstance(value, str):
        return value, None
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8") or None, None
        except UnicodeDecodeError as exc:
            return None, f"invalid UTF-8 in '{field}' at byte {exc.start}"
    if isinstance(value, bool):
        return str(value).lower(), None
    if isinstance(value, int):
        return str(value), None
    if isinstance(value, float):
        if value != value:  # NaN: what pandas and some writers use for "missing"
            return None, None
        # 3.0 comes from integer columns upcast by a null; "3" is what was meant.
        return (str(int(value)) if value.is_integer() else repr(value)), None
    if isinstance(value, Decimal):
        return str(value), None
    return None, f"'{field}' is not a string or number (got {_type_name(value)})"


def _metadata_value(value: Any) -> Any:
    # Nested values as JSON text: a stable string column whatever their shape per row.
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return value


def _metadata_array(values: list[Any]) -> pa.Array:
    try:
        return pa.array(values)
    except (pa.ArrowException, OverflowError, TypeError, ValueError):
        # Mixed types across rows (e.g. int here, str there): fall back to text.
        return pa.array([v if v is None or isinstance(v, str) else json.dumps(v, default=str) for v in values], pa.string())


def _excerpt_of_object(obj: dict) -> str:
    # Shorten long strings first so a 50 MB text is not serialised just for an excerpt.
    short = {str(k): _short(v) for k, v in obj.items()}
    return json.dumps(short, ensure_ascii=False, default=str)[:EXCERPT_CHARS]


def _short(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value[: 4 * EXCERPT_CHARS]).decode("utf-8", "replace")
    return value[:EXCERPT_CHARS] if isinstance(value, str) else value


def _excerpt_of_bytes(line: bytes) -> str:
    return line[: 4 * EXCERPT_CHARS].decode("utf-8", "replace").rstrip("\r\n")[:EXCERPT_CHARS]


class _ShardBuilder:
    """Accumulates the records and quarantine rows of one shard, row by row."""

    def __init__(self, shard: str, config: IngestConfig):
        self.shard = shard
        self.config = config
        self.ids: list[str] = []
        self.texts: list[str] = []
        self.labels: list[str | None] = []
        self.rows: list[int] = []
        self.metadata: list[dict[str, Any]] = []
        self.first_row_of_id: dict[str, int] = {}
        self.quarantined: list[tuple[int, str | None, str, str]] = []

    def quarantine(self, row: int, error: str, excerpt: str, record_id: str | None = None) -> None:
        self.quarantined.append((row, record_id, error, excerpt))

    def add(self, row: int, obj: dict, excerpt: Callable[[], str], noun: str) -> None:
        """Validate one parsed row; it becomes a record or a quarantine row."""
        config = self.config
        record_id, id_error = _scalar_to_str(obj.get(config.id_field), config.id_field)
        if config.text_field not in obj:
            return self.quarantine(row, f"missing '{config.text_field}' {noun}", excerpt(), record_id)
        text = obj[config.text_field]
        if isinstance(text, (bytes, bytearray)):
            # Older Parquet writers store strings as binary: valid UTF-8 is text like any other.
            try:
                text = bytes(text).decode("utf-8")
            except UnicodeDecodeError as exc:
                return self.quarantine(row, f"invalid UTF-8 in '{config.text_field}' at byte {exc.start}", excerpt(), record_id)
        if text is None:
            return self.quarantine(row, f"'{config.text_field}' is null", excerpt(), record_id)
        if not isinstance(text, str):
            return self.quarantine(row, f"'{config.text_field}' is not a string (got {_type_name(text)})", excerpt(), record_id)
        text = normalize_text(text)
        if len(text) > config.max_text_chars:
            return self.quarantine(row, f"text too long: {len(text)} chars > {config.max_text_chars}", excerpt(), record_id)
        if not text:
            return self.quarantine(row, "empty text after normalisation", excerpt(), record_id)
        if is_invisible(text):
            return self.quarantine(row, "invisible text: only whitespace and zero-width or format characters", excerpt(), record_id)
        if len(text) < config.min_text_chars:
            return self.quarantine(row, f"text too short: {len(text)} chars < {config.min_text_chars}", excerpt(), record_id)
        if id_error:
            return self.quarantine(row, id_error, excerpt(), None)
        label, label_error = _scalar_to_str(obj.get(config.label_field), config.label_field)
        if label_error:
            return self.quarantine(row, label_error, excerpt(), record_id)
        if record_id is None:
            record_id = f"{self.shard}:{row}"
        if record_id in self.first_row_of_id:
            first = self.first_row_of_id[record_id]
            return self.quarantine(row, f"duplicate id {record_id!r} (first seen at row {first})", excerpt(), record_id)
        self.first_row_of_id[record_id] = row
        self.ids.append(record_id)
        self.texts.append(text)
        label = label.strip() if label is not None else None
        self.labels.append(label or None)
        self.rows.append(row)
        fields = (config.id_field, config.text_field, config.label_field)
        self.metadata.append({k: _metadata_value(v) for k, v in obj.items() if k not in fields})

    def _metadata_columns(self) -> dict[str, pa.Array]:
        names: dict[str, None] = {}  # insertion-ordered set: first appearance decides order
        for meta in self.metadata:
            names.update(dict.fromkeys(meta))
        columns: dict[str, pa.Array] = {}
        for name in names:
            out_name = name
            while out_name in _RESERVED or out_name in columns:
                out_name = f"meta_{out_name}"
            columns[out_name] = _metadata_array([meta.get(name) for meta in self.metadata])
        return columns

    def result(self, raw_count: int) -> IngestResult:
        n = len(self.ids)
        core = {
            cols.ID: pa.array(self.ids, pa.string()),
            cols.TEXT: pa.array(self.texts, pa.string()),
            cols.LABEL: pa.array(self.labels, pa.string()),
            cols.CONTENT_HASH: pa.array(content_hashes(self.texts, already_normalized=True), pa.string()),
            cols.SHARD: pa.array([self.shard] * n, pa.string()),
            cols.ROW: pa.array(self.rows, pa.int64()),
        }
        records = pa.table({**core, **self._metadata_columns()})
        quarantined = sorted(self.quarantined, key=lambda q: q[0])
        quarantine = pa.table(
            {
                cols.SHARD: [self.shard] * len(quarantined),
                cols.ROW: [q[0] for q in quarantined],
                cols.ID: [q[1] for q in quarantined],
                cols.ERROR: [q[2] for q in quarantined],
                cols.RAW_EXCERPT: [q[3] for q in quarantined],
            },
            schema=QUARANTINE_SCHEMA,
        )
        if records.num_rows + quarantine.num_rows != raw_count:  # an invariant, not input validation
            raise AssertionError(f"{self.shard}: {records.num_rows} + {quarantine.num_rows} != {raw_count}")
        return IngestResult(records, quarantine, raw_count)


# --------------------------------------------------------------------------- readers


class _StreamBroken(Exception):
    """A compressed stream ended early or is corrupt part-way through."""


def _has_lone_surrogate(obj: Any) -> bool:
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def _add_json_line(builder: _ShardBuilder, row: int, line: bytes) -> None:
    excerpt = lambda: _excerpt_of_bytes(line)  # noqa: E731 - built only for quarantined rows
    line = line.rstrip(b"\r\n")  # so a string cut short reads as unterminated, not as holding "\n"
    try:
        decoded = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return builder.quarantine(row, f"invalid UTF-8 at byte {exc.start}", excerpt())
    try:
        obj = json.loads(decoded)
    except json.JSONDecodeError as exc:
        message = exc.msg.removesuffix(" at")  # "Invalid control character at" + our "at column"
        return builder.quarantine(row, f"invalid JSON: {message} at column {exc.colno}", excerpt())
    except RecursionError:
        return builder.quarantine(row, "invalid JSON: nested too deeply", excerpt())
    except ValueError as exc:  # e.g. an integer longer than Python's digit limit
        return builder.quarantine(row, f"invalid JSON: {exc}", excerpt())
    if not isinstance(obj, dict):
        return builder.quarantine(row, f"JSON line is not an object (got {_type_name(obj)})", excerpt())
    if _SURROGATE_ESCAPE.search(decoded) and _has_lone_surrogate(obj):
        return builder.quarantine(row, "invalid Unicode: unpaired surrogate escape", excerpt())
    builder.add(row, obj, excerpt, "field")


def _read_jsonl(path: str, builder: _ShardBuilder, compressed: bool) -> int:
    limit = builder.config.max_line_bytes
    with as_path(path).open("rb") as raw:
        stream = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw

        def readline() -> bytes:
            try:
                return stream.readline(limit)
            except gzip.BadGzipFile as exc:
                if row == 0 and "Not a gzipped file" in str(exc):
                    raise ShardReadError(f"{path}: {exc}") from exc
                raise _StreamBroken(f"corrupt gzip stream after {row} complete rows: {exc}") from exc
            except (EOFError, zlib.error) as exc:
                raise _StreamBroken(f"truncated gzip stream after {row} complete rows: {exc}") from exc

        row = 0
        first = True
        try:
            while line := readline():
                if first and line.startswith(codecs.BOM_UTF8):
                    line = line[len(codecs.BOM_UTF8) :]
                first = False
                if len(line) >= limit and not line.endswith(b"\n"):
                    head = line
                    while (rest := readline()) and not rest.endswith(b"\n"):
                        pass  # skip the remainder of the overlong line without keeping it
                    builder.quarantine(row, f"line too long: more than {limit} bytes", _excerpt_of_bytes(head))
                    row += 1
                    continue
                if not line.strip():
                    continue  # blank lines are not rows
                _add_json_line(builder, row, line)
                row += 1
        except _StreamBroken as exc:
            # Lines completed before the break are kept; the break itself is one row.
            builder.quarantine(row, str(exc), "")
            row += 1
    return row


def _read_parquet(path: str, builder: _ShardBuilder) -> int:
    with as_path(path).open("rb") as handle:
        try:
            parquet = pq.ParquetFile(handle)
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise ShardReadError(f"{path}: not a readable Parquet file: {exc}") from exc
        row = 0
        for group in range(parquet.num_row_groups):
            group_rows = parquet.metadata.row_group(group).num_rows
            try:
                rows = parquet.read_row_group(group).to_pylist()
            except (pa.ArrowException, OSError, ValueError) as exc:
                for r in range(row, row + group_rows):
                    builder.quarantine(r, f"unreadable Parquet row group {group}: {exc}", "")
                row += group_rows
                continue
            for obj in rows:
                builder.add(row, obj, lambda obj=obj: _excerpt_of_object(obj), "column")
                row += 1
        return row


def _read_csv(path: str, builder: _ShardBuilder) -> int:
    # The csv module caps fields at 128 KiB by default; the cap is process-wide, so it is
    # only ever raised, to the line limit that guards memory anyway.
    csv.field_size_limit(max(csv.field_size_limit(), builder.config.max_line_bytes))
    with as_path(path).open("rb") as raw:
        # surrogateescape: a bad byte spoils its row only, not the whole decode.
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="")
        reader = csv.reader(text)
        try:
            header = next(reader, None)
        except csv.Error as exc:
            raise ShardReadError(f"{path}: unreadable CSV header: {exc}") from exc
        if header is None:
            return 0
        # A bad byte in a column name must not reach the Arrow schema: show it as U+FFFD.
        header = [name.encode("utf-8", "surrogateescape").decode("utf-8", "replace") for name in header]
        row = 0
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                builder.quarantine(row, f"CSV parse error: {exc}", "")
                row += 1
                continue
            if not fields:
                continue  # blank line
            excerpt = ",".join(fields)[:EXCERPT_CHARS].encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            if len(fields) != len(header):
                builder.quarantine(row, f"CSV row has {len(fields)} fields, header has {len(header)}", excerpt)
                row += 1
                continue
            bad = next(((name, m) for name, value in zip(header, fields) if (m := _ESCAPED_BYTE.search(value))), None)
            if bad is not None:
                name, match = bad
                offset = len(match.string[: match.start()].encode("utf-8", "surrogateescape"))
                builder.quarantine(row, f"invalid UTF-8 in column {name!r} at byte {offset}", excerpt)
                row += 1
                continue
            builder.add(row, dict(zip(header, fields)), lambda excerpt=excerpt: excerpt, "column")
            row += 1
        return row


def read_shard(path: str | os.PathLike, key: str | None = None, config: IngestConfig | None = None) -> IngestResult:
    """Read one landing file into records and quarantine (see the module docstring).

    ``key`` defaults to :func:`shard_key` of the path. Raises :class:`ShardReadError` only
    when the file as a whole cannot be read.
    """
    config = config or IngestConfig()
    path = str(path)
    builder = _ShardBuilder(key or shard_key(path), config)
    suffix = _supported_suffix(_file_name(path))
    try:
        if suffix in (".jsonl", ".jsonl.gz"):
            raw_count = _read_jsonl(path, builder, compressed=suffix == ".jsonl.gz")
        elif suffix == ".parquet":
            raw_count = _read_parquet(path, builder)
        elif suffix == ".csv":
            raw_count = _read_csv(path, builder)
        else:
            raise ShardReadError(f"{path}: unsupported file type (expected one of {', '.join(SUPPORTED_SUFFIXES)})")
    except OSError as exc:
        raise ShardReadError(f"{path}: {exc.strerror or exc}") from exc
    return builder.result(raw_count)


def read_reference(path: str | os.PathLike, config: IngestConfig | None = None) -> IngestResult:
    """A target reference or evaluation set: one file, or a folder of supported files.

    Returns an :class:`IngestResult`: ``records`` holds the good records with the core
    columns only (id, text, label, content_hash, shard, row; metadata schemas may differ
    between files), ``quarantine`` every dropped row with its error, ``raw_count`` the
    total. An id repeated across files is quarantined like a repeat within a file.
    """
    config = config or IngestConfig()
    target = as_path(path)
    files = supported_files(target) if target.is_dir() else [(shard_key(str(path)), str(path))]
    results = [read_shard(file, key, config) for key, file in files]
    records = pa.concat_tables([r.records.select(RECORD_SCHEMA.names) for r in results] or [RECORD_SCHEMA.empty_table()])
    quarantine = pa.concat_tables([r.quarantine for r in results] or [QUARANTINE_SCHEMA.empty_table()])
    raw_count = sum(r.raw_count for r in results)

    ids = records.column(cols.ID).to_pylist()
    seen: dict[str, int] = {}
    repeats: list[int] = []
    for index, record_id in enumerate(ids):
        if record_id in seen:
            repeats.append(index)
        else:
            seen[record_id] = index
    if repeats:
        shards, rows = records.column(cols.SHARD).to_pylist(), records.column(cols.ROW).to_pylist()
        texts = records.column(cols.TEXT)
        moved = pa.table(
            {
                cols.SHARD: [shards[i] for i in repeats],
                cols.ROW: [rows[i] for i in repeats],
                cols.ID: [ids[i] for i in repeats],
                cols.ERROR: [
                    f"duplicate id {ids[i]!r} (first seen in {shards[seen[ids[i]]]} at row {rows[seen[ids[i]]]})" for i in repeats
                ],
                cols.RAW_EXCERPT: [texts[i].as_py()[:EXCERPT_CHARS] for i in repeats],
            },
            schema=QUARANTINE_SCHEMA,
        )
        keep = sorted(set(range(len(ids))) - set(repeats))
        records = records.take(pa.array(keep, pa.int64()))
        quarantine = pa.concat_tables([quarantine, moved])
    return IngestResult(records, quarantine, raw_count)
