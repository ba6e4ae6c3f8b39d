"""Smoke run of the methods benchmark on a tiny 20 Newsgroups subsample, so the harness cannot rot.

The numbers of a 400-message pool mean little, so the assertions check what must hold at any
size: the budget arithmetic, the ground-truth bookkeeping and the detectors that are exact.
"""

import json
import math

import pytest

from benchmarks.methods import main, quick_config, render, run
from benchmarks.newsgroups import PoolConfig, build_benchmark, write_build_inputs


@pytest.fixture(scope="module")
def quick_result(newsgroups_dir, tmp_path_factory):
    config = quick_config()
    config.work_dir = tmp_path_factory.mktemp("bench")
    return run(config, path=newsgroups_dir, log=lambda line: None)


def test_pool_is_corrupted_and_ingested_like_the_platform(newsgroups_dir, tmp_path):
    bench = build_benchmark(PoolConfig(pool_limit=300, eval_limit=50, n_shards=2), newsgroups_dir, tmp_path)
    # corrupt_pool adds round(0.10 n) + round(0.05 n) + round(0.03 n) rows to n = 300.
    assert bench.raw_count == 300 + 30 + 15 + 9
    assert len(bench.truth) + len(bench.quarantine) == bench.raw_count
    assert len(bench.shards) == 2 and bench.reference.num_rows == 200 and len(bench.evaluation) == 50
    assert bench.evaluation["label"].str.startswith("sci.").all()
    assert set(bench.reference.column("id").to_pylist()).isdisjoint(bench.evaluation["id"])
    # Empty and whitespace-only junk never becomes a record.
    assert bench.quarantine["id"].str.startswith("junk-").sum() >= 2


def test_quick_run_reports_every_method_with_consistent_counts(quick_result):
    k = quick_result["k"]
    bench = quick_result["bench"]
    assert k == math.floor(0.1 * bench.raw_count)
    rows = {row["method"].split(" (")[0]: row for row in quick_result["methods"]}
    for name in ("DSIR", "embedding relevance top-k", "n-gram relevance top-k", "heuristics + random", "exact dedup + random",
                 "near dedup + random", "SemDeDup + random", "label noise", "cluster-balanced", "CCS", "sensitivity sampling",
                 "**default recipe**"):
        assert rows[name]["n"] == k, name
        assert 0.0 <= rows[name]["accuracy"] <= 1.0
    assert rows["full pool"]["n"] == len(bench.truth)
    default = rows["**default recipe**"]
    # Heuristics and exact dedup are hard filters of the default recipe: no junk, no exact copies.
    assert default["junk"] == 0
    assert default["in_target"] > rows["random 10%"]["in_target"]
    assert [row["method"] for row in quick_result["ablation"]][:1] == ["all filters + random"]
    assert len(quick_result["ablation"]) == 3


def test_quick_run_detectors_and_report(quick_result):
    quality = quick_result["quality"]
    assert quality["exact_dup_recall"] == 1.0  # content hashes: every planted exact copy is found
    assert quality["exact_dup_planted"] > 0 and quality["near_dup_planted"] > 0
    assert 0.5 < quality["label_noise_auroc"] <= 1.0
    throughput = quick_result["throughput"]
    assert throughput["ours_rps"] > throughput["theirs_rps"]
    markdown = render(quick_result, quick=True)
    assert "| **default recipe** |" in markdown and "## Detector quality" in markdown


def test_cli_rejects_unknown_flags():
    with pytest.raises(SystemExit):
        main(["--no-such-flag"])


def test_build_inputs_are_the_benchmark_as_files(newsgroups_dir, tmp_path):
    files = write_build_inputs(tmp_path, clean=True, path=newsgroups_dir)
    lines = [json.loads(line) for shard in sorted(files["landing"].glob("*.jsonl")) for line in shard.open()]
    reference = [json.loads(line) for line in files["reference"].open()]
    evaluation = [json.loads(line) for line in files["eval"].open()]
    assert len(lines) == 11_315 and len({r["id"] for r in lines}) == 11_315  # every training message, once
    assert len(reference) == 200 and set(reference[0]) == {"id", "text"}  # the reference carries no labels
    assert all(r["label"].startswith("sci.") for r in evaluation) and len(evaluation) + 200 == 1_579
    assert {r["id"] for r in reference}.isdisjoint(r["id"] for r in evaluation)
