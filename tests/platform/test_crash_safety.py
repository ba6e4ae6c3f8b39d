"""Crash safety: a writer killed with SIGKILL leaves the old file or none, never a partial one;
the next write of the same target removes the killed writer's temp file; and a build killed
part-way through the embedding step, then re-run, ends byte-identical to an uninterrupted one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from dataselect.storage import atomic_write_bytes

REPOSITORY = Path(__file__).resolve().parents[2]
CHUNK = 64 * 1024

# A writer that streams a large file slowly through atomic_open, so it can be killed mid-write.
SLOW_WRITER = f"""
import sys, time
sys.path.insert(0, {str(REPOSITORY)!r})
from dataselect.storage import atomic_open
with atomic_open(sys.argv[1]) as handle:
    for _ in range(100_000):
        handle.write(b"x" * {CHUNK})
        handle.flush()
        time.sleep(0.005)
"""


def _temporaries(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.endswith(".tmp")) if folder.exists() else []


def _start_slow_writer(target: Path) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(target)])
    deadline = time.monotonic() + 60
    # Wait until it is visibly mid-write: its temp file already holds several chunks.
    while time.monotonic() < deadline:
        temporaries = _temporaries(target.parent)
        if temporaries and temporaries[0].stat().st_size >= 4 * CHUNK:
            return process
        assert process.poll() is None, "the writer exited early"
        time.sleep(0.02)
    process.kill()
    raise AssertionError("the writer never started writing")


def _kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL


def test_a_killed_writer_leaves_the_old_file_and_the_rerun_leaves_only_the_final_file(tmp_path):
    target = tmp_path / "big.bin"
    target.write_bytes(b"old version")
    writer = _start_slow_writer(target)
    _kill(writer)
    (leftover,) = _temporaries(tmp_path)  # what SIGKILL leaves: the hidden temp sibling
    assert leftover.name.startswith(".big.bin.") and leftover.stat().st_size >= 4 * CHUNK
    assert target.read_bytes() == b"old version"  # readers never saw a partial file

    atomic_write_bytes(target, b"new version")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.bin"]
    assert target.read_bytes() == b"new version"


def test_a_killed_first_write_leaves_no_file_and_the_rerun_cleans_up(tmp_path):
    target = tmp_path / "sub" / "first.parquet"
    writer = _start_slow_writer(target)
    _kill(writer)
    assert not target.exists() and len(_temporaries(target.parent)) == 1
    atomic_write_bytes(target, b"complete")
    assert sorted(p.name for p in target.parent.iterdir()) == ["first.parquet"]


def test_a_live_writers_temp_file_is_not_taken_for_a_stale_one(tmp_path):
    target = tmp_path / "shared.bin"
    writer = _start_slow_writer(target)
    try:
        (live,) = _temporaries(tmp_path)
        atomic_write_bytes(target, b"from another writer")  # must not delete the live temp file
        assert live.exists() and _temporaries(tmp_path) == [live]
        assert target.read_bytes() == b"from another writer"
    finally:
        _kill(writer)
    atomic_write_bytes(target, b"final")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared.bin"]


def test_a_failed_write_removes_its_temp_file_and_keeps_the_old_file(tmp_path):
    from dataselect.storage import atomic_open

    target = tmp_path / "data.json"
    target.write_bytes(b"{}")
    with pytest.raises(RuntimeError):
        with atomic_open(target) as handle:
            handle.write(b'{"partial": ')
            raise RuntimeError("disk full")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.json"] and target.read_bytes() == b"{}"


# --------------------------------------------------------------------------- a killed build


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _build(landing: str, reference: str, out: Path) -> str:
    """The build plan up to the selection (the evaluation report is not under test here),
    against the Dagster instance in ``out/dagster_home``; returns the build id."""
    from dagster import DagsterInstance

    from dataselect_platform.runner import BuildInputs
    from jobs.build_plan import BuildSettings
    from tests.platform.helpers import build_with_plan

    (out / "dagster_home").mkdir(parents=True, exist_ok=True)
    instance = DagsterInstance.from_config(str(out / "dagster_home"))
    inputs = BuildInputs(landing, reference, None, str(out / "store"), {"backend": "static"})
    runs = build_with_plan(instance, inputs, BuildSettings(seed=0, selection={"budget": 0.1}, with_report=False))
    build_id = next(e.materialization.metadata["build_id"].value for e in runs[-1].get_asset_materialization_events())
    instance.dispose()
    return build_id


@pytest.mark.slow
def test_a_build_killed_during_embeddings_resumes_to_identical_outputs(tmp_path):
    from dataselect.demo import write_demo

    demo = write_demo(tmp_path / "demo", n_records=200, n_shards=2)
    killed_out, clean_out = tmp_path / "killed", tmp_path / "clean"
    environment = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    environment.update(HF_HUB_OFFLINE="1", GX_ANALYTICS_ENABLED="False", PYTHONPATH=str(REPOSITORY))
    command = [
        sys.executable,
        "-m",
        "dataselect_platform.cli",
        "build",
        "--landing",
        demo.landing,
        "--reference",
        demo.reference,
        "--backend",
        "static",
        "--seed",
        "0",
        "--out",
        str(killed_out),
        "--max-concurrent",
        "2",
    ]
    build = subprocess.Popen(command, env=environment, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    embeddings = killed_out / "store" / "embeddings"
    deadline = time.monotonic() + 240
    while not (embeddings.exists() and any(p.suffix == ".parquet" for p in embeddings.iterdir())):
        assert build.poll() is None, "the build ended before its first embeddings file appeared"
        assert time.monotonic() < deadline, "no embeddings file within the time limit"
        time.sleep(0.01)
    workers = psutil.Process(build.pid).children(recursive=True)
    assert workers, "the build runs its shards in worker processes"
    _kill(build)
    # The workers die with the build instead of writing on (both shards' runs may have been in flight).
    _, alive = psutil.wait_procs(workers, timeout=30)
    assert alive == []
    assert not (killed_out / "store" / "builds").exists(), "the kill came after the build had finished"

    # Resume in the same folder (same Dagster instance and store), and build once without a kill.
    resumed = _build(demo.landing, demo.reference, killed_out)
    clean = _build(demo.landing, demo.reference, clean_out)

    assert resumed == clean
    killed_store, clean_store = _files(killed_out / "store"), _files(clean_out / "store")
    for name in ("selected.parquet", "decisions.parquet", "manifest.json"):
        assert killed_store[f"builds/{clean}/{name}"] == clean_store[f"builds/{clean}/{name}"], name
    # Every file matches, per-shard and model files included: nothing half-written survived the kill.
    assert killed_store.keys() == clean_store.keys()
    # Byte for byte, the build index too (it records manifest paths relative to the store).
    assert [k for k in killed_store if killed_store[k] != clean_store[k]] == []
    assert [p for p in tmp_path.rglob("*.tmp")] == []
