"""The project's shape: import layers run one way, and the code location reads its environment
when used, not when imported."""

import ast
import sys
from pathlib import Path

import pytest

from dataselect.storage import as_path

ROOT = Path(__file__).resolve().parents[2]
# Low to high: a package may import only itself and the packages before it.
LAYERS = ["dataselect", "resources", "platform_assets", "jobs", "sensors", "dataselect_platform"]


def _imports(package: str) -> dict[str, set[str]]:
    """Top-level module names each file of ``package`` imports, function-level imports included."""
    found = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


def test_imports_never_run_up_the_layers_and_the_core_has_no_dagster():
    upward = []
    for level, package in enumerate(LAYERS):
        for path, names in _imports(package).items():
            upward += [f"{path} imports {name}" for name in sorted(names & set(LAYERS[level + 1 :]))]
    assert upward == []
    dagster_in_core = [path for path, names in _imports("dataselect").items() if names & {"dagster", "dagster_ray", "dagster_postgres"}]
    assert dagster_in_core == []


def test_package_graph_has_no_cycle():
    graph = {package: set().union(*_imports(package).values()) & set(LAYERS) - {package} for package in LAYERS}
    # Kahn's algorithm: every package must come out once its imports have.
    done: list[str] = []
    while len(done) < len(graph):
        ready = [p for p in graph if p not in done and graph[p] <= set(done)]
        assert ready, f"import cycle among {sorted(set(graph) - set(done))}"
        done += ready
    assert done.index("dataselect") < done.index("dataselect_platform")


def test_importing_the_code_location_reads_no_environment(monkeypatch, tmp_path):
    import dataselect_platform.definitions as definitions

    assert "dataselect_platform.definitions" in sys.modules
    # Set after the import: the resources still see it, because they read it when used.
    monkeypatch.setenv("DATASELECT_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("DATASELECT_LANDING", str(tmp_path / "landing"))
    monkeypatch.setenv("DATASELECT_EVAL", "")
    resources = definitions.defs().resources
    assert resources["storage"].root_path() == as_path(str(tmp_path / "store"))
    assert resources["inputs"].landing() == as_path(str(tmp_path / "landing"))
    assert resources["inputs"].evaluation() is None  # empty: no evaluation set


@pytest.mark.parametrize(
    ("variable", "read"),
    [("DATASELECT_STORE", lambda r: r["storage"].root_path()), ("DATASELECT_LANDING", lambda r: r["inputs"].landing())],
)
def test_zero_configuration_defaults_and_explicit_settings_win(monkeypatch, tmp_path, variable, read):
    from resources import make_resources

    monkeypatch.delenv(variable, raising=False)
    default = read(make_resources())
    assert default == as_path({"DATASELECT_STORE": "data/store", "DATASELECT_LANDING": "data/landing"}[variable])
    monkeypatch.setenv(variable, str(tmp_path / "from-env"))
    explicit = make_resources(landing_dir=str(tmp_path / "explicit"), store=str(tmp_path / "explicit"))
    assert read(explicit) == as_path(str(tmp_path / "explicit"))


def test_every_selection_setting_is_reachable_from_the_launchpad():
    import dataclasses

    from dataselect.selection import SelectionConfig
    from platform_assets.selection import SelectionBuildConfig

    assert {f.name for f in dataclasses.fields(SelectionConfig)} <= set(SelectionBuildConfig.model_fields)
    assert SelectionBuildConfig().selection() == SelectionConfig()
    launchpad = SelectionBuildConfig(policy="cluster_balanced", candidate_factor=3.0, n_clusters=4, hard_filters=["heuristics"])
    assert launchpad.selection() == SelectionConfig(
        policy="cluster_balanced", candidate_factor=3.0, n_clusters=4, hard_filters=["heuristics"]
    )


def test_model_assets_take_pool_and_kind_from_the_scorer_declaration():
    from dataselect.scorers import SCORERS
    from platform_assets.scoring import model_assets

    for model in model_assets:
        scorer = SCORERS[model.key.to_user_string().removesuffix("_model")]
        assert model.op.pool == ("gpu" if scorer.device == "gpu" else None)
        assert scorer.library in model.specs_by_key[model.key].kinds
    assert {m.key.to_user_string() for m in model_assets if m.op.pool == "gpu"} == {"color_model"}
    assert all(scorer.kind in {"quality", "duplicates", "relevance", "label_noise", "ids"} for scorer in SCORERS.values())


def test_the_code_location_has_one_concurrency_pool_which_the_build_creates_up_front():
    """dataselect_platform.runner creates GPU_POOL's limit before runs start side by side; a second
    pool would need the same, or its first concurrent runs could race to create it."""
    from dataselect_platform.definitions import all_assets
    from platform_assets.partitions import GPU_POOL

    assert {a.op.pool for a in all_assets} - {None} == {GPU_POOL}
    assert {a.key.to_user_string() for a in all_assets if a.op.pool == GPU_POOL} >= {"embeddings", "evaluation_report"}
