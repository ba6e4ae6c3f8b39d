"""``dataselect build`` as a Dagster client, in a subprocess: the build plan's named jobs on the
instance it built, per-shard runs in parallel, the landing sensor leaving alone what the CLI
ingested, and unreadable landing files (the readable ones are built, the failed files listed)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster import AssetKey, DagsterInstance, DagsterRunStatus, SensorResult, SkipReason, build_sensor_context

from dataselect.demo import write_demo
from dataselect_platform.runner import STAGE_TAG
from jobs.build_plan import BUILD_PLAN, BuildSettings, waves
from resources import InputsResource
from sensors import landing_sensor
from tests.platform.helpers import ROOT

pytestmark = pytest.mark.slow


def _build(
    landing: Path, reference: str, out: Path, *options: str, evaluation: str | None = None
) -> tuple[subprocess.CompletedProcess, dict]:
    command = [
        sys.executable,
        "-m",
        "dataselect_platform.cli",
        "build",
        "--landing",
        str(landing),
        "--reference",
        reference,
        "--backend",
        "static",
        "--out",
        str(out),
        *options,
    ]
    if evaluation:
        command += ["--eval", evaluation]
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    done = subprocess.run(command, cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=900)
    assert done.stdout.strip(), done.stderr[-3000:]
    return done, json.loads(done.stdout.strip().splitlines()[-1])


def _runs(home: Path) -> list:
    instance = DagsterInstance.from_config(str(home))
    records = sorted(instance.get_run_records(), key=lambda r: r.create_timestamp)
    instance.dispose()
    return records


def _rows(demo) -> int:
    """Raw records of the demo's landing files (JSONL, gzip, Parquet and CSV), from its ground truth."""
    return pq.read_metadata(demo.ground_truth).num_rows


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return write_demo(tmp_path_factory.mktemp("demo"), n_records=240, n_shards=4)


