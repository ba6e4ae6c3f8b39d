"""Security guarantees: no path escapes the storage root, no code-executing file formats,
fitted state only as JSON + safetensors, credentials only through environment variables."""

from __future__ import annotations

import ast
import json
import os
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
SOURCE_FOLDERS = ["dataselect", "platform_assets", "resources", "sensors", "jobs"]

# Modules whose load functions can run arbitrary code from a file.
UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "cloudpickle", "dill", "shelve", "marshal"}
# joblib is also a parallel map (Parallel, delayed); only its pickle-based persistence is unsafe.
UNSAFE_JOBLIB = {"load", "dump"}


# --------------------------------------------------------------------------- code-executing formats


def unsafe_uses(source: str) -> list[str]:
    """Every use of a pickle-based or code-executing loader in ``source``'s code (comments and
    docstrings do not count: they are not code)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            found += [f"{line}: import {a.name}" for a in node.names if a.name.split(".")[0] in UNSAFE_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in UNSAFE_MODULES:
            found.append(f"{line}: from {node.module} import")
        elif isinstance(node, ast.ImportFrom) and node.module == "joblib":
            found += [f"{line}: from joblib import {a.name}" for a in node.names if a.name in UNSAFE_JOBLIB]
        elif isinstance(node, ast.Attribute):
            owner = node.value.id if isinstance(node.value, ast.Name) else None
            if owner in UNSAFE_MODULES or (owner == "joblib" and node.attr in UNSAFE_JOBLIB):
                found.append(f"{line}: {owner}.{node.attr}")
            elif node.attr in ("read_pickle", "to_pickle"):
                found.append(f"{line}: .{node.attr}")
            elif node.attr == "save" and owner == "torch":
                found.append(f"{line}: torch.save")
        elif isinstance(node, ast.Call):
            keywords = {k.arg: k.value for k in node.keywords if k.arg}
            for flag in ("trust_remote_code", "allow_pickle"):
                if flag in keywords and not (isinstance(keywords[flag], ast.Constant) and keywords[flag].value is False):
                    found.append(f"{line}: {flag}={ast.unparse(keywords[flag])}")
            function = node.func
            if isinstance(function, ast.Attribute) and function.attr == "load" and isinstance(function.value, ast.Name) and function.value.id == "torch":
                safe = keywords.get("weights_only")
                if not (isinstance(safe, ast.Constant) and safe.value is True):
                    found.append(f"{line}: torch.load without weights_only=True")
    return found


def test_the_checker_flags_each_unsafe_pattern_and_ignores_comments():
    bad = (
        "import pickle\nfrom joblib import load\nimport torch\nimport pandas as pd\njoblib.dump(m, 'x')\n"
        "torch.save(m, 'x')\ntorch.load('x')\ntorch.load('x', weights_only=False)\n"
        "np.load('x', allow_pickle=True)\nAutoModel.from_pretrained('x', trust_remote_code=True)\npd.read_pickle('x')\n"
    )
    assert len(unsafe_uses(bad)) == 9
    fine = (
        '"""Never pickle: state is JSON + safetensors."""\n# import pickle\nimport torch\nfrom joblib import Parallel\n'
        "torch.load('x', weights_only=True)\nAutoModel.from_pretrained('x', trust_remote_code=False)\nnp.load('x')\n"
    )
    assert unsafe_uses(fine) == []


def test_sources_use_no_pickle_or_code_executing_formats():
    files = [p for folder in SOURCE_FOLDERS for p in sorted((REPOSITORY / folder).rglob("*.py"))]
    assert len(files) > 20
    problems = {str(p.relative_to(REPOSITORY)): unsafe_uses(p.read_text()) for p in files}
    assert {path: uses for path, uses in problems.items() if uses} == {}


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
