"""The HTML report opens in a real browser (headless Chromium) with its plots drawn."""

import os
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from dataselect.report import plot_arm_accuracy, write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.browser

SELECTED_GREEN = np.array([0x1B, 0x78, 0x37])  # the selected arm's bar colour in plot_arm_accuracy


@pytest.fixture
def chromium():
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs Debian's chromium package")
        pytest.skip("chromium not installed (apt-get install chromium)")
    return CHROMIUM


def screenshot(browser: str, page: str, out: str, tmp_path) -> np.ndarray:
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,1400", f"--screenshot={out}", f"file://{page}"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return np.asarray(Image.open(out).convert("RGB")).astype(int)


def green_pixels(image: np.ndarray) -> int:
    return int((np.abs(image - SELECTED_GREEN).sum(axis=2) < 30).sum())


def test_report_renders_its_embedded_plots(chromium, tmp_path):
    headline = [
        {"arm": "selected", "accuracy": 0.92, "accuracy_lo": 0.90, "accuracy_hi": 0.94, "macro_f1": 0.91, "n_train": 100},
        {"arm": "random", "accuracy": 0.70, "accuracy_lo": 0.66, "accuracy_hi": 0.74, "macro_f1": 0.69, "n_train": 100},
    ]
    with_plot = write_report(str(tmp_path / "with"), {"headline": headline}, {}, {"arm_accuracy": plot_arm_accuracy(headline)})
    without_plot = write_report(str(tmp_path / "without"), {"headline": headline}, {}, {})

    drawn = screenshot(chromium, with_plot.html, str(tmp_path / "with.png"), tmp_path)
    blank = screenshot(chromium, without_plot.html, str(tmp_path / "without.png"), tmp_path)
    # The selected arm's green bar is only on the page when the embedded PNG decoded and drew.
    assert green_pixels(drawn) > 2000
    assert green_pixels(blank) == 0