def test_build_runs_the_named_jobs_concurrently_and_the_sensor_skips_what_it_ingested(demo, tmp_path):
    landing = Path(shutil.copytree(demo.landing, tmp_path / "landing"))
    # --fresh-workers-above 0: the global waves get workers of their own, as a pool above 250k records does.
    # With --eval every stage of the plan has runs (the report's arms need the term counts).
    options = ("--max-concurrent", "2", "--quiet", "--fresh-workers-above", "0")
    done, summary = _build(landing, demo.reference, tmp_path / "out", *options, evaluation=demo.evaluation)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("\n") == 1 and "[dataselect]" not in done.stderr  # --quiet: the JSON summary only
    assert summary["failed_files"] == [] and summary["counts"]["raw"] == _rows(demo)

    home = tmp_path / "out" / "dagster_home"
    runs = _runs(home)
    keys = sorted(p.name.split(".")[0] for p in landing.iterdir())
    expected = [(step.stage, step.job, key) for step in BUILD_PLAN for key, _ in step.runs(BuildSettings(), keys)]
    launched = [(r.dagster_run.tags.get(STAGE_TAG), r.dagster_run.job_name, r.dagster_run.tags.get("dagster/partition")) for r in runs]
    assert sorted(launched, key=str) == sorted(expected, key=str)  # the platform's jobs, not __ephemeral_asset_job__
    assert {r.dagster_run.status for r in runs} == {DagsterRunStatus.SUCCESS}
    # The report's run evaluates the build the selection's run made, named in its config (the newest
    # filtered_set may be another build's when two builds share the instance).
    # So does the run beside it that sweeps the budget and leaves each scorer out.
    report_runs = {
        next(iter(r.dagster_run.run_config["ops"])): r.dagster_run for r in runs if r.dagster_run.tags.get(STAGE_TAG) == "report"
    }
    assert sorted(report_runs) == ["evaluation_analyses", "evaluation_report"]
    assert all(run.run_config["ops"][key]["config"]["build_id"] == summary["build_id"] for key, run in report_runs.items())
    assert (
        "Budget sweep" in Path(summary["analyses"]).read_text()
        and Path(summary["report"]).parent.parent == Path(summary["analyses"]).parent.parent
    )
    # The runs of one stage with several ran at the same time: some run started before another had ended.
    for step in BUILD_PLAN:
        spans = sorted((r.start_time, r.end_time) for r in runs if r.dagster_run.tags.get(STAGE_TAG) == step.stage)
        if len(spans) > 1:
            assert any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:])), (step.stage, spans)
    # Waves did not: every run of a wave started after the previous wave's runs had ended ...
    stage_runs = {step.stage: [r for r in runs if r.dagster_run.tags.get(STAGE_TAG) == step.stage] for step in BUILD_PLAN}
    plan_waves = waves(BUILD_PLAN)
    # Embedding the target starts with the shards' ingest, counting the pool's terms with their scoring.
    assert [[s.stage for s in w] for w in plan_waves if len(w) > 1] == [["ingest + embed", "embed target"], ["count terms", "score"]]
    for before, after in zip(plan_waves, plan_waves[1:]):
        assert max(r.end_time for s in before for r in stage_runs[s.stage]) <= min(r.start_time for s in after for r in stage_runs[s.stage])
    # ... while the stages of one wave ran side by side: one stage's first run started before the other's last ended.
    for first, alongside in (w for w in plan_waves if len(w) > 1):
        assert min(r.start_time for r in stage_runs[alongside.stage]) < max(r.end_time for r in stage_runs[first.stage])
        assert min(r.start_time for r in stage_runs[first.stage]) < max(r.end_time for r in stage_runs[alongside.stage])

    # `dagster dev` on this home: the landing sensor requests nothing for the files the CLI ingested ...
    instance = DagsterInstance.from_config(str(home))
    # A wave of global steps ran in workers of its own: none ran in a process that had run an earlier wave.
    pids = {
        stage: {
            e.dagster_event.pid for r in found for e in instance.all_logs(r.dagster_run.run_id) if e.dagster_event and e.dagster_event.pid
        }
        for stage, found in stage_runs.items()
    }
    earlier: set[int] = set()
    for wave in plan_waves:
        here = set().union(*(pids[step.stage] for step in wave))
        if all(not step.per_shard for step in wave):
            assert here and not here & earlier, (wave, here, earlier)
        earlier |= here
    inputs = {"inputs": InputsResource(landing_dir=str(landing))}
    with build_sensor_context(instance=instance, resources=inputs) as context:
        first = landing_sensor(context)
    assert isinstance(first, SensorResult) and first.run_requests == []
    assert isinstance(first.skip_reason, SkipReason)
    # ... and one run each for an edited file and a new one.
    edited = sorted(landing.iterdir())[0]
    edited.write_text(edited.read_text() + json.dumps({"id": "late-addition", "text": "A record appended after the build."}) + "\n")
    shutil.copy(edited, landing / "new-arrival.jsonl")
    with build_sensor_context(instance=instance, cursor=first.cursor, resources=inputs) as context:
        second = landing_sensor(context)
    assert sorted(r.partition_key for r in second.run_requests) == sorted([edited.name.split(".")[0], "new-arrival"])
    instance.dispose()


def _unreadable_files(landing: Path) -> list[Path]:
    not_gzip = landing / "not-gzip.jsonl.gz"
    not_gzip.write_text(json.dumps({"id": "plain", "text": "This file is plain text under a .gz name."}) + "\n")
    truncated = landing / "truncated.parquet"
    pq.write_table(
        pa.table({"id": [f"t{i}" for i in range(200)], "text": [f"a record of the truncated file {i}" for i in range(200)]}), truncated
    )
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    return [not_gzip, truncated]


def test_the_report_runs_alone_where_the_analyses_would_do_nothing():
    """Above the analyses' default size their run is left out of the plan, so the report's run has
    every core; asked for budgets, or at a small pool, it runs beside the report."""
    [report_step] = [step for step in BUILD_PLAN if step.stage == "report"]
    both = [(None, ["evaluation_report"]), (None, ["evaluation_analyses"])]
    assert report_step.runs(BuildSettings(), []) == both  # the selection not made yet: the size is unknown
    assert report_step.runs(BuildSettings(), [], pool_records=20_000) == both
    assert report_step.runs(BuildSettings(), [], pool_records=20_001) == [(None, ["evaluation_report"])]
    asked = BuildSettings(analyses={"budgets": [0.1]})
    assert report_step.runs(asked, [], pool_records=1_000_000) == both
    nothing = BuildSettings(analyses={"budgets": [], "ablation": False})
    assert report_step.runs(nothing, [], pool_records=10) == [(None, ["evaluation_report"])]


