"""The scale benchmarks on tiny pools (so the harness cannot rot), and the fast paths they led to
(vectorised static embedding) checked against the libraries they replace."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow.compute as pc
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchmarks import comparisons, refresh, report_cost
from benchmarks import stage_perf as perf  # noqa: E402
from benchmarks.synthetic import SyntheticConfig, SyntheticPool, write_pool  # noqa: E402
from dataselect.embedding import StaticEmbedder, _unit_rows  # noqa: E402


def test_synthetic_pool_is_seeded_sized_and_carries_its_truth(tmp_path):
    config = SyntheticConfig(n_records=500, records_per_shard=200, seed=3)
    first, again = SyntheticPool(config).shard(1), SyntheticPool(config).shard(1)
    assert first.texts.equals(again.texts) and list(first.labels) == list(again.labels)
    assert not SyntheticPool(SyntheticConfig(n_records=500, records_per_shard=200, seed=4)).shard(1).texts.equals(first.texts)
    lengths = pc.binary_length(first.texts).to_numpy()
    assert 850 < lengths[~first.is_junk].mean() < 1150  # ~1 KB records
    copies = np.flatnonzero((first.duplicate_of >= 0) & ~first.is_near_duplicate)
    texts = first.texts.to_pylist()
    assert len(copies) and all(texts[i] == texts[first.duplicate_of[i]] for i in copies)
    near = np.flatnonzero(first.is_near_duplicate)
    assert len(near) and all(texts[i] != texts[first.duplicate_of[i]] for i in near)

    description = write_pool(tmp_path, config, reference_size=20)
    assert description["shards"] == ["synthetic-00000", "synthetic-00001", "synthetic-00002"]
    lines = (tmp_path / "landing" / "synthetic-00002.jsonl").read_text().splitlines()
    assert len(lines) == 100 and set(json.loads(lines[0])) == {"id", "text", "label"}
    reference = [json.loads(line) for line in (tmp_path / "reference.jsonl").read_text().splitlines()]
    assert len(reference) == 20 and {r["label"] for r in reference} <= {"topic-0", *(f"topic-{k}" for k in range(8))}


def test_perf_stages_on_a_tiny_pool(tmp_path):
    config = perf.PerfConfig(sizes=(300,), records_per_shard=150, fit_sample_size=200, work=tmp_path)
    work, description = perf.prepare_pool(300, config)
    options = {"fit_sample_size": 200, "budget": 0.1, "seed": 0, "workers": 2}
    # In process (each stage in a child costs an interpreter and torch import per stage); the
    # per-shard stages fork two workers over the two shards.
    counts = {stage: perf.STAGE_FUNCTIONS[stage](work, options) for stage in perf.STAGES}
    assert counts == {"ingest": 300, "embed": 300, "fit": 300, "score": 300, "select": 300}
    [build] = [p for p in (work / "store" / "builds").iterdir() if p.is_dir()]
    manifest = json.loads((build / "manifest.json").read_text())
    assert manifest["counts"]["raw"] == 300 and manifest["counts"]["selected"] == 30
    assert manifest["counts"]["rejections_by_reason"].get("exact_dup", 0) > 0  # planted copies found


def test_perf_child_process_reports_its_own_peak(tmp_path):
    work, _ = perf.prepare_pool(100, perf.PerfConfig(records_per_shard=100, work=tmp_path))
    result = perf.measure_stage("ingest", work, {"fit_sample_size": 100, "budget": 0.1, "seed": 0, "workers": 1})
    assert result["records"] == 100 and result["seconds"] > 0
    assert 50 < result["peak_rss_mb"] < 4096 and result["process_seconds"] >= result["seconds"]


def test_perf_summary_medians_end_to_end_and_slopes(tmp_path):
    runs = []
    for size, scale in ((1_000, 1.0), (10_000, 10.0)):
        for repeat, noise in enumerate((1.0, 1.2, 0.9)):
            for stage in perf.STAGES:
                runs.append(
                    {
                        "size": size,
                        "stage": stage,
                        "repeat": repeat,
                        "records": size,
                        "seconds": scale * noise,
                        "peak_rss_mb": 100.0 * scale + repeat,
                        "bytes_per_record": 1000.0,
                    }
                )
    rows = {(r["size"], r["stage"]): r for r in perf.summarize(runs)}
    assert rows[(1_000, "embed")]["seconds"] == pytest.approx(1.0)  # median of 1.0, 1.2, 0.9
    assert rows[(10_000, "embed")]["slope"] == pytest.approx(1.0)  # 10x records, 10x time
    assert rows[(10_000, "end_to_end")]["seconds"] == pytest.approx(50.0)  # five stages of median 10 s
    assert rows[(10_000, "end_to_end")]["records_per_second"] == pytest.approx(200.0)
    assert rows[(10_000, "end_to_end")]["max_peak_rss_mb"] == pytest.approx(1002.0)
    text = perf.write_markdown(runs, tmp_path / "perf.md")
    assert "| 10,000 | end_to_end | 3 | 50.0 | 200 | – |" in text and (tmp_path / "perf.md").exists()
    assert "not run" in text  # no 100k, no 1M: the targets section says so rather than guessing


def test_comparisons_on_a_tiny_pool(tmp_path):
    config = comparisons.ComparisonConfig(
        size=400, reference_size=60, repeats=1, reference_repeats=1, dsir_cores=(1,), results=tmp_path / "comparisons.md"
    )
    results = {r["name"].split(":")[0]: r for r in comparisons.run(config)}
    assert set(results) == {"DSIR, 1 core each", "MinHash LSH near-duplicates", "SemDeDup"}
    results["DSIR"] = results["DSIR, 1 core each"]
    assert all(r["ours_seconds"] > 0 and r["reference_seconds"] > 0 for r in results.values())
    dsir = results["DSIR"]["parity"]
    assert dsir["spearman_log_weights"] > 0.5  # both rank by target-likeness
    assert dsir["in_domain_share_top"]["dataselect"] > 3 * dsir["in_domain_share_top"]["pool"]
    minhash = results["MinHash LSH near-duplicates"]["parity"]
    assert minhash["recall_of_planted"]["dataselect"] >= 0.8 and minhash["agreement_jaccard"] >= 0.8
    semdedup = results["SemDeDup"]["parity"]
    assert semdedup["recall_of_brute_force"] >= 0.9
    assert "| DSIR" in (tmp_path / "comparisons.md").read_text()


def test_refresh_report_states_the_ratio_against_the_target():
    repeats = [
        {
            "full": {"seconds": 100.0, "runs": 22, "records_embedded": 1000, "records_scored": 1000},
            "refresh": {"seconds": s, "runs": 2, "records_embedded": 100, "records_scored": 100},
            "ratio": s / 100.0,
            "identical_outputs": s != 20.0,
            "models_refit_by_the_rebuild": ["dsir"] if s != 20.0 else [],
            "identical_to_a_rebuild_with_the_same_models": s != 12.0,
        }
        for s in (10.0, 20.0, 12.0)
    ]
    text = refresh.markdown(refresh.RefreshConfig(shards=10, records_per_shard=100), repeats, {"bytes_per_record": 1000.0})
    assert "**12.0%**" in text and "**met**" in text
    assert "| refresh (1 new shard + global steps) | 12.0 | 2 | 100 | 100 |" in text
    assert "**NO** in 2 of 3 repeats" in text
    assert "models whose versions differ (dsir)" in text  # the first repeat's
    assert "outputs byte-identical to the refresh's: **NO** in 2 of 3 repeats" in text


def test_report_floor_adds_counting_the_full_fit_and_every_arm_the_report_trains(tmp_path):
    rows = [
        ("read the build, pool, embeddings and term counts", 100, 9.0, 9.0),
        ("arm: selected, alone on one thread", 10, 1.0, 1.0),
        ("arm: one random arm, alone on one thread", 10, 2.0, 2.0),
        ("arm: one stratified arm, alone on one thread", 10, 3.0, 3.0),
        ("arm: full pool, alone on one thread", 100, 7.0, 7.0),
        ("count the pool's terms, alone on one thread", 100, 11.0, 11.0),
        ("store the pool's term counts (Parquet), alone on one thread", 100, 4.0, 4.0),
    ]
    # 11 counting + 7 full fit + 1 selected + 5 random x 2 + 2 stratified x 3; reading and storing are not in the floor.
    assert report_cost.floor_cpu(rows) == 35.0
    assert "**35.0 CPU s**" in report_cost.write_markdown(tmp_path, rows, tmp_path / "report_cost.md")


# --- the fast paths equal what they replace ------------------------------------------------


def test_static_embedding_by_words_equals_model2vec(newsgroups_records):
    from dataselect.normalize import normalize_text

    texts = [normalize_text(r["text"]) for r in newsgroups_records[:300]]
    texts += ["", "tab\tand\r\nnewline", "non\u00a0breaking space", "UPPER case, punctuation!!", "x " * 700]
    # Over the token limit (512) by tokens only, and by characters (3,072) with the cut inside a
    # word, a multi-piece word or an unknown character; the longest real messages.
    texts += ["antidisestablishmentarianism " * 120, "word " * 613 + "tokenization", "☃ " * 600 + "end"]
    texts += sorted((normalize_text(r["text"]) for r in newsgroups_records[:3000]), key=len)[-20:]
    embedder = StaticEmbedder()
    assert sum(len(t) > 512 * embedder.model.median_token_length for t in texts) >= 20
    fast = embedder.embed(texts)
    reference = _unit_rows(embedder.model.encode(texts, use_multiprocessing=False))  # model2vec's own path
    assert fast.dtype == np.float32 and fast.shape == reference.shape
    # model2vec averages in float16; ours sums in float32: equal up to float16 rounding.
    np.testing.assert_allclose(fast, reference, atol=2e-3)
    nonzero = np.linalg.norm(reference, axis=1) > 0
    assert ((fast[nonzero] * reference[nonzero]).sum(axis=1) > 0.9999).all()


def test_embedding_backends_benchmark_on_a_tiny_sample(newsgroups_dir, monkeypatch, tmp_path):
    from benchmarks import embeddings

    monkeypatch.setenv("DATASELECT_NEWSGROUPS", str(newsgroups_dir))
    rows = {r["backend"]: r for r in embeddings.run(per_split=200, repeats=1, results=tmp_path / "embeddings.md")}
    assert set(rows) == {"static", "transformer"}
    assert rows["transformer"]["dim"] == 384 and rows["static"]["dim"] == 256
    for row in rows.values():  # 20 groups: chance is 0.05; both backends carry topic signal
        assert row["docs_per_second"] > 0 and row["knn_accuracy"] > 0.15 and row["probe_accuracy"] > 0.15
    assert "Static / transformer" in (tmp_path / "embeddings.md").read_text()


@pytest.mark.slow
def test_end_to_end_harness_times_the_cli_and_reads_the_event_log(tmp_path):
    from benchmarks import perf as end_to_end

    runs = end_to_end.measure("synthetic", 300, 1, 0.1, tmp_path, tmp_path / "perf.md")
    cold, warm, bare = runs
    assert (cold["temperature"], warm["temperature"], bare["temperature"]) == ("cold", "warm", "no report")
    assert cold["summary"]["counts"]["raw"] == 300 and cold["peak_tree_mb"] > 50
    # The processes share pages (the fork server's imports, the libraries): PSS divides them, RSS counts each.
    assert 50 < cold["peak_tree_pss_mb"] < cold["peak_tree_mb"]
    assert cold["commit"].rstrip("+") == end_to_end._commit().rstrip("+") and len(cold["commit"].rstrip("+")) >= 7
    assert bare["summary"]["counts"] == cold["summary"]["counts"]  # the same selection, made without the report's runs
    reports = {
        out: list((tmp_path / "builds" / out / "store" / "builds").glob("*/report/report.html"))
        for out in ("synthetic-300-0", "synthetic-300-0-no-report")
    }
    assert len(reports["synthetic-300-0"]) == 1 and reports["synthetic-300-0-no-report"] == []
    # Every run of the build plan ran on the single shard, and Dagster's own share was measured.
    from jobs.build_plan import BUILD_PLAN, BuildSettings

    assert {"raw_pool", "embeddings", "quality_scores", "filtered_set", "evaluation_report", "evaluation_analyses"} <= set(cold["stages"])
    # Each step's memory is the largest process sampled while it ran: a Dagster worker holds at least the
    # imported platform, and no step's figure exceeds the peak of the whole build.
    peaks = [stage["peak_mb"] for stage in cold["stages"].values() if stage["peak_mb"]]
    assert peaks and all(100 < peak <= cold["peak_process_mb"] + 1 for peak in peaks)
    overheads = cold["overheads"]
    # The synthetic pool has no evaluation file: no run counts terms or trains the full pool's arm.
    assert overheads["runs"] == sum(len(step.runs(BuildSettings(), ["synthetic-00000"], trains_arms=False)) for step in BUILD_PLAN) == 8
    assert 0 < overheads["runs_span"] < cold["seconds"]
    text = (tmp_path / "perf.md").read_text()
    assert "| synthetic | 300 |" in text and "median per-run overhead" in text
    share = f"{1 - bare['seconds'] / cold['seconds']:.1%}"
    assert f"| synthetic | 300 | {cold['seconds']:.1f} | {bare['seconds']:.1f} |" in text and f"| {share} |" in text


@pytest.mark.slow
def test_against_harness_interleaves_a_baseline_checkout_with_this_one(tmp_path):
    from benchmarks import perf_against

    rows = perf_against.measure("HEAD", "synthetic", 300, 1, 0.1, tmp_path)
    assert [(r["side"], r["size"]) for r in rows] == [("baseline", 300), ("current", 300)]
    commit, folder = perf_against.baseline_checkout("HEAD", tmp_path)
    assert (folder / "dataselect_platform" / "cli.py").exists() and rows[0]["commit"] == commit[:7]
    assert rows[1]["commit"].startswith(perf_against._git("rev-parse", "--short=7", "HEAD"))
    table = perf_against.markdown(rows)
    ratio = float(table.strip().splitlines()[-1].split("|")[-2])
    assert "| synthetic | 300 |" in table and ratio == pytest.approx(rows[1]["seconds"] / rows[0]["seconds"], abs=0.006)
