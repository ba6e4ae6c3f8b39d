"""The Dagster UI in a real browser (Playwright driving Debian's headless Chromium).

Against ``dagster-webserver`` on 127.0.0.1 over a small demo build: the first-visit dialog is
dismissed, the asset graph shows the five stage assets and each stage's checks are listed,
``evaluation_report`` is materialized by clicking its Materialize button, the run succeeds on the
Runs page, and the report's headline table and plots render in the asset's metadata.
Screenshots of each step are saved and their paths printed.

The instance uses the DefaultRunCoordinator, so the clicked run starts without a daemon and no
sensor or automation tick competes with it for the CPU.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from platform_assets.scoring import DEFAULT_MODEL_KEYS
from tests.platform.helpers import ROOT, PlatformBuild
from tests.platform.test_webserver import DAGSTER_YAML, _free_port, _graphql, _stop

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STAGES = {  # stage asset -> the checks its page must list
    "raw_pool": ["raw_pool_valid"],
    "embeddings": ["embeddings_valid"],
    "quality_scores": ["quality_scores_valid"],
    "filtered_set": ["filtered_set_valid"],
    "evaluation_report": ["selection_beats_random", "no_regression_vs_previous_build"],
}
STARTUP_SECONDS = 240
RUN_SECONDS = 600  # three step processes, each importing the definitions, on two shared cores
UI_SECONDS = 60


@pytest.fixture(scope="module")
def chromium() -> str:
    if CHROMIUM is None:
        message = "chromium is not installed (apt-get install chromium); .ci/run installs it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture(scope="module")
def webserver(tmp_path_factory):
    """A demo build up to the selection, then the webserver over its instance and store."""
    from dagster import DagsterInstance

    from dataselect.demo import write_demo

    root = tmp_path_factory.mktemp("ui")
    demo = write_demo(root / "data", seed=0, n_records=120, n_shards=2)
    home = root / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    store = root / "store"
    with DagsterInstance.from_config(str(home)) as instance:
        build = PlatformBuild(instance, demo.landing, demo.reference, demo.evaluation, str(store))
        # Every step but the report, which the browser materializes.
        for key in build.keys:
            build.run(["raw_pool", "embeddings"], key)
        build.run(["target_reference", *DEFAULT_MODEL_KEYS])
        for key in build.keys:
            build.run(["quality_scores"], key)
        build.run(
            ["filtered_set", "evaluation_set", "evaluation_features", "evaluation_full_pool_arm"],
            run_config={"ops": {"filtered_set": {"config": {"budget": 0.1}}}},
        )

    port = _free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "DATASELECT_LANDING": demo.landing,
        "DATASELECT_REFERENCE": demo.reference,
        "DATASELECT_EVAL": demo.evaluation,
        "DATASELECT_STORE": str(store),
        "DATASELECT_EMBEDDING_BACKEND": "static",
    }
    log_path = root / "webserver.log"
    log = log_path.open("wb")
    command = [sys.executable, "-m", "dagster_webserver", "-h", "127.0.0.1", "-p", str(port), "-m", "dataselect_platform.definitions"]
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            assert server.poll() is None, log_path.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5) as response:
                    json.loads(response.read())
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                assert time.monotonic() < deadline, "webserver did not answer /server_info in time"
                time.sleep(1)
        yield port, root, log_path
    finally:
        survivors = _stop(server)
        log.close()
    assert not survivors, f"still running after SIGTERM to the process group: {survivors}"


def report_runs(port: int) -> list[dict]:
    """Runs that materialize evaluation_report (the fixture's build never runs it)."""
    runs = _graphql(port, """{ runsOrError { ... on Runs { results { status assetSelection { path } } } } }""")
    return [r for r in runs["runsOrError"]["results"] if r["assetSelection"] == [{"path": ["evaluation_report"]}]]


def visible_text(page, text: str):
    # Long names also sit in hidden elements the UI measures for truncation: match the shown one.
    return page.get_by_text(text, exact=True).filter(visible=True).first


def test_the_ui_shows_the_stages_materializes_by_click_and_renders_the_report(chromium, webserver):
    from playwright.sync_api import expect, sync_playwright

    port, root, log_path = webserver
    url = f"http://127.0.0.1:{port}"
    shots = root / "screenshots"
    shots.mkdir()
    saved: list[Path] = []

    def screenshot(page, name: str) -> None:
        path = shots / f"{len(saved) + 1:02d}-{name}.png"
        page.screenshot(path=str(path))
        saved.append(path)
        print(f"screenshot: {path}")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(root / "chromium-profile"),
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1600, "height": 1000},
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(UI_SECONDS * 1000)
            expect.set_options(timeout=UI_SECONDS * 1000)

            # First visit: Dagster's community dialog covers the page until it is dismissed.
            page.goto(f"{url}/asset-groups", wait_until="domcontentloaded")
            skip = page.get_by_role("dialog").get_by_text("Skip", exact=True)
            try:
                skip.wait_for(timeout=30_000)
            except Exception:  # noqa: BLE001 - a Dagster that no longer shows it is fine
                print("no first-visit dialog shown")
            else:
                screenshot(page, "first-visit-dialog")
                skip.click()
                expect(page.get_by_role("dialog")).to_have_count(0)

            # The asset graph, upstream of the report: every stage asset is a node.
            page.goto(f"{url}/assets/evaluation_report?view=lineage&lineageScope=upstream&lineageDepth=6")
            for asset in STAGES:
                expect(visible_text(page, asset)).to_be_visible()
            time.sleep(3)  # let the nodes' materialization status arrive before the picture
            screenshot(page, "asset-graph")

            # Each stage's checks, as its Checks tab lists them.
            for asset, checks in STAGES.items():
                page.goto(f"{url}/assets/{asset}?view=checks")
                for check in checks:
                    expect(visible_text(page, check)).to_be_visible()
            screenshot(page, "evaluation-report-checks")

            # Materialize the report by clicking, then watch the run on the Runs page.
            page.goto(f"{url}/assets/evaluation_report")
            expect(page.get_by_text("Never materialized")).to_be_visible()
            page.get_by_text("Materialize", exact=True).click()
            # Leave the page only once the launch went through (navigating earlier cancels it).
            deadline = time.monotonic() + UI_SECONDS
            while not report_runs(port):
                assert time.monotonic() < deadline, "clicking Materialize launched no run"
                time.sleep(1)
            page.goto(f"{url}/runs")
            row = page.locator('[class*="RunsFeedRow_rowGrid"]').filter(has_text="evaluation_report")  # one run's row
            # The Runs page polls the server itself: wait for the row's status to settle.
            expect(row.first).to_contain_text(re.compile("Success|Failure|Canceled"), timeout=RUN_SECONDS * 1000)
            screenshot(page, "runs-page")
            assert "Success" in row.first.inner_text(), log_path.read_text()[-3000:]
            assert row.count() == 1  # one run, the one the click launched

            # The report's metadata: the headline table and the plots render.
            page.goto(f"{url}/assets/evaluation_report")
            headline = page.locator("tr").filter(has=page.get_by_text("headline", exact=True)).locator("table")
            expect(headline).to_be_visible()
            arms = [line.split("\t")[0].strip() for line in headline.inner_text().splitlines()]
            assert {"selected", "random", "stratified_random", "full"} <= set(arms)
            screenshot(page, "report-headline")
            page.locator("tr").filter(has=page.get_by_text("plots", exact=True)).get_by_text("Show Markdown").click()
            plots = page.get_by_role("dialog").locator('img[src^="data:image/png"]')
            expect(plots.first).to_be_visible()
            drawn = {image.get_attribute("alt"): image.evaluate("image => image.complete && image.naturalWidth") for image in plots.all()}
            assert {"score_histograms", "embedding_projection", "arm_accuracy"} <= set(drawn)
            assert all(width > 200 for width in drawn.values()), drawn
            screenshot(page, "report-plots")
        finally:
            browser.close()

    # The UI's run, seen from the server: it targeted the report and succeeded.
    assert [r["status"] for r in report_runs(port)] == ["SUCCESS"]
    assert all(path.stat().st_size > 10_000 for path in saved)
