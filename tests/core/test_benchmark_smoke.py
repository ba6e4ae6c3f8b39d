"""Smoke run of the methods benchmark on a tiny 20 Newsgroups subsample, so the harness cannot rot.

The numbers of a 400-message pool mean little, so the assertions check what must hold at any
size: the budget arithmetic, the ground-truth bookkeeping and the detectors that are exact.
"""

import json
import math

import pytest

from benchmarks.methods import (
    choose_report_epochs,
    dev_grid,
    main,
    prepare_corpus,
    quick_config,
    render_corpus,
    render_summary,
    run,
    run_dev,
)
from benchmarks.newsgroups import PoolConfig, build_benchmark, code_fingerprint, write_build_inputs


@pytest.fixture(scope="module")
def quick_result(newsgroups_dir, amazon_dir, tmp_path_factory):
    config = quick_config()
    config.work_dir = tmp_path_factory.mktemp("bench")
    return run(config, paths={"newsgroups": newsgroups_dir, "amazon": amazon_dir}, log=lambda line: None)


def test_pool_is_corrupted_and_ingested_like_the_platform(newsgroups_dir, tmp_path):
    bench = build_benchmark(PoolConfig(pool_limit=300, eval_limit=50, n_shards=2), newsgroups_dir, tmp_path)
    # corrupt_pool adds round(0.10 n) + round(0.05 n) + round(0.03 n) rows to n = 300.
    assert bench.raw_count == 300 + 30 + 15 + 9
    assert len(bench.truth) + len(bench.quarantine) == bench.raw_count
    assert len(bench.shards) == 2 and bench.reference.num_rows == 200 and len(bench.dev) == len(bench.test) == 50
    assert bench.evaluation["label"].str.startswith("sci.").all()
    # Reference, dev and test never share a message.
    ids = [set(bench.reference.column("id").to_pylist()), set(bench.dev["id"]), set(bench.test["id"])]
    assert sum(map(len, ids)) == len(set().union(*ids)) == 300
    # Empty and whitespace-only junk never becomes a record.
    assert bench.quarantine["id"].str.startswith("junk-").sum() >= 2


def test_amazon_pool_is_every_train_review_and_the_target_is_kitchen(amazon_dir, tmp_path):
    bench = build_benchmark(PoolConfig(corpus="amazon", n_shards=2), amazon_dir, tmp_path)
    n = 6_911  # every train review of the four domains
    assert bench.raw_count == n + round(0.10 * n) + round(0.05 * n) + round(0.03 * n)
    # 943 kitchen test reviews: 200 reference, the rest halved into dev and test.
    assert bench.reference.num_rows == 200 and len(bench.dev) + len(bench.test) == 743 and abs(len(bench.dev) - len(bench.test)) <= 1
    assert set(bench.dev["id"]).isdisjoint(bench.test["id"]) and all(i.startswith("kitchen-") for i in bench.test["id"])
    assert set(bench.dev["label"]) == {"positive", "negative"}
    # The domain never reaches the pool; the ground truth knows it (1,035 kitchen train reviews + their copies).
    assert "domain" not in bench.shards[0].column_names
    assert bench.truth["in_target"].sum() > 1_035 and len(bench.clean_target) == 1_035


def test_quick_run_reports_every_method_with_consistent_counts(quick_result):
    for corpus, result in quick_result["corpora"].items():
        k = result["k"]
        bench = result["bench"]
        assert k == math.floor(0.1 * bench.raw_count)
        rows = {row["method"].split(" (")[0]: row for row in result["methods"]}
        for name in (
            "DSIR",
            "embedding relevance top-k",
            "n-gram relevance top-k",
            "heuristics + random",
            "exact dedup + random",
            "near dedup + random",
            "SemDeDup + random",
            "label noise",
            "cluster-balanced",
            "CCS",
            "sensitivity sampling",
            "random 10%",
            "stratified random 10%",
            "**default recipe**",
        ):
            assert rows[name]["n"] == k, (corpus, name)
            assert 0.0 <= rows[name]["dev"] <= 1.0 and 0.0 <= rows[name]["test"] <= 1.0
        assert rows["full pool"]["n"] == len(bench.truth)
        assert rows["clean in-target oracle"]["in_target"] == 1.0 and rows["clean in-target oracle"]["flips"] == 0
        low, high = rows["random 10%"]["test_band"]
        assert low <= rows["random 10%"]["test"] <= high
        default = rows["**default recipe**"]
        # Heuristics and exact dedup are hard filters of the default recipe: no junk, no exact copies.
        assert default["junk"] == 0
        assert default["in_target"] > rows["random 10%"]["in_target"]
        assert [row["method"] for row in result["grid"]] == [recipe.name for recipe in dev_grid(0)[:3]]
    # The grid's rows are compared across corpora and the best mean dev accuracy wins.
    grid = quick_result["grid"]
    assert len(grid) == 3 and quick_result["winner"] == max(grid, key=lambda row: row["mean"])["recipe"]