def test_a_build_without_an_evaluation_file_starts_no_run_for_the_arms():
    """Counting terms and training the full pool's arm serve only the report's arms: without a labelled
    evaluation file the shards are scored without a run beside them and the selection has the cores."""
    steps = {step.stage: step for step in BUILD_PLAN}
    assert steps["count terms"].runs(BuildSettings(), ["a"], trains_arms=False) == []
    assert steps["select"].runs(BuildSettings(), [], trains_arms=False) == [(None, ["evaluation_set", "filtered_set"])]
    assert steps["select"].runs(BuildSettings(), []) == [(None, ["evaluation_set", "filtered_set"]), (None, ["evaluation_full_pool_arm"])]
    assert steps["score"].runs(BuildSettings(), ["a"], trains_arms=False) == [("a", None)]


def test_runs_that_outlast_those_beside_them_may_use_every_core(monkeypatch):
    """The label classifier's folds and the full pool's arm take up the cores their wave's shorter
    runs leave; every other run keeps its share, and an unlimited run stays unlimited."""
    import jobs.build_plan as plan

    monkeypatch.setattr(plan, "cores", lambda: 8)
    steps = {step.stage: step for step in BUILD_PLAN}
    assert steps["fit models"].threads(["label_classifier_model"], 4) == 8
    assert steps["fit models"].threads(["dsir_model", "relevance_model"], 4) == 4
    assert steps["select"].threads(["evaluation_full_pool_arm"], 4) == 8
    assert steps["select"].threads(["evaluation_set", "filtered_set"], 4) == 4
    assert steps["score"].threads(None, 4) == 4 and steps["select"].threads(["evaluation_full_pool_arm"], None) is None


def test_unreadable_files_are_listed_and_the_readable_ones_built(demo, tmp_path):
    landing = Path(shutil.copytree(demo.landing, tmp_path / "landing"))
    bad = _unreadable_files(landing)
    # An evaluation record that is also in the pool: the blocking disjointness check fails.
    evaluation = tmp_path / "eval.jsonl"
    pool_line = next(iter(Path(demo.landing).glob("*.jsonl"))).read_text().splitlines()[0]
    evaluation.write_text(Path(demo.evaluation).read_text() + pool_line + "\n")

    done, summary = _build(landing, demo.reference, tmp_path / "out", evaluation=str(evaluation))
    assert done.returncode == 1
    assert summary["failed_files"] == sorted(str(p.resolve()) for p in bad)
    # The build covers exactly the readable files.
    assert summary["build_id"] is not None and summary["counts"]["raw"] == _rows(demo)
    manifest = json.loads(Path(summary["manifest"]).read_text())
    assert sorted(manifest["input_shards"]) == sorted(p.name.split(".")[0] for p in Path(demo.landing).iterdir())

    runs = {r.dagster_run.run_id: r.dagster_run for r in _runs(tmp_path / "out" / "dagster_home")}
    for failure in summary["failures"]:
        run = runs[failure["run_id"]]
        assert run.status == DagsterRunStatus.FAILURE and run.job_name == "shard_embed_job"
        assert run.tags["dagster/partition"] == failure["shard"] and Path(failure["file"]).name.startswith(failure["shard"])
        assert f"FAILED, run {failure['run_id']}" in done.stderr  # so the user can open it in the UI
    # The failed selection run is named too, with the description of the blocking check that failed;
    # the run counting the pool's terms before it and the full pool's arm beside it succeeded, and no
    # report run was launched after them.
    selection_runs = [r for r in runs.values() if r.job_name == "selection_build_job"]
    [failed] = [r for r in selection_runs if r.status == DagsterRunStatus.FAILURE]
    assert failed.run_id in summary["stopped"] and len(selection_runs) == 3
    succeeded = sorted((r.tags.get(STAGE_TAG), r.asset_selection) for r in selection_runs if r.status == DagsterRunStatus.SUCCESS)
    assert succeeded == [("count terms", {AssetKey("evaluation_features")}), ("select", {AssetKey("evaluation_full_pool_arm")})]
    planted = json.loads(pool_line)["id"]
    assert f"blocking check evaluation_set_disjoint: 1 evaluation records whose id is also in the pool: {planted}" in done.stderr


