"""Files through fsspec/UPath, so a local path and an object-store URL work the same.

Every write is atomic: the bytes go to a temporary sibling which is then renamed over the
target, so a crash leaves either the old file or the new one, never a partial one. The
temporary sibling a killed writer leaves behind is removed by the next write of the same
target. (On object stores a single PUT is already atomic; the rename is then a server-side copy.)
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import uuid
from collections.abc import Iterator
from typing import Any, BinaryIO

try:
    import fcntl
except ImportError:  # not on Windows: stale temp files are then left for a person to delete
    fcntl = None

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


def _is_local(path: UPath) -> bool:
    return path.protocol in ("", "file", "local")


def _temporary_name(target: UPath) -> str:
    # Hidden (leading dot), so listings of landing/store folders skip in-flight writes.
    return f".{target.name}.{uuid.uuid4().hex}.tmp"


def _remove_stale_temporaries(target: UPath) -> None:
    """Delete temp siblings of ``target`` left by writers that died (SIGKILL, OOM, power loss).

    A live writer holds an exclusive ``flock`` on its temp file for as long as it writes, and
    the kernel drops that lock when the process dies, however it dies. So a temp sibling we
    can lock has no live writer and can only be a crashed writer's leftover; one we cannot
    lock is in flight and is left alone. Local files only: on an object store a temp object
    exists only after a completed PUT, and the hidden name keeps it out of every listing.
    """
    if fcntl is None or not _is_local(target):
        return
    pattern = re.compile(rf"\.{re.escape(target.name)}\.[0-9a-f]{{32}}\.tmp")
    folder = str(target.parent.path)
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return
    prefix = f".{target.name}."
    for name in names:
        if not (name.startswith(prefix) and pattern.fullmatch(name)):
            continue
        stale = os.path.join(folder, name)
        try:
            descriptor = os.open(stale, os.O_RDONLY)
        except FileNotFoundError:
            continue  # another writer cleaned it first
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            continue  # a live writer
        try:
            os.unlink(stale)
        except FileNotFoundError:
            pass
        finally:
            os.close(descriptor)  # also releases the lock


def _fsync_directory(folder: str) -> None:
    # Makes the rename itself durable, not only the file contents.
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary handle whose bytes appear at ``path`` all at once when the block exits cleanly.

    For writes too large to hold in memory. The bytes go to a hidden temp sibling, which is
    renamed over ``path`` on success and removed on an exception; after a crash the next
    write of ``path`` removes it (see :func:`_remove_stale_temporaries`). Readers therefore
    see the old file or the new one, never a partial one.
    """
    target = as_path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(target)
    if not _is_local(target):
        temporary = target.parent / _temporary_name(target)
        try:
            with temporary.open("wb") as handle:
                yield handle
            temporary.rename(target)
        finally:
            if temporary.exists():
                temporary.unlink()
        return

    folder = str(target.parent.path)
    for _ in range(3):
        temporary = os.path.join(folder, _temporary_name(target))
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask applies, as with open()
        if fcntl is not None:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            try:
                # A cleaner may have taken the lock in the instant between create and flock,
                # and removed the file as stale: then start again under a new name.
                if os.stat(temporary).st_ino == os.fstat(descriptor).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(descriptor)
            continue
        break
    else:
        raise OSError(f"could not create a temporary file beside {target}")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
            os.replace(temporary, str(target.path))  # while still locked: never seen as stale
        _fsync_directory(folder)
    finally:
        if os.path.lexists(temporary):
            os.unlink(temporary)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> UPath:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path) as handle:
        handle.write(data)
    return as_path(path)


def write_json(path: str | os.PathLike, value: Any) -> UPath:
    return atomic_write_bytes(path, json.dumps(value, indent=2, sort_keys=True, default=str).encode())


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(read_bytes(path))


def write_parquet(path: str | os.PathLike, table: pa.Table, metadata: dict[str, str] | None = None, use_dictionary: bool = True) -> UPath:
    """Write ``table`` atomically; ``metadata`` lands in the Parquet schema metadata. ``use_dictionary``
    False suits columns of many distinct numbers, where dictionary pages only cost time."""
    if metadata:
        merged = dict(table.schema.metadata or {})
        merged.update({k.encode(): str(v).encode() for k, v in metadata.items()})
        table = table.replace_schema_metadata(merged)
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", use_dictionary=use_dictionary)
    return atomic_write_bytes(path, sink.getvalue())


def read_parquet(path: str | os.PathLike, columns: list[str] | None = None) -> pa.Table:
    with as_path(path).open("rb") as handle:
        return pq.read_table(handle, columns=columns)


def parquet_num_rows(path: str | os.PathLike) -> int:
    """Rows of a Parquet file, from its footer (no column is read)."""
    with as_path(path).open("rb") as handle:
        return pq.ParquetFile(handle).metadata.num_rows


def parquet_schema(path: str | os.PathLike) -> pa.Schema:
    """A Parquet file's schema (column names, types, metadata), from its footer."""
    with as_path(path).open("rb") as handle:
        return pq.read_schema(handle)


def parquet_metadata(path: str | os.PathLike) -> dict[str, str]:
    with as_path(path).open("rb") as handle:
        raw = pq.read_schema(handle).metadata or {}
    return {k.decode(): v.decode() for k, v in raw.items()}
