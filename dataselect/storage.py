"""Files through fsspec/UPath, so a local path and an object-store URL work the same.

Every write is atomic: the bytes go to a temporary sibling which is then renamed over the
target, so a crash leaves either the old file or the new one, never a partial one.
(On object stores a single PUT is already atomic; the rename is then a server-side copy.)
"""

from __future__ import annotations

import io
import json
import os
import re
import uuid
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from upath import UPath

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._=-]+")


class UnsafePathError(ValueError):
    """A configured path or a name derived from input data would escape its root."""


def as_path(path: str | os.PathLike) -> UPath:
    return path if isinstance(path, UPath) else UPath(str(path))


def safe_name(name: str, max_length: int = 120) -> str:
    """A file-name-safe key: separators, '..' and odd characters become '_'."""
    cleaned = _SAFE_NAME.sub("_", name).strip("._") or "_"
    return cleaned[:max_length]


def confined(root: str | os.PathLike, *parts: str) -> UPath:
    """``root/parts...`` resolved, refusing anything that would land outside ``root``."""
    base = as_path(root)
    for part in parts:
        if part in ("", ".", "..") or "/" in part or "\\" in part or "\x00" in part:
            raise UnsafePathError(f"refusing path component {part!r} under {base}")
    target = base.joinpath(*parts)
    if base.protocol in ("", "file", "local"):
        resolved_base = os.path.realpath(str(base.path))
        resolved = os.path.realpath(str(target.path))
        if os.path.commonpath([resolved_base, resolved]) != resolved_base:
            raise UnsafePathError(f"{target} resolves outside {base}")
    return target


def exists(path: str | os.PathLike) -> bool:
    return as_path(path).exists()


def read_bytes(path: str | os.PathLike) -> bytes:
    return as_path(path).read_bytes()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> UPath:
    target = as_path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
    try:
        with temporary.open("wb") as handle:
            handle.write(data)
            if hasattr(handle, "fileno"):
                try:
                    handle.flush()
                    os.fsync(handle.fileno())
                except (OSError, io.UnsupportedOperation):
                    pass
        temporary.rename(target) if target.protocol not in ("", "file", "local") else os.replace(
            str(temporary.path), str(target.path)
        )
    finally:
        if temporary.exists():
            temporary.unlink()
    return target


def write_json(path: str | os.PathLike, value: Any) -> UPath:
    return atomic_write_bytes(path, json.dumps(value, indent=2, sort_keys=True, default=str).encode())


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(read_bytes(path))


def write_parquet(path: str | os.PathLike, table: pa.Table, metadata: dict[str, str] | None = None) -> UPath:
    """Write ``table`` atomically; ``metadata`` lands in the Parquet schema metadata."""
    if metadata:
        merged = dict(table.schema.metadata or {})
        merged.update({k.encode(): str(v).encode() for k, v in metadata.items()})
        table = table.replace_schema_metadata(merged)
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return atomic_write_bytes(path, sink.getvalue())


def read_parquet(path: str | os.PathLike, columns: list[str] | None = None) -> pa.Table:
    with as_path(path).open("rb") as handle:
        return pq.read_table(handle, columns=columns)


def parquet_metadata(path: str | os.PathLike) -> dict[str, str]:
    with as_path(path).open("rb") as handle:
        raw = pq.read_schema(handle).metadata or {}
    return {k.decode(): v.decode() for k, v in raw.items()}