def test_a_failed_report_run_fails_the_build_and_no_report_is_claimed(demo, tmp_path):
    """The selection is built, then the report's run fails (here: no random seeds to compare with; in
    a 1M-record build it was the report's worker killed for memory): the CLI's summary names the run,
    lists no report or verdict, and the command exits non-zero."""
    from dagster import instance_for_test

    from dataselect_platform.cli import build_summary, exit_code
    from dataselect_platform.runner import BuildInputs, run_plan

    store, home = tmp_path / "store", tmp_path / "home"
    home.mkdir()
    inputs = BuildInputs(str(demo.landing), str(demo.reference), str(demo.evaluation), str(store), {"backend": "static"})
    with instance_for_test(temp_dir=str(home)) as instance:
        outcome = run_plan(instance, inputs, BuildSettings(selection={"budget": 0.1}, report={"random_seeds": []}))
    summary = build_summary(outcome, store, str(home), 1.0)
    assert summary["build_id"] and Path(summary["selected"]).exists() and summary["counts"]["selected"] > 0
    assert "selection_build_job failed" in summary["stopped"] and "random_seeds is empty" in summary["stopped"]
    assert "report" not in summary and "summary" not in summary and summary["verdict"] is None
    assert exit_code(summary) == 1
    assert exit_code({**summary, "stopped": None}) == 0 and exit_code({**summary, "stopped": None, "failed_files": ["x"]}) == 1


def test_strict_stops_at_the_first_unreadable_file(demo, tmp_path):
    landing = Path(shutil.copytree(demo.landing, tmp_path / "landing"))
    first = landing / "aaa-not-gzip.jsonl.gz"  # sorts before the demo shards: the first run
    first.write_text("plain text, not gzip\n")

    done, summary = _build(landing, demo.reference, tmp_path / "out", "--strict", "--max-concurrent", "1")
    assert done.returncode == 1
    assert summary["build_id"] is None and summary["failed_files"] == [str(first.resolve())]
    runs = _runs(tmp_path / "out" / "dagster_home")
    # The target's embedding, which needs no shard, starts the first wave; the first shard's run
    # fails, and nothing is launched after it.
    assert [(r.dagster_run.job_name, r.dagster_run.tags.get("dagster/partition"), r.dagster_run.status) for r in runs] == [
        ("model_fit_job", None, DagsterRunStatus.SUCCESS),
        ("shard_embed_job", "aaa-not-gzip", DagsterRunStatus.FAILURE),
    ]


def test_no_report_makes_the_decontaminated_selection_and_nothing_for_the_report(demo, tmp_path):
    """``--no-report`` with an --eval file: the selection is built and still decontaminated against
    the evaluation texts, but no run counts the pool's terms, trains an arm or writes a report."""
    landing = Path(shutil.copytree(demo.landing, tmp_path / "landing"))
    longest = max((json.loads(line) for line in Path(demo.evaluation).read_text().splitlines()), key=lambda r: len(r["text"]))
    words = longest["text"].split()
    assert len(words) >= 30, "the demo's evaluation texts are long enough to plant an edited copy"
    words[len(words) // 2] = "edited"
    (landing / "planted.jsonl").write_text(json.dumps({"id": "planted-copy", "text": " ".join(words), "label": longest["label"]}) + "\n")

    done, summary = _build(landing, demo.reference, tmp_path / "out", "--no-report", "--quiet", evaluation=demo.evaluation)
    assert done.returncode == 0, done.stderr[-3000:]
    assert summary["counts"]["selected"] > 0 and Path(summary["selected"]).exists()
    assert "report" not in summary and "summary" not in summary and summary["verdict"] is None
    assert not (Path(summary["manifest"]).parent / "report").exists()
    decisions = pq.read_table(summary["decisions"]).to_pandas().set_index("id")
    assert decisions.loc["planted-copy", "decided_by"] == "decontamination"
    made = set()
    for record in _runs(tmp_path / "out" / "dagster_home"):
        made |= {key.to_user_string() for key in record.dagster_run.asset_selection or ()}
    assert "filtered_set" in made
    assert not made & {"evaluation_features", "evaluation_full_pool_arm", "evaluation_report", "evaluation_analyses"}
