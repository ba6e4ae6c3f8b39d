"""A battery of bad and degenerate inputs, each ending one of two ways:

- it builds, through every asset and blocking check, with the accounting intact: every raw
  line or row of every landing file is exactly one row of ``decisions.parquet`` (selected,
  rejected with a reason, or quarantined with a reason), counted here without the ingest code;
- or ``dataselect build`` refuses it before any work, in a few seconds, with one line that
  names the file or argument and what is wrong.

Bad records share one real build (static embeddings): each case is its own landing shard
beside a small clean demo pool, and its decisions are checked shard by shard. Degenerate
pools (all records identical, three records) need builds of their own.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster import AssetCheckSeverity, instance_for_test

from dataselect import records as cols
from dataselect.scorers.embeddable import NO_EMBEDDING
from tests.platform.helpers import ROOT, PlatformBuild, latest_metadata

pytestmark = pytest.mark.slow

# A clean English paragraph that passes the heuristic rules (>= 30 words, stop words, no junk).
CLEAN = (
    "The observatory team measured the orbit of a faint comet over many nights, and the data show that the comet "
    "returns to the inner solar system every few decades. Astronomers compared the new images with older plates "
    "to confirm the path, and they expect to publish the full catalogue with the help of amateur observers."
)
WORDS = CLEAN.replace(",", "").replace(".", "").split()
CP1252_LINE = json.dumps({"id": "w", "text": "na\u00efve caf\u00e9"}, ensure_ascii=False).encode("cp1252") + b"\n"
CP1252_BAD_BYTE = CP1252_LINE.index("\u00ef".encode("cp1252"))


def clean_text(i: int) -> str:
    """A distinct, heuristics-passing text per i (no two are near duplicates)."""
    rng = np.random.default_rng(i)
    return " ".join(rng.choice(WORDS, 60)) + f" Entry {i}."


def jsonl(*records: dict) -> bytes:
    return b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in records)


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def raw_rows(path: Path) -> int:
    """Raw rows of one landing file, counted without the ingest code."""
    name = path.name
    if name.endswith(".parquet"):
        return pq.ParquetFile(path).metadata.num_rows
    if name.endswith(".csv"):
        with path.open(newline="", encoding="utf-8", errors="replace") as handle:
            return sum(1 for fields in list(csv.reader(handle))[1:] if fields)
    data = gzip.decompress(path.read_bytes()) if name.endswith(".gz") else path.read_bytes()
    return sum(1 for line in data.split(b"\n") if line.strip())


# --------------------------------------------------------------------------- bad records, one build


@dataclass
class ShardCase:
    """One landing file of bad records and what must become of each of its rows."""

    file: str
    content: bytes
    check: Callable[[pd.DataFrame], None]  # gets the shard's decisions indexed by row

    @property
    def shard(self) -> str:
        return self.file.split(".")[0]


def _quarantined(expected: dict[int, str]) -> Callable[[pd.DataFrame], None]:
    """Rows quarantined with exactly these reasons; every other row reached a real decision."""

    def check(decisions: pd.DataFrame) -> None:
        quarantined = decisions[decisions[cols.STATUS] == cols.QUARANTINED]
        assert dict(zip(quarantined.index, quarantined[cols.REASON])) == expected
        assert (quarantined[cols.DECIDED_BY] == "ingest").all()
        others = decisions.drop(index=list(expected))
        assert others[cols.STATUS].isin([cols.SELECTED, cols.REJECTED]).all()
        assert (others[cols.DECIDED_BY] != "ingest").all()

    return check


def _check_huge_token(decisions: pd.DataFrame) -> None:
    # One 900,000-character "word": no known token, so no embedding. It is rejected with a
    # reason, its zero vector did not fail the shard's embeddings check, and its neighbours flow on.
    huge = decisions.loc[0]
    assert huge[cols.STATUS] == cols.REJECTED and huge[cols.REASON]
    assert not huge["embeddable.keep"] and huge["embeddable.reason"] == NO_EMBEDDING
    rest = decisions.drop(index=0)
    assert rest["embeddable.keep"].all() and len(rest) == 12


def _check_unknown_script(decisions: pd.DataFrame) -> None:
    # Runic letters are outside the model's vocabulary: zero vector, rejected with a reason.
    assert not decisions.loc[0, "embeddable.keep"] and decisions.loc[0, cols.STATUS] == cols.REJECTED
    assert decisions.loc[0, cols.REASON]
    assert decisions.loc[1:, "embeddable.keep"].all()


def _check_binary_text(decisions: pd.DataFrame) -> None:
    _quarantined({2: "invalid UTF-8 in 'text' at byte 3"})(decisions)
    assert decisions.loc[0, cols.ID] == "bin-0" and decisions.loc[1, cols.ID] == "bin-1"


def _check_ids(decisions: pd.DataFrame) -> None:
    _quarantined({4: "'id' is not a string or number (got list)"})(decisions)
    assert decisions.loc[[0, 1, 2, 3], cols.ID].tolist() == ["3", "zz-ids:1", "true", "1" + "0" * 30]


def _check_all_quarantined(decisions: pd.DataFrame) -> None:
    assert (decisions[cols.STATUS] == cols.QUARANTINED).all() and len(decisions) == 4


def _check_one_record(decisions: pd.DataFrame) -> None:
    assert len(decisions) == 1 and decisions.loc[0, cols.STATUS] in (cols.SELECTED, cols.REJECTED)


def _check_long_text(decisions: pd.DataFrame) -> None:
    # 900,000 characters of real words: under the 1,000,000 limit, embedded (truncated), decided.
    assert decisions.loc[0, "embeddable.keep"] and decisions.loc[0, cols.STATUS] in (cols.SELECTED, cols.REJECTED)


def _shard_cases() -> list[ShardCase]:
    good = [{"id": f"g{i}", "text": clean_text(1000 + i), "label": "astronomy"} for i in range(40)]
    cases = [
        ShardCase("zz-huge-token.jsonl", jsonl({"id": "huge", "text": "x" * 900_000}, *good[:12]), _check_huge_token),
        ShardCase(
            "zz-unknown-script.jsonl", jsonl({"id": "runes", "text": " ".join(["ᚠᚢᚦᚨᚱᚲ ᚷᚹᚺᚾ"] * 20)}, *good[12:14]), _check_unknown_script
        ),
        ShardCase("zz-long-text.jsonl", jsonl({"id": "long", "text": " ".join(WORDS * 3000)[:900_000]}), _check_long_text),
        ShardCase(
            "zz-binary-text.parquet",
            parquet_bytes(
                pa.table(
                    {
                        "id": pa.array([b"bin-0", b"bin-1", b"bin-2"], pa.binary()),
                        "text": pa.array(
                            [clean_text(1).encode(), ("Caf\u00e9 " + clean_text(2)).encode(), b"Caf\xe9 au lait"], pa.binary()
                        ),
                        "label": pa.array([b"astronomy", b"medicine", b"medicine"], pa.binary()),
                    }
                )
            ),
            _check_binary_text,
        ),
        ShardCase(
            "zz-invisible.jsonl",
            jsonl(
                {"id": "zw", "text": "\u200b\u200b\u200b"},
                {"id": "bom", "text": "\ufeff"},
                {"id": "nbsp", "text": "\u00a0\u3000"},
                {"id": "ok", "text": clean_text(3)},
            ),
            _quarantined(
                {
                    0: "invisible text: only whitespace and zero-width or format characters",
                    1: "invisible text: only whitespace and zero-width or format characters",
                    2: "empty text after normalisation",
                }
            ),
        ),
        ShardCase(
            "zz-ids.jsonl",
            jsonl(
                {"id": 3.0, "text": clean_text(4)},
                {"id": "", "text": clean_text(5)},
                {"id": True, "text": clean_text(6)},
                {"id": 10**30, "text": clean_text(7)},
                {"id": [1], "text": clean_text(8)},
            ),
            _check_ids,
        ),
        ShardCase(
            "zz-labels.jsonl",
            jsonl(
                {"id": "l0", "text": clean_text(9), "label": ["a"]},
                {"id": "l1", "text": clean_text(10), "label": {"a": 1}},
                {"id": "l2", "text": clean_text(11), "label": "   "},
                {"id": "l3", "text": clean_text(12), "label": 7},
            ),
            _quarantined({0: "'label' is not a string or number (got list)", 1: "'label' is not a string or number (got dict)"}),
        ),
        ShardCase(
            "zz-utf16.jsonl",
            jsonl(*good[14:17]).decode().encode("utf-16"),
            _quarantined({0: "invalid UTF-8 at byte 0", **{i: "invalid JSON: Expecting value at column 1" for i in (1, 2, 3)}}),
        ),
        ShardCase("zz-cp1252.jsonl", CP1252_LINE + jsonl(good[17]), _quarantined({0: f"invalid UTF-8 at byte {CP1252_BAD_BYTE}"})),
        ShardCase("zz-bom-crlf.jsonl", b"\xef\xbb\xbf" + jsonl(*good[18:21]).replace(b"\n", b"\r\n"), _quarantined({})),
        ShardCase("zz-no-final-newline.jsonl.gz", gzip.compress(jsonl(good[21]).rstrip(b"\n"), mtime=0), _check_one_record),
        ShardCase(
            "zz-not-objects.jsonl",
            b'[1, 2]\n"text"\n42\nnull\n' + jsonl(good[22]),
            _quarantined(
                {
                    0: "JSON line is not an object (got list)",
                    1: "JSON line is not an object (got str)",
                    2: "JSON line is not an object (got int)",
                    3: "JSON line is not an object (got null)",
                }
            ),
        ),
        ShardCase(
            "zz-nan-infinity.jsonl",
            b'{"id": NaN, "text": "'
            + clean_text(13).encode()
            + b'"}\n{"id": "inf", "text": "'
            + clean_text(14).encode()
            + b'", "score": Infinity}\n',
            _quarantined({}),
        ),
        ShardCase(
            "zz-semicolon.csv",
            f"id;text\n1;{clean_text(15)}\n2;{clean_text(16)}\n".encode(),
            _quarantined({0: "missing 'text' column", 1: "missing 'text' column"}),
        ),
        ShardCase(
            "zz-struct-text.parquet",
            parquet_bytes(pa.table({"id": ["st0", "st1"], "text": pa.array([{"body": "x"}, {"body": "y"}])})),
            _quarantined({0: "'text' is not a string (got dict)", 1: "'text' is not a string (got dict)"}),
        ),
        ShardCase(
            "zz-dictionary-large-string.parquet",
            parquet_bytes(
                pa.table({"id": ["d0", "d1"], "text": pa.array([clean_text(17), clean_text(18)], pa.large_string()).dictionary_encode()})
            ),
            _quarantined({}),
        ),
        ShardCase("zz-all-quarantined.jsonl", b'{not json}\n{"id": 1}\n[]\n""\n', _check_all_quarantined),
        ShardCase(
            "zz-reserved-metadata.jsonl",
            jsonl({"id": "m0", "text": clean_text(19), "shard": "elsewhere", "row": -5, "content_hash": "forged", "status": "selected"}),
            _check_one_record,
        ),
    ]
    assert len({c.shard for c in cases}) == len(cases)
    return cases


SHARD_CASES = _shard_cases()


@pytest.fixture(scope="module")
def bad_records_build(tmp_path_factory):
    from dataselect.demo import write_demo

    root = tmp_path_factory.mktemp("bad-records")
    demo = write_demo(root / "demo", n_records=200, n_shards=2)
    landing = root / "landing"
    landing.mkdir()
    for path in Path(demo.landing).iterdir():
        (landing / path.name).write_bytes(path.read_bytes())
    for case in SHARD_CASES:
        (landing / case.file).write_bytes(case.content)
    (root / "home").mkdir()
    started = time.perf_counter()
    with instance_for_test(temp_dir=str(root / "home")) as instance:
        build = PlatformBuild(instance, str(landing), demo.reference, demo.evaluation, str(root / "store"))
        build.build(0, {"budget": 0.1})
        build_id = latest_metadata(instance, "filtered_set")["build_id"]
        evaluations = [e for result in build.results for e in result.get_asset_check_evaluations()]
    print(f"bad-records build: {time.perf_counter() - started:.1f}s")
    decisions = pd.read_parquet(build.build_paths(build_id)["decisions"])
    return landing, decisions, evaluations


def test_bad_records_build_with_every_blocking_check_passing_and_the_accounting_intact(bad_records_build):
    landing, decisions, evaluations = bad_records_build
    failed = [(e.check_name, e.partition, e.description) for e in evaluations if not e.passed and e.severity == AssetCheckSeverity.ERROR]
    assert failed == []
    assert {e.check_name for e in evaluations if e.check_name == "embeddings_valid"} == {"embeddings_valid"}
    per_file = {path.name.split(".")[0]: raw_rows(path) for path in landing.iterdir()}
    assert decisions.groupby(cols.SHARD).size().reindex(per_file.keys(), fill_value=0).to_dict() == per_file
    assert not decisions.duplicated([cols.SHARD, cols.ROW]).any()
    assert decisions[cols.STATUS].isin([cols.SELECTED, cols.REJECTED, cols.QUARANTINED]).all()
    assert (decisions.loc[decisions[cols.STATUS] != cols.SELECTED, cols.REASON].str.len() > 0).all()
    assert (decisions[cols.STATUS] == cols.SELECTED).sum() > 0


@pytest.mark.parametrize("case", SHARD_CASES, ids=[c.shard for c in SHARD_CASES])
def test_bad_record_shard(bad_records_build, case):
    landing, decisions, _ = bad_records_build
    shard = decisions[decisions[cols.SHARD] == case.shard].set_index(cols.ROW).sort_index()
    assert len(shard) == raw_rows(landing / case.file)
    assert shard.index.tolist() == list(range(len(shard)))
    case.check(shard)


# --------------------------------------------------------------------------- degenerate pools


def _build_pool(root: Path, records: list[dict], evaluation: str | None) -> tuple[pd.DataFrame, dict]:
    landing = root / "landing"
    landing.mkdir(parents=True)
    (landing / "pool.jsonl").write_bytes(jsonl(*records))
    reference = root / "reference.jsonl"
    reference.write_bytes(jsonl(*({"id": f"ref{i}", "text": clean_text(500 + i)} for i in range(20))))
    (root / "home").mkdir()
    with instance_for_test(temp_dir=str(root / "home")) as instance:
        build = PlatformBuild(instance, str(landing), str(reference), evaluation, str(root / "store"))
        build.build(0, {"budget": 0.1})
        build_id = latest_metadata(instance, "filtered_set")["build_id"]
        evaluations = [e for result in build.results for e in result.get_asset_check_evaluations()]
    assert [e.check_name for e in evaluations if not e.passed and e.severity == AssetCheckSeverity.ERROR] == []
    paths = build.build_paths(build_id)
    return pd.read_parquet(paths["decisions"]), json.loads(paths["summary"].read_text())


def _evaluation_file(root: Path) -> str:
    path = root / "eval.jsonl"
    path.write_bytes(jsonl(*({"id": f"e{i}", "text": clean_text(700 + i), "label": ["astronomy", "medicine"][i % 2]} for i in range(10))))
    return str(path)


def test_a_pool_of_identical_records_builds_through_the_report(tmp_path):
    records = [{"id": f"same-{i}", "text": CLEAN, "label": "astronomy"} for i in range(1500)]
    decisions, summary = _build_pool(tmp_path, records, _evaluation_file(tmp_path))
    assert len(decisions) == 1500
    assert decisions[cols.STATUS].value_counts().to_dict() == {cols.REJECTED: 1499, cols.SELECTED: 1}
    assert (decisions[cols.DECIDED_BY] == "exact_dup").sum() == 1499
    # One selected record has no covariance: the distance is undefined, reported as such.
    assert summary["label_free"]["embedding_distance"]["selected"]["frechet"] is None
    assert summary["arms"]["selected"]["n_train"] == 1


def test_a_three_record_unlabelled_pool_builds_through_the_report(tmp_path):
    records = [{"id": f"tiny-{i}", "text": clean_text(i)} for i in range(3)]
    decisions, summary = _build_pool(tmp_path, records, _evaluation_file(tmp_path))
    assert len(decisions) == 3
    # 10% of three raw records rounds down to none.
    assert (decisions[cols.STATUS] == cols.REJECTED).all() and decisions[cols.REASON].str.len().gt(0).all()
    # Nothing selected, and an unlabelled pool trains no arm: the report says so instead of failing.
    assert summary["n_selected"] == 0 and summary["n_pool"] == 3 and "arms" not in summary
    assert summary["label_free"]["embedding_distance"]["selected"]["n_selected"] == 0


# --------------------------------------------------------------------------- refused before any work


def _inputs(root: Path) -> dict[str, Path]:
    landing = root / "landing"
    landing.mkdir()
    (landing / "a.jsonl").write_bytes(jsonl({"id": "a", "text": clean_text(1)}))
    reference = root / "reference.jsonl"
    reference.write_bytes(jsonl({"id": "r", "text": clean_text(2)}))
    evaluation = root / "eval.jsonl"
    evaluation.write_bytes(jsonl({"id": "e", "text": clean_text(3), "label": "x"}))
    (root / "empty.jsonl").write_bytes(b"")
    (root / "no-text.jsonl").write_bytes(jsonl({"id": "n1", "body": "x"}, {"id": "n2", "text": ""}))
    (root / "unlabelled.jsonl").write_bytes(jsonl({"id": "u", "text": clean_text(4)}))
    (root / "notes").mkdir()
    (root / "notes" / "readme.txt").write_text("not a shard")
    (root / "clash").mkdir()
    (root / "clash" / "part.jsonl").write_bytes(jsonl({"id": "c1", "text": clean_text(5)}))
    (root / "clash" / "part.csv").write_text(f"id,text\nc2,{clean_text(6)}\n")
    (root / "a-file").write_text("x")
    return {"landing": landing, "reference": reference, "eval": evaluation}


# (arguments changed from a valid call, text the one line must contain)
REFUSED = {
    "budget-zero": (["--budget", "0"], "--budget: budget must be a positive number"),
    "budget-negative": (["--budget", "-0.2"], "got -0.2"),
    "budget-nan": (["--budget", "nan"], "got nan"),
    "budget-infinite": (["--budget", "inf"], "got inf"),
    "budget-fractional-count": (["--budget", "2.5"], "--budget: a budget > 1 is a record count and must be whole, got 2.5"),
    "seed-negative": (["--seed", "-1"], "--seed: must be >= 0, got -1"),
    "policy-unknown": (["--policy", "bogus"], "--policy: unknown policy 'bogus'"),
    "policy-threshold-without-threshold": (["--policy", "threshold"], "--policy: policy 'threshold' needs a threshold"),
    "reference-missing": (["--reference", "{root}/missing.jsonl"], "--reference {root}/missing.jsonl: no such file or folder"),
    "reference-empty": (["--reference", "{root}/empty.jsonl"], "--reference {root}/empty.jsonl: the file is empty"),
    "reference-without-text": (
        ["--reference", "{root}/no-text.jsonl"],
        "--reference {root}/no-text.jsonl: no record with text: all 2 rows are invalid (first: missing 'text' field)",
    ),
    "reference-folder-without-shards": (
        ["--reference", "{root}/notes"],
        "--reference {root}/notes: no .jsonl, .jsonl.gz, .parquet, .csv files",
    ),
    "eval-missing": (["--eval", "{root}/nope.jsonl"], "--eval {root}/nope.jsonl: no such file or folder"),
    "eval-without-labels": (["--eval", "{root}/unlabelled.jsonl"], "--eval {root}/unlabelled.jsonl: no record has a label"),
    "landing-missing": (["--landing", "{root}/nowhere"], "--landing {root}/nowhere: no such folder"),
    "landing-is-a-file": (["--landing", "{root}/a-file"], "--landing {root}/a-file: not a folder"),
    "landing-without-shards": (["--landing", "{root}/notes"], "--landing {root}/notes: no shard files"),
    "landing-key-clash": (["--landing", "{root}/clash"], "both map to shard key 'part'; rename one"),
    "out-is-a-file": (["--out", "{root}/a-file"], "--out {root}/a-file: exists and is not a folder"),
    "out-under-a-file": (["--out", "{root}/a-file/out"], "--out {root}/a-file/out: cannot write there"),
}


@pytest.mark.parametrize("case", REFUSED, ids=list(REFUSED))
def test_bad_call_is_refused_before_any_work_with_one_line(tmp_path, case):
    paths = _inputs(tmp_path)
    changes, expected = REFUSED[case]
    arguments = {
        "--landing": str(paths["landing"]),
        "--reference": str(paths["reference"]),
        "--eval": str(paths["eval"]),
        "--out": str(tmp_path / "out"),
        "--budget": "0.1",
        "--seed": "0",
    }
    arguments.update(zip(changes[::2], (value.format(root=tmp_path) for value in changes[1::2])))
    command = [sys.executable, "-m", "dataselect_platform.cli", "build", "--backend", "static"]
    command += [part for pair in arguments.items() for part in pair]
    environment = {key: value for key, value in os.environ.items() if key != "DAGSTER_HOME"} | {"PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=environment, timeout=60, check=False)
    seconds = time.perf_counter() - started
    lines = completed.stderr.strip().splitlines()
    assert completed.returncode == 2, completed.stderr[-2000:]
    assert len(lines) == 1 and completed.stdout == "", completed.stderr[-2000:]
    assert lines[0].startswith("dataselect build: ") and expected.format(root=tmp_path) in lines[0]
    assert seconds < 5, f"refused after {seconds:.1f}s"
    # Nothing ran: no Dagster home, no store.
    assert not (tmp_path / "out" / "dagster_home").exists() and not (tmp_path / "out" / "store").exists()


def test_demo_refuses_a_bad_budget_before_writing_anything(tmp_path):
    command = [sys.executable, "-m", "dataselect_platform.cli", "demo", "--budget", "-1", "--out", str(tmp_path / "demo")]
    completed = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60, check=False
    )
    assert completed.returncode == 2
    assert completed.stderr.strip() == "dataselect demo: --budget: budget must be a positive number (fraction <= 1 or count > 1), got -1.0"
    assert not (tmp_path / "demo" / "data").exists()
