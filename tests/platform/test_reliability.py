"""Reliability guarantees end to end: duplicate ids across shards, bad input through a full
build, the landing sensor across restarts, and refusing a selection over mixed shard versions.

The Dagster tests run the real assets with ``materialize`` on a small synthetic demo with the
static embedding backend (no network, CPU only).
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import shutil
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from dataselect import records as cols
from dataselect.scorers import DEFAULT_POOL_SCORERS, SCORERS
from dataselect.scorers.base import Batch
from dataselect.scorers.ids import UniqueIds

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

# A clean English paragraph that passes the heuristic rules (>= 30 words, stop words, no junk).
CLEAN = (
    "The observatory team measured the orbit of a faint comet over many nights, and the data show that the comet "
    "returns to the inner solar system every few decades. Astronomers compared the new images with older plates "
    "to confirm the path, and they expect to publish the full catalogue with the help of amateur observers."
)


# --------------------------------------------------------------------------- unique ids


def test_unique_ids_keeps_the_first_occurrence_in_shard_row_order():
    # Rows are deliberately not in (shard, row) order: "first" must follow shard then row.
    records = pa.table(
        {
            cols.ID: ["a", "b", "a", "c", "b", "a"],
            cols.SHARD: ["s2", "s1", "s1", "s1", "s2", "s2"],
            cols.ROW: [0, 0, 1, 2, 1, 2],
        }
    )
    out = UniqueIds().score(Batch(records))
    assert out["keep"].tolist() == [False, True, True, True, False, False]
    assert out["reason"].tolist() == [
        "duplicate id 'a' (first in shard s1 row 1)",
        "",
        "",
        "",
        "duplicate id 'b' (first in shard s1 row 0)",
        "duplicate id 'a' (first in shard s1 row 1)",
    ]
    assert out["first_index"].tolist() == [2, 1, 2, 3, 1, 2]
    assert SCORERS["unique_id"] is UniqueIds and DEFAULT_POOL_SCORERS[0] == "unique_id"


def test_unique_ids_on_an_empty_batch_and_numeric_ids():
    empty = pa.table({cols.ID: pa.array([], pa.string()), cols.SHARD: pa.array([], pa.string()), cols.ROW: pa.array([], pa.int64())})
    assert UniqueIds().score(Batch(empty))["keep"].tolist() == []
    out = UniqueIds().score(Batch(pa.table({cols.ID: [5, 6, 5]})))
    assert out["keep"].tolist() == [True, True, False]
    assert out["reason"][2] == "duplicate id '5' (first at batch row 0)"


# --------------------------------------------------------------------------- Dagster helpers


def _materialize(instance, resources, selection, partition_key=None, run_config=None):
    from dagster import materialize

    from dataselect_platform.definitions import all_assets, all_checks

    return materialize(
        [*all_assets, *all_checks],
        selection=selection,
        partition_key=partition_key,
        instance=instance,
        resources=resources,
        run_config=run_config or {},
        raise_on_error=False,
    )


def _failure_text(result) -> str:
    """The step errors of a run, retried attempts included (the last one may only say
    "Exceeded max_retries"; the run-level event only says which step failed)."""
    return " | ".join(
        event.event_specific_data.error.message
        for event in result.all_events
        if (event.is_step_failure or event.is_step_up_for_retry) and event.event_specific_data.error
    )


def _ok(result):
    assert result.success, _failure_text(result)
    return result


def _raw_lines(folder: Path) -> int:
    """Non-blank lines of every JSONL(.gz) file: the raw records an accounting must cover."""
    total = 0
    for path in folder.iterdir():
        data = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
        total += sum(1 for line in data.split(b"\n") if line.strip())
    return total


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from dataselect.demo import write_demo

    return write_demo(tmp_path_factory.mktemp("demo"), n_records=200, n_shards=2)


# --------------------------------------------------------------------------- concurrency


@pytest.mark.slow
def test_selection_refuses_mixed_shard_versions_and_keeps_the_previous_build(demo, tmp_path):
    from dagster import Failure, build_asset_context, instance_for_test

    from dataselect.ingest import list_landing_files
    from dataselect_platform.definitions import make_resources
    from dataselect_platform.runner import BuildInputs
    from jobs.build_plan import BuildSettings
    from platform_assets.selection import SelectionBuildConfig, filtered_set
    from tests.platform.helpers import build_with_plan

    landing = tmp_path / "landing"
    shutil.copytree(demo.landing, landing)
    store = tmp_path / "store"
    resources = make_resources(str(landing), demo.reference, "", str(store), "static")
    (tmp_path / "home").mkdir()
    with instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        inputs = BuildInputs(str(landing), demo.reference, None, str(store), {"backend": "static"})
        build_with_plan(instance, inputs, BuildSettings(with_report=False))
        first_build = instance.get_latest_materialization_event(filtered_set.key).asset_materialization.metadata["build_id"].value
        before = _tree(store / "builds")

        # The first shard's landing file changes and only its raw_pool is refreshed.
        changed = next(p for p in landing.iterdir() if p.name.endswith(".jsonl"))
        lines = changed.read_bytes().splitlines(keepends=True)
        changed.write_bytes(b"".join(lines[: len(lines) // 2]))
        changed_key = next(f.key for f in list_landing_files(landing) if f.path == str(changed))
        _ok(_materialize(instance, resources, ["raw_pool"], changed_key))

        # Called directly rather than through materialize: the asset's retry policy would
        # retry twice, 10 s apart, and the run's last event reads "Exceeded max_retries".
        with pytest.raises(Failure) as refused:
            filtered_set(
                build_asset_context(instance=instance, resources={"storage": resources["storage"], "inputs": resources["inputs"]}),
                SelectionBuildConfig(),
            )
        assert str(refused.value.description) == (
            f"shard {changed_key!r}: quality_scores were computed from another version of the file; rescore it first"
        )
        assert _tree(store / "builds") == before, "a refused build must leave the previous build untouched"

        # After rescoring that shard the build goes through, under a new id, beside the old one.
        _ok(_materialize(instance, resources, ["embeddings", "quality_scores"], changed_key))
        _ok(_materialize(instance, resources, ["filtered_set"]))
        second_build = instance.get_latest_materialization_event(filtered_set.key).asset_materialization.metadata["build_id"].value
    assert second_build != first_build
    after = _tree(store / "builds")
    assert {k: v for k, v in after.items() if k.startswith(first_build)} == {k: v for k, v in before.items() if k.startswith(first_build)}
    decisions = pd.read_parquet(store / "builds" / second_build / "decisions.parquet")
    assert len(decisions) == _raw_lines(landing)


# --------------------------------------------------------------------------- landing sensor


def test_landing_sensor_never_duplicates_runs_after_cursor_loss_or_restart(tmp_path):
    """Runs the real sensor daemon tick (the code ``dagster-daemon`` runs) against an instance.

    Dagster's idempotence mechanism: each RunRequest's run key is stored as the
    ``dagster/run_key`` tag of the run it creates, and before creating runs the daemon looks
    up runs of the same sensor with those tags and skips the keys that already have one.
    """
    from dagster import instance_for_test
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.storage.tags import RUN_KEY_TAG
    from dagster._core.test_utils import create_test_daemon_workspace_context, freeze_time
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._core.workspace.load_target import WorkspaceLoadTarget
    from dagster._daemon.sensor import execute_sensor_iteration

    from dataselect.ingest import file_fingerprint

    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "a.jsonl").write_text(json.dumps({"id": "1", "text": CLEAN}) + "\n")
    (landing / "b.jsonl").write_text(json.dumps({"id": "2", "text": CLEAN + " More."}) + "\n")
    definitions_file = tmp_path / "sensor_definitions.py"
    definitions_file.write_text(
        "from dagster import Definitions\n"
        "from jobs import shard_ingest_job\n"
        "from dataselect_platform.definitions import all_assets, make_resources\n"
        "from sensors import landing_sensor\n"
        "defs = Definitions(assets=all_assets, jobs=[shard_ingest_job], sensors=[landing_sensor],\n"
        f"    resources=make_resources({str(landing)!r}, 'reference.jsonl', '', {str(tmp_path / 'store')!r}, 'static'))\n"
    )
    repository_root = str(Path(__file__).resolve().parents[2])

    class InProcessDefinitions(WorkspaceLoadTarget):
        def create_origins(self):
            origin = LoadableTargetOrigin(python_file=str(definitions_file), attribute="defs", working_directory=repository_root)
            return [InProcessCodeLocationOrigin(origin, location_name="dataselect_test")]

    def tick(instance, now: float) -> None:
        # A fresh workspace context per tick: what a daemon restart looks like to the sensor.
        with create_test_daemon_workspace_context(InProcessDefinitions(), instance) as workspace:
            with freeze_time(now):
                list(execute_sensor_iteration(workspace, logging.getLogger("sensor-test"), None, None))

    def run_keys(instance) -> list[str]:
        return sorted(run.tags[RUN_KEY_TAG] for run in instance.get_runs())

    expected = sorted(f"{name}:{file_fingerprint(landing / f'{name}.jsonl')}" for name in ("a", "b"))
    # Queued runs are created in the instance but never executed: the test is about run creation.
    queued = {"run_coordinator": {"module": "dagster._core.run_coordinator", "class": "QueuedRunCoordinator"}}
    (tmp_path / "home").mkdir()
    start = 1_900_000_000.0
    with instance_for_test(temp_dir=str(tmp_path / "home"), overrides=queued) as instance:
        tick(instance, start)
        assert run_keys(instance) == expected
        assert sorted(instance.get_dynamic_partitions("shards")) == ["a", "b"]

        # Restart with the persisted cursor: unchanged files give nothing.
        tick(instance, start + 60)
        assert run_keys(instance) == expected

        # Cursor lost (e.g. the sensor was reset): the sensor asks again, the instance refuses.
        (state,) = instance.all_instigator_state()
        instance.update_instigator_state(state.with_data(state.instigator_data._replace(cursor=None)))
        assert instance.all_instigator_state()[0].instigator_data.cursor is None
        tick(instance, start + 120)
        assert run_keys(instance) == expected
        latest = instance.get_ticks(state.instigator_origin_id, state.selector_id)[0]
        assert sorted(latest.run_keys) == expected and latest.run_ids == []  # requested, then skipped

        # A changed file is a new version: exactly one new run, for that file.
        (landing / "b.jsonl").write_text(json.dumps({"id": "2", "text": CLEAN + " Edited."}) + "\n")
        tick(instance, start + 180)
        new_key = f"b:{file_fingerprint(landing / 'b.jsonl')}"
        assert run_keys(instance) == sorted(expected + [new_key])


# --------------------------------------------------------------------------- bad input, end to end


def _line(record) -> bytes:
    return (json.dumps(record) + "\n").encode()


@pytest.mark.slow
def test_bad_inputs_end_to_end_through_a_full_build(demo, tmp_path, monkeypatch):
    from dataselect.ingest import read_shard
    from dataselect_platform.cli import run_build

    landing = tmp_path / "landing"
    shutil.copytree(demo.landing, landing)
    # An id that already exists in an earlier shard, and where it is.
    first_shard = sorted(landing.iterdir())[0]
    earlier = read_shard(first_shard).records
    taken_id, taken_shard, taken_row = (earlier.column(c)[3].as_py() for c in (cols.ID, cols.SHARD, cols.ROW))

    mixed = [
        _line({"id": "mix-good", "text": CLEAN, "label": "astronomy"}),
        b'{"id": "mix-bad-json", "text": "unterminated\n',
        _line({"id": "mix-no-text", "label": "astronomy"}),
        b'{"id": "mix-latin1", "text": "caf\xe9 au lait"}\n',
        _line({"id": "mix-control", "text": "\x00" + CLEAN + " Controls\x07 removed.", "label": "astronomy"}),
        _line({"id": "mix-only-control", "text": "\x00\x01\x02"}),
        _line({"id": "mix-empty", "text": ""}),
        _line({"id": "mix-space", "text": "  \t \n "}),
        _line({"id": "mix-good", "text": CLEAN + " A second record reusing the first id."}),
        _line({"id": taken_id, "text": CLEAN + " This one reuses an id from another shard.", "label": "medicine"}),
    ]
    # "zz-" sorts after the demo shards, so the cross-shard repeat is the later copy.
    (landing / "zz-mixed.jsonl").write_bytes(b"".join(mixed))
    (landing / "zz-empty.jsonl").write_bytes(b"")
    rng = np.random.default_rng(0)
    words = CLEAN.split()
    truncated_lines = [_line({"id": f"trunc-{i}", "text": " ".join(rng.choice(words, 80)), "label": "medicine"}) for i in range(6)]
    compressed = gzip.compress(b"".join(truncated_lines), mtime=0)
    (landing / "zz-truncated.jsonl.gz").write_bytes(compressed[: int(len(compressed) * 0.7)])
    # Independently: the complete lines a decompressor can recover from the cut stream.
    recoverable = zlib.decompressobj(wbits=31).decompress(compressed[: int(len(compressed) * 0.7)])
    complete_rows = recoverable.count(b"\n")
    assert 0 < complete_rows < 6

    # Evaluation labels that never occur in the pool must not crash the report.
    evaluation = tmp_path / "eval.jsonl"
    unseen = [_line({"id": f"eval-unseen-{i}", "text": CLEAN + f" Basket number {i}.", "label": "basketweaving"}) for i in range(3)]
    evaluation.write_bytes(Path(demo.evaluation).read_bytes() + b"".join(unseen))

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "out" / "dagster_home"))
    result = run_build(str(landing), demo.reference, str(evaluation), str(tmp_path / "out"), 0.1, 0, "static")

    decisions = pd.read_parquet(result["decisions"])
    by_key = decisions.set_index([cols.SHARD, cols.ROW])

    def decision(shard: str, row: int) -> tuple[str, str, str]:
        entry = by_key.loc[(shard, row)]
        return entry[cols.STATUS], entry[cols.DECIDED_BY], entry[cols.REASON]

    assert decision("zz-mixed", 1)[:2] == (cols.QUARANTINED, "ingest")
    assert decision("zz-mixed", 1)[2].startswith("invalid JSON: Unterminated string")
    assert decision("zz-mixed", 2) == (cols.QUARANTINED, "ingest", "missing 'text' field")
    bad_byte = mixed[3].index(b"\xe9")
    assert decision("zz-mixed", 3) == (cols.QUARANTINED, "ingest", f"invalid UTF-8 at byte {bad_byte}")
    for row in (5, 6, 7):
        assert decision("zz-mixed", row) == (cols.QUARANTINED, "ingest", "empty text after normalisation")
    assert decision("zz-mixed", 8) == (cols.QUARANTINED, "ingest", "duplicate id 'mix-good' (first seen at row 0)")
    assert decision("zz-mixed", 9) == (
        cols.REJECTED,
        "unique_id",
        f"duplicate id {taken_id!r} (first in shard {taken_shard} row {taken_row})",
    )
    # Good records (including the one that had control characters) flow on to a real decision.
    for row in (0, 4):
        assert decision("zz-mixed", row)[0] in (cols.SELECTED, cols.REJECTED)
        assert decision("zz-mixed", row)[1] != "ingest"
    stored = pd.read_parquet(tmp_path / "out" / "store" / "raw_pool" / "zz-mixed.parquet").set_index(cols.ID)
    assert stored.loc["mix-control", cols.TEXT] == CLEAN + " Controls removed."

    assert not (decisions[cols.SHARD] == "zz-empty").any()
    truncated = decisions[decisions[cols.SHARD] == "zz-truncated"].sort_values(cols.ROW)
    assert truncated[cols.ROW].tolist() == list(range(complete_rows + 1))
    assert (truncated[cols.STATUS].iloc[:-1] != cols.QUARANTINED).all()
    assert truncated[cols.REASON].iloc[-1].startswith(f"truncated gzip stream after {complete_rows} complete rows")

    # Accounting: one decision per raw line of every input file, and the demo shards still flow.
    assert len(decisions) == _raw_lines(Path(demo.landing)) + len(mixed) + complete_rows + 1
    counts = result["counts"]
    assert counts["raw"] == len(decisions) == counts["selected"] + counts["rejected"] + counts["quarantined"]
    assert counts["selected"] > 0
    summary = json.loads(Path(result["summary"]).read_text())
    assert summary["arms"]["selected"]["unseen_eval_labels"] == ["basketweaving"]
    assert summary["arms"]["selected"]["per_class_recall"]["basketweaving"] == 0.0
    # The selected records are exactly the selected decisions: a repeated id is not pulled in twice.
    selected = pd.read_parquet(result["selected"])
    assert selected[cols.ID].is_unique and len(selected) == counts["selected"]