def test_quick_run_detectors_and_report(quick_result):
    result = quick_result["corpora"]["newsgroups"]
    quality = result["quality"]
    assert quality["exact_dup_recall"] == 1.0  # content hashes: every planted exact copy is found
    assert quality["exact_dup_planted"] > 0 and quality["near_dup_planted"] > 0
    assert 0.5 < quality["label_noise_auroc"] <= 1.0
    throughput = result["throughput"]
    assert throughput["ours_rps"] > throughput["theirs_rps"]
    markdown = render_corpus(result, quick=True, winner=quick_result["winner"])
    assert "| **default recipe** |" in markdown and "## Detector quality" in markdown and "## Dev grid" in markdown
    summary = render_summary(quick_result, quick=True)
    assert "| 20 Newsgroups (target sci.*) |" in summary and "| Multi-domain sentiment (target kitchen) |" in summary
    # The report's epochs: one row per grid value and corpus, each arm a real dev accuracy.
    assert [r["epochs"] for r in result["report_epochs"]] == [2, 5]
    assert all(0.0 < r[arm] <= 1.0 for r in result["report_epochs"] for arm in ("selected", "random", "oracle", "full"))
    assert quick_result["report_epochs"] in (2, 5) and "## The report's recipe: SGD epochs" in summary


def test_report_epochs_rule_takes_the_fewest_that_lose_at_most_the_tolerance_on_every_arm():
    def row(epochs, selected, full, random=0.7, oracle=0.9):
        return {"epochs": epochs, "selected": selected, "random": random, "oracle": oracle, "full": full}

    corpora = {
        "a": [row(2, 0.90, 0.80), row(3, 0.90, 0.83), row(5, 0.89, 0.84)],
        "b": [row(2, 0.80, 0.80), row(3, 0.79, 0.79), row(5, 0.80, 0.80)],
    }
    # 2 epochs: a's full pool loses 0.04. 3: every arm within 0.01 below (gains do not count against it).
    assert choose_report_epochs(corpora, 0.01) == 3
    corpora["b"][1]["oracle"] = 0.88  # 3 epochs now loses 0.02 on b's oracle
    assert choose_report_epochs(corpora, 0.01) == 5
    assert choose_report_epochs(corpora, 0.05) == 2


def test_dev_only_run_never_featurises_test(newsgroups_dir, tmp_path):
    config = quick_config()
    config.work_dir, config.corpora, config.include_color = tmp_path, ("newsgroups",), False
    _, ctx, _, _ = prepare_corpus(config, "newsgroups", newsgroups_dir, lambda line: None, dev_only=True)
    assert len(ctx.evaluator.eval_labels) == len(ctx.bench.dev) and len(ctx.oracle.eval_labels) == len(ctx.bench.dev)
    rows = run_dev(config, dev_grid(0)[:1], paths={"newsgroups": newsgroups_dir}, log=lambda line: None)["newsgroups"]
    assert [r["recipe"] for r in rows[-2:]] == ["default", dev_grid(0)[0].name]
    default = rows[-2]
    assert 0.0 <= default["dev"] <= 1.0 and default["junk"] == 0 and 0.0 <= default["label_tv"] <= 1.0
    assert "test" not in default


def test_caches_are_keyed_by_the_library_code(tmp_path):
    """A change to any dataselect module changes the digest that keys cached embeddings and scores."""
    import shutil
    from pathlib import Path

    import dataselect

    package = tmp_path / "dataselect"
    shutil.copytree(Path(dataselect.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__"))
    same = code_fingerprint(package)
    assert same == code_fingerprint()  # the copy has the same source
    (package / "scorers" / "dsir.py").write_text((package / "scorers" / "dsir.py").read_text() + "\n# changed\n")
    code_fingerprint.cache_clear()
    assert code_fingerprint(package) != same


def test_cli_rejects_unknown_flags():
    with pytest.raises(SystemExit):
        main(["--no-such-flag"])


def test_build_inputs_are_the_benchmark_as_files(newsgroups_dir, tmp_path):
    files = write_build_inputs(tmp_path, clean=True, path=newsgroups_dir)
    lines = [json.loads(line) for shard in sorted(files["landing"].glob("*.jsonl")) for line in shard.open()]
    reference = [json.loads(line) for line in files["reference"].open()]
    dev = [json.loads(line) for line in files["dev"].open()]
    evaluation = [json.loads(line) for line in files["eval"].open()]  # the test split
    assert len(lines) == 11_315 and len({r["id"] for r in lines}) == 11_315  # every training message, once
    assert len(reference) == 200 and set(reference[0]) == {"id", "text"}  # the reference carries no labels
    assert all(r["label"].startswith("sci.") for r in evaluation + dev) and len(evaluation) + len(dev) + 200 == 1_579
    assert {r["id"] for r in reference}.isdisjoint(r["id"] for r in evaluation)
    assert {r["id"] for r in dev}.isdisjoint(r["id"] for r in evaluation)
