"""Security guarantees: no path escapes the storage root, no code-executing file formats,
fitted state only as JSON + safetensors, credentials only through environment variables."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dataselect import records as cols
from dataselect.storage import UnsafePathError, confined

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

REPOSITORY = Path(__file__).resolve().parents[2]
SOURCE_FOLDERS = ["dataselect", "resources", "platform_assets", "jobs", "sensors", "dataselect_platform", "benchmarks"]

# --------------------------------------------------------------------------- code-executing formats
# pyproject.toml bans them through ruff's banned-api rule (TID251), which CI runs over the tree.

BANNED = {
    "import pickle": "pickle",
    "from joblib import load": "joblib.load",
    "joblib.dump(model, 'x')": "joblib.dump",
    "torch.save(model, 'x')": "torch.save",
    "torch.load('x', weights_only=True)": "torch.load",
    "pd.read_pickle('x')": "pandas.read_pickle",
    "import marshal": "marshal",
    "import dill": "dill",
    "yaml.load(text)": "yaml.load",
}


def _banned_api_findings(*paths: str) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "ruff",
        "check",
        "--no-cache",
        "--select",
        "TID251",
        "--output-format",
        "concise",
        "--config",
        str(REPOSITORY / "pyproject.toml"),
        *paths,
    ]
    result = subprocess.run(command, cwd=REPOSITORY, capture_output=True, text=True, timeout=120)
    assert result.returncode in (0, 1), result.stderr
    return [line for line in result.stdout.splitlines() if "TID251" in line]


def test_ruff_bans_every_code_executing_format(tmp_path):
    source = "import joblib\nimport pandas as pd\nimport torch\nimport yaml\n" + "\n".join(BANNED) + "\n"
    (tmp_path / "unsafe.py").write_text(source)
    findings = _banned_api_findings(str(tmp_path / "unsafe.py"))
    assert sorted(f.split("`")[1] for f in findings) == sorted(BANNED.values())
    (tmp_path / "safe.py").write_text(
        '"""Never pickle."""\n# import pickle\nfrom joblib import Parallel\nimport numpy as np\nnp.load("x")\n'
    )
    assert _banned_api_findings(str(tmp_path / "safe.py")) == []


def test_sources_use_no_code_executing_format():
    assert _banned_api_findings(*SOURCE_FOLDERS) == []


def test_no_model_loads_remote_code_and_no_array_unpickles():
    # Keyword values are beyond ruff's banned-api rule, so these two flags are checked here.
    found = []
    for path in [p for folder in SOURCE_FOLDERS for p in sorted((REPOSITORY / folder).rglob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text())):
            for keyword in getattr(node, "keywords", []) if isinstance(node, ast.Call) else []:
                if keyword.arg in ("trust_remote_code", "allow_pickle") and not (
                    isinstance(keyword.value, ast.Constant) and keyword.value.value is False
                ):
                    found.append(f"{path.relative_to(REPOSITORY)}:{node.lineno}: {keyword.arg}")
    assert found == []


def test_fitted_scorers_save_only_json_and_safetensors_and_load_back_identically(tmp_path):
    from dataselect.scorers import SCORERS
    from dataselect.scorers.base import Batch

    rng = np.random.default_rng(0)
    words = np.array("star orbit comet galaxy telescope recipe butter oven sauce garlic".split())
    pool_texts = [" ".join(rng.choice(words[5:] if i % 2 else words[:5], 12)) for i in range(60)]
    target_texts = [" ".join(rng.choice(words[:5], 12)) for _ in range(30)]
    pool_vectors = rng.normal(size=(60, 8)).astype(np.float32)
    pool_vectors[::2] += 2.0  # the target-like half sits elsewhere in the space
    target_vectors = rng.normal(size=(30, 8)).astype(np.float32) + 2.0
    unit = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)  # noqa: E731
    pool = Batch(pa.table({cols.ID: [f"p{i}" for i in range(60)], cols.TEXT: pool_texts}), unit(pool_vectors))
    target = Batch(pa.table({cols.ID: [f"t{i}" for i in range(30)], cols.TEXT: target_texts}), unit(target_vectors))

    for name in ("dsir", "relevance", "ngram_relevance"):
        scorer = SCORERS[name]().fit(pool, target)
        folder = tmp_path / name
        scorer.save(folder)
        saved = sorted(p.name for p in folder.iterdir())
        assert saved == [f"{name}.json", f"{name}.safetensors"], saved
        json.loads((folder / f"{name}.json").read_text())  # plain JSON, no embedded objects
        loaded = SCORERS[name].load(folder)
        expected, actual = scorer.score(pool), loaded.score(pool)
        assert expected.keys() == actual.keys()
        for column in expected:
            np.testing.assert_array_equal(np.asarray(expected[column]), np.asarray(actual[column]))


# --------------------------------------------------------------------------- paths


def test_storage_paths_are_confined_to_the_root(tmp_path):
    from resources import StorageResource

    root = tmp_path / "store"
    root.mkdir()
    storage = StorageResource(root=str(root))
    for bad in ("..", "a/..", "/etc", "..\\..", "x\x00y", "", "."):
        with pytest.raises(UnsafePathError):
            storage.path(bad)
    with pytest.raises(UnsafePathError):
        storage.path("builds", "..")
    # A symlink inside the root that points outside it is refused too.
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(UnsafePathError):
        storage.path("link", "escape.json")
    # Names derived from input data are made safe rather than refused.
    assert storage.shard_file("raw_pool", "../../escape").parent == root / "raw_pool"
    assert storage.model_dir("../../x").parent == root / "models"
    assert confined(str(root), "builds", "abc").parent == root / "builds"


def test_storage_options_come_from_environment_variables(monkeypatch):
    from dagster import EnvVar

    from dataselect.storage import read_json, write_json
    from resources import StorageResource

    monkeypatch.setenv("DATASELECT_TEST_KEY", "key-from-env")
    monkeypatch.setenv("DATASELECT_TEST_SECRET", "secret-from-env")
    configured = StorageResource(
        root="memory://dataselect-test/store",
        storage_options={"key": EnvVar("DATASELECT_TEST_KEY"), "secret": EnvVar("DATASELECT_TEST_SECRET")},
    )
    # The definition holds only the variable names; Dagster resolves them when a run starts.
    assert all(isinstance(v, EnvVar) for v in configured.storage_options.values())
    storage = configured.process_config_and_initialize()
    assert storage.storage_options == {"key": "key-from-env", "secret": "secret-from-env"}
    path = storage.path("builds", "manifest.json")
    assert path.storage_options == {"key": "key-from-env", "secret": "secret-from-env"}
    write_json(path, {"ok": True})
    assert read_json(storage.path("builds", "manifest.json")) == {"ok": True}
    with pytest.raises(UnsafePathError):
        storage.path("..")


@pytest.mark.slow
def test_a_build_writes_nothing_outside_its_store(tmp_path, monkeypatch):
    """Hostile landing file names and record ids; every file the build writes is under its
    store or its Dagster home, and nothing appears anywhere else."""
    from dagster import instance_for_test

    from dataselect.demo import write_demo
    from dataselect.ingest import list_landing_files
    from dataselect_platform.runner import BuildInputs
    from jobs.build_plan import BuildSettings
    from tests.platform.helpers import build_with_plan

    demo = write_demo(tmp_path / "demo", n_records=120, n_shards=1)
    landing = Path(demo.landing)
    text = "The team measured the orbit of the comet over many nights and found that it returns every few decades. " * 3
    hostile_ids = ["../../etc/passwd", "/tmp/absolute", "..", "a/../../b", "C:\\\\evil"]
    lines = [json.dumps({"id": i, "text": f"{text} Record {n}.", "label": "astronomy"}) for n, i in enumerate(hostile_ids)]
    # Backslashes are legal in Linux file names; "x\\..\\..\\escape" reads as a Windows path.
    (landing / "x\\..\\..\\escape.jsonl").write_text("\n".join(lines) + "\n")
    (landing / "x\\...jsonl").write_text(json.dumps({"id": "dots", "text": text + " Dots."}) + "\n")  # stem ".."
    (landing / "a..b $(touch pwned).jsonl").write_text(json.dumps({"id": "x1", "text": text, "label": "medicine"}) + "\n")
    (landing / "...jsonl").write_text(json.dumps({"id": "hidden", "text": text}) + "\n")  # a hidden file: ignored

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # any stray relative write would land here
    out = tmp_path / "out"
    (out / "home").mkdir(parents=True)
    passwd = os.stat("/etc/passwd").st_mtime_ns
    before = {p for p in tmp_path.rglob("*")}

    files = list_landing_files(landing)
    keys = sorted(f.key for f in files)
    assert keys == ["_", "a..b_touch_pwned", "escape", "pool-00000-of-00001"]
    inputs = BuildInputs(str(landing), demo.reference, None, str(out / "store"), {"backend": "static"})
    with instance_for_test(temp_dir=str(out / "home")) as instance:
        build_with_plan(instance, inputs, BuildSettings(with_report=False))

    created = {p for p in tmp_path.rglob("*") if p.is_file()} - before
    outside = sorted(str(p) for p in created if not (p.is_relative_to(out / "store") or p.is_relative_to(out / "home")))
    assert outside == []
    assert not list(work.iterdir())
    assert os.stat("/etc/passwd").st_mtime_ns == passwd
    assert not any("pwned" in p.name for p in Path("/").glob("*")) and not (work / "pwned").exists()
    stored = [p for p in (out / "store").rglob("*") if p.is_file()]
    assert stored and all(os.path.realpath(p).startswith(os.path.realpath(out / "store") + os.sep) for p in stored)
    # The hostile ids are data, kept verbatim in the decisions table.
    (build,) = [p for p in (out / "store" / "builds").iterdir() if p.is_dir()]
    decisions = pq.read_table(build / "decisions.parquet").to_pandas()
    assert set(hostile_ids) | {"dots", "x1"} <= set(decisions[cols.ID])
    assert "hidden" not in set(decisions[cols.ID])
