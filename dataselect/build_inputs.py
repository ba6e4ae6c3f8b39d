"""A build's arguments and input files, checked before any work.

A bad budget or an empty reference file used to surface only after ingest, embedding and
scoring had run. These checks are cheap (no model, no Dagster) and run first, so a bad call
fails in about a second with one line naming the argument or file and what is wrong.
Only the reference and evaluation files are parsed (they are small samples); landing shards
are only listed and opened, since a bad line in a shard is quarantined, not an error.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

from dataselect import records as cols
from dataselect.ingest import (
    SUPPORTED_SUFFIXES,
    ShardReadError,
    read_reference,
    supported_files,
)


class InputError(ValueError):
    """One argument or input file that makes the build impossible; the message names it."""


def check_budget(budget: float) -> None:
    """A fraction of all raw records in (0, 1], or a whole record count above 1."""
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not math.isfinite(budget) or budget <= 0:
        raise ValueError(f"budget must be a positive number (fraction <= 1 or count > 1), got {budget!r}")
    if budget > 1 and float(budget) != int(budget):
        raise ValueError(f"a budget > 1 is a record count and must be whole, got {budget!r}")


def check_build_inputs(landing: str, reference: str, evaluation: str | None, out: str, budget: float, seed: int) -> None:
    """Raise :class:`InputError` on the first argument or input that cannot make a build."""
    check_run_arguments(out, budget, seed)
    check_landing(landing)
    check_records_file(reference, "--reference", needs_labels=False)
    if evaluation:
        check_records_file(evaluation, "--eval", needs_labels=True)


def check_policy(policy: str | None) -> None:
    """A policy the selection can run as given (the registry is the one list of names)."""
    if policy is None:
        return
    from dataselect.selection.policies import SelectionConfig  # imported only when a policy is named

    try:
        SelectionConfig(policy=policy)
    except ValueError as error:
        raise InputError(f"--policy: {error}") from None


def check_run_arguments(out: str, budget: float, seed: int) -> None:
    """What every run needs, the demo included: a budget, a seed and a writable output folder."""
    try:
        check_budget(budget)
    except ValueError as error:
        raise InputError(f"--budget: {error}") from None
    if seed < 0:  # numpy's generators refuse negative seeds
        raise InputError(f"--seed: must be >= 0, got {seed}")
    check_writable_folder(out, "--out")


def check_landing(landing: str) -> None:
    path = Path(landing)
    if not path.exists():
        raise InputError(f"--landing {landing}: no such folder")
    if not path.is_dir():
        raise InputError(f"--landing {landing}: not a folder (the landing folder holds one file per shard)")
    try:
        files = supported_files(path)
    except PermissionError:
        raise InputError(f"--landing {landing}: folder not readable (permission denied)") from None
    except ValueError as error:  # two files that map to one shard key
        raise InputError(f"--landing {landing}: {error}") from None
    if not files:
        raise InputError(f"--landing {landing}: no shard files ({', '.join(SUPPORTED_SUFFIXES)}) in the folder")
    for _, file in files:
        if not os.access(file, os.R_OK):
            raise InputError(f"--landing {file}: shard file not readable (permission denied)")


def check_records_file(path: str, argument: str, needs_labels: bool) -> None:
    """The reference (or evaluation) file or folder exists and holds at least one usable record."""
    target = Path(path)
    if not target.exists():
        raise InputError(f"{argument} {path}: no such file or folder")
    if target.is_dir() and not supported_files(target):
        raise InputError(f"{argument} {path}: no {', '.join(SUPPORTED_SUFFIXES)} files in the folder")
    if target.is_file() and target.stat().st_size == 0:
        raise InputError(f"{argument} {path}: the file is empty")
    try:
        result = read_reference(path)
    except (ShardReadError, OSError, ValueError) as error:
        raise InputError(f"{argument} {path}: cannot be read: {error}") from None
    if result.records.num_rows == 0:
        first = result.quarantine.column(cols.ERROR)[0].as_py() if result.quarantine.num_rows else None
        detail = f"all {result.raw_count} rows are invalid (first: {first})" if first else "no records"
        raise InputError(f"{argument} {path}: no record with text: {detail}")
    if needs_labels and result.records.column(cols.LABEL).null_count == result.records.num_rows:
        raise InputError(f"{argument} {path}: no record has a label (the evaluation set needs text and label)")


def check_writable_folder(out: str, argument: str) -> None:
    """``out`` is a folder we can create and write into (tried for real: permission bits say
    nothing about read-only file systems, and nothing at all to root)."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise InputError(f"{argument} {out}: exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        raise InputError(f"{argument} {out}: cannot write there ({error.strerror or error})") from None
