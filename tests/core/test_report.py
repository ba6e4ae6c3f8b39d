"""Label-free metrics (known answers on hand-made vectors) and the report files."""

import base64
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from dataselect.evaluation import ArmEvaluator
from dataselect.metrics import (
    Config,
    diversity,
    embedding_distance,
    frechet_distance,
    mean_pairwise_cosine_distance,
    mmd_squared,
    rates,
    target_coverage,
)
from dataselect.report import (
    headline_markdown,
    plot_arm_accuracy,
    plot_budget_curve,
    plot_embedding_projection,
    plot_score_histograms,
    render_html,
    summarize,
    write_report,
)
from dataselect.storage import read_json

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _tags(page):
    """(tag, attributes) of every real element: escaped text from the data is not a tag."""
    found = []

    class Collector(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.append((tag, attrs))

    Collector().feed(page)
    return found


def unit(matrix):
    matrix = np.asarray(matrix, dtype=np.float64)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


# --------------------------------------------------------------------------- metrics
def test_embedding_distance_zero_for_identical_sets_and_grows_with_shift():
    rng = np.random.default_rng(0)
    # Sets with a clear mean direction (an isotropic set's mean is noise, its cosine meaningless).
    target = unit(rng.normal(size=(300, 8)) + 3 * np.eye(8)[0])
    same = embedding_distance(target, target)
    assert same["mean_cosine_distance"] == pytest.approx(0.0, abs=1e-6)
    assert same["frechet"] == pytest.approx(0.0, abs=1e-6)
    # Unbiased MMD² of a set against itself is -2(1 - mean off-diagonal kernel)/n: tiny.
    assert abs(same["mmd2"]) < 2 / 300
    near = embedding_distance(unit(rng.normal(size=(300, 8)) + 3 * np.eye(8)[0]), target)
    far = embedding_distance(unit(rng.normal(size=(300, 8)) + 3 * np.eye(8)[1]), target)
    assert far["mean_cosine_distance"] > 0.5 > 0.01 > near["mean_cosine_distance"]
    assert far["mmd2"] > 10 * abs(near["mmd2"])
    assert far["frechet"] > 5 * near["frechet"]
    diagonal = embedding_distance(target, target, config=Config(frechet="diagonal"))
    assert diagonal["frechet_variant"] == "diagonal" and diagonal["frechet"] == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("n_selected", [0, 1])
def test_embedding_distance_of_an_empty_or_single_selection_is_nan_not_an_error(n_selected):
    # A pool of identical records dedups to one survivor; a 3-record pool at 10% selects none.
    target = unit(np.random.default_rng(2).normal(size=(20, 8)))
    selected = np.tile(target[:1], (n_selected, 1))
    distance = embedding_distance(selected, target)
    assert np.isnan(distance["frechet"]) and np.isnan(distance["mmd2"]) and distance["n_selected"] == n_selected
    assert np.isnan(frechet_distance(selected, target, diagonal=True))
    # Two identical points are a rank-zero covariance, not an error.
    assert np.isfinite(frechet_distance(np.tile(target[:1], (2, 1)), target))


def test_mmd_matches_a_brute_force_u_statistic():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(7, 3)), rng.normal(size=(5, 3)) + 0.5
    h = 1.3
    k = lambda a, b: np.exp(-np.sum((a - b) ** 2) / (2 * h * h))  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(7) for j in range(7) if i != j) / (7 * 6)
    yy = sum(k(y[i], y[j]) for i in range(5) for j in range(5) if i != j) / (5 * 4)
    xy = sum(k(a, b) for a in x for b in y) / 35
    value, bandwidth = mmd_squared(x, y, bandwidth=h)
    assert bandwidth == h and value == pytest.approx(xx + yy - 2 * xy, rel=1e-10)


def test_frechet_distance_known_gaussians():
    # Means 2 apart on one axis, equal covariances: the distance is |dmu|² = 4 (up to sampling).
    rng = np.random.default_rng(2)
    x = rng.normal(size=(20_000, 3))
    y = rng.normal(size=(20_000, 3)) + np.array([2.0, 0.0, 0.0])
    assert frechet_distance(x, y) == pytest.approx(4.0, abs=0.08)
    # Isotropic scales 1 and 2 in d=3, same mean: tr(I + 4I - 2*2I) = 3.
    z = rng.normal(size=(20_000, 3)) * 2.0
    assert frechet_distance(x, z) == pytest.approx(3.0, abs=0.15)
    assert frechet_distance(x, z, diagonal=True) == pytest.approx(3.0, abs=0.15)


def test_target_coverage_known_answers():
    e = np.eye(4)
    assert target_coverage(e, e, radii=(0.0, 0.5)) == {0.0: 1.0, 0.5: 1.0}
    # Selected covers only the first two axes; orthogonal targets are at cosine distance 1.
    coverage = target_coverage(e[:2], e, radii=(0.5, 0.99, 1.0))
    assert coverage == {0.5: 0.5, 0.99: 0.5, 1.0: 1.0}
    # A target at 60 degrees from its nearest selected vector: cosine distance 0.5.
    tilted = np.array([[np.cos(np.pi / 3), np.sin(np.pi / 3), 0, 0]])
    assert target_coverage(e[:1], tilted, radii=(0.49, 0.5)) == {0.49: 0.0, 0.5: 1.0}
    assert target_coverage(np.zeros((0, 4)), e, radii=(0.3,)) == {0.3: 0.0}


def test_diversity_entropy_and_pairwise_distance():
    rng = np.random.default_rng(3)
    centres = unit(rng.normal(size=(8, 16)))
    spread = unit(np.repeat(centres, 50, axis=0) + rng.normal(scale=0.05, size=(400, 16)))
    collapsed = unit(np.repeat(centres[:1], 400, axis=0) + rng.normal(scale=0.05, size=(400, 16)))
    wide = diversity(spread, n_clusters=8, seed=0)
    narrow = diversity(collapsed, n_clusters=8, seed=0)
    # Eight equal, well-separated clusters: every k-means cluster gets 1/8 -> entropy 1.
    assert wide["cluster_entropy"] == pytest.approx(1.0, abs=0.02)
    assert wide["mean_pairwise_cosine_distance"] > 0.5 > 0.05 > narrow["mean_pairwise_cosine_distance"]
    assert diversity(spread, n_clusters=8, seed=0) == wide
    # Exact identity vs brute force on a small set.
    x = unit(rng.normal(size=(30, 5)))
    gram = x @ x.T
    brute = np.mean(1 - gram[~np.eye(30, dtype=bool)])
    assert mean_pairwise_cosine_distance(x) == pytest.approx(brute, rel=1e-9)
    assert diversity(x[:1])["cluster_entropy"] == 0.0


def test_rates_from_flag_columns():
    flags = pd.DataFrame(
        {
            "exact_duplicate": [True, False, False, False],
            "near_dup": [True, True, False, False],
            "low_quality": [False, False, True, False],
            "score": [0.1, 0.2, 0.3, 0.4],
        }
    )
    result = rates(flags)
    assert result["n"] == 4
    assert result["duplicate_rate"] == 0.5  # rows 0 and 1 have a duplicate flag
    assert result["junk_rate"] == 0.25
    assert result["exact_duplicate_rate"] == 0.25 and result["near_dup_rate"] == 0.5
    assert "score_rate" not in result
    explicit = rates(flags, duplicate_columns=["exact_duplicate"], junk_columns=["low_quality", "near_dup"])
    assert explicit["duplicate_rate"] == 0.25 and explicit["junk_rate"] == 0.75


# --------------------------------------------------------------------------- report
@pytest.fixture(scope="module")
def small_labelled():
    rng = np.random.default_rng(0)
    words = {"red": [f"red{i}" for i in range(10)], "blue": [f"blue{i}" for i in range(10)]}

    def docs(n, noise):
        labels = [("red", "blue")[i % 2] for i in range(n)]
        texts = [" ".join(rng.choice(words[label], 3)) for label in labels]
        labels = [("red", "blue")[rng.integers(2)] if rng.random() < noise else label for label in labels]
        return texts, labels

    clean_t, clean_l = docs(40, 0.0)
    noisy_t, noisy_l = docs(120, 1.0)
    pool = pd.DataFrame({"id": [f"r{i}" for i in range(160)], "text": clean_t + noisy_t, "label": clean_l + noisy_l})
    eval_t, eval_l = docs(100, 0.0)
    return pool, pd.DataFrame({"text": eval_t, "label": eval_l})


@pytest.fixture(scope="module")
def small_arms(small_labelled):
    pool, eval_set = small_labelled
    return ArmEvaluator(pool, eval_set).evaluate_arms([f"r{i}" for i in range(30)], random_seeds=(1, 2, 3))


def test_summary_is_identical_for_identical_runs(small_labelled, small_arms):
    pool, eval_set = small_labelled
    again = ArmEvaluator(pool, eval_set).evaluate_arms([f"r{i}" for i in range(30)], random_seeds=(1, 2, 3))
    assert summarize(again) == summarize(small_arms)
    assert "fit_seconds" not in str(summarize(again))


def sweep_table():
    rows = []
    for budget, sel, ran in [(0.05, 0.70, 0.55), (0.1, 0.78, 0.64), (0.5, 0.84, 0.80)]:
        rows.append(
            {
                "budget": budget,
                "k": int(budget * 1000),
                "arm": "selected",
                "accuracy": sel,
                "accuracy_lo": sel - 0.02,
                "accuracy_hi": sel + 0.02,
                "macro_f1": sel - 0.01,
                "n_train": int(budget * 1000),
            }
        )
        rows.append(
            {
                "budget": budget,
                "k": int(budget * 1000),
                "arm": "random",
                "accuracy": ran,
                "accuracy_lo": ran - 0.03,
                "accuracy_hi": ran + 0.03,
                "macro_f1": ran - 0.01,
                "n_train": int(budget * 1000),
            }
        )
    rows.append(
        {
            "budget": 1.0,
            "k": 1000,
            "arm": "full",
            "accuracy": 0.85,
            "accuracy_lo": 0.83,
            "accuracy_hi": 0.87,
            "macro_f1": 0.84,
            "n_train": 1000,
        }
    )
    return pd.DataFrame(rows)


def test_plots_are_png_bytes_and_deterministic():
    rng = np.random.default_rng(0)
    scores = pd.DataFrame({"heuristics.score": rng.random(200), "dsir.score": rng.normal(size=200), "keep": rng.random(200) > 0.5})
    selected = rng.random(200) > 0.7
    pool = rng.normal(size=(200, 6))
    target = rng.normal(size=(50, 6)) + 1
    headline = [
        {"arm": "selected", "accuracy": 0.8, "accuracy_lo": 0.78, "accuracy_hi": 0.82, "macro_f1": 0.79, "n_train": 100},
        {"arm": "random", "accuracy": 0.7, "accuracy_lo": 0.65, "accuracy_hi": 0.74, "macro_f1": 0.69, "n_train": 100},
    ]
    figures = [
        plot_score_histograms(scores, selected),
        plot_embedding_projection(pool, selected, target, max_points=90),
        plot_arm_accuracy(headline),
        plot_budget_curve(sweep_table()),
    ]
    for png in figures:
        assert png.startswith(PNG_SIGNATURE) and len(png) > 5_000
    assert plot_embedding_projection(pool, selected, target, max_points=90) == figures[1]
    assert plot_budget_curve(sweep_table()) == figures[3]


def test_write_report_self_contained_html_and_round_tripping_json(tmp_path, small_arms):
    summary = summarize(
        small_arms,
        label_free={"distance": {"mmd2": 0.01, "frechet": float("nan")}, "coverage": {0.3: 0.9}},
        build_comparison={"n_added": 3, "added_sample": ["<b>x</b>"]},
        recipe="tfidf_logreg",
        note="<script>alert('x')</script> see http://example.com",
    )
    summary["headline"][0]["arm"] = "selected <img src=http://evil/x.png>"
    figures = {"arm accuracy": plot_arm_accuracy(summary["headline"]), "budget/curve": plot_budget_curve(sweep_table())}
    tables = {"budget_sweep": sweep_table(), "ablation": pd.DataFrame({"left_out": ["<dsir>"], "delta_accuracy": [-0.02]})}
    paths = write_report(str(tmp_path / "report"), summary, tables, figures)

    page = (tmp_path / "report" / "report.html").read_text()
    assert paths.html.endswith("report.html")
    # Images are embedded as data URIs whose bytes are the PNGs themselves.
    embedded = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert sorted(base64.b64decode(e) for e in embedded) == sorted(figures.values())
    # Nothing is fetched: the only tags are plain markup and every attribute is local.
    tags = _tags(page)
    assert {name for name, _ in tags} <= {
        "html",
        "head",
        "meta",
        "title",
        "style",
        "body",
        "h1",
        "h2",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
        "figure",
        "img",
        "figcaption",
        "p",
    }
    for name, attributes in tags:
        for key, value in attributes:
            assert not (value or "").lower().startswith(("http", "//", "ftp")), (name, key, value)
            if key in ("src", "href"):
                assert value.startswith("data:image/png;base64,")
    assert "http" not in page.split("<style>")[1].split("</style>")[0]
    # Text from data is escaped.
    assert "&lt;script&gt;" in page and "&lt;dsir&gt;" in page and "&lt;b&gt;x&lt;/b&gt;" in page
    assert "selected &lt;img src=http://evil/x.png&gt;" in page
    for heading in ("Headline", "Label free", "Build comparison", "Budget sweep", "Ablation"):
        assert f"<h2>{heading}</h2>" in page
    # Figure files, named safely inside the report directory.
    assert sorted(p.name for p in (tmp_path / "report").glob("*.png")) == ["arm_accuracy.png", "budget_curve.png"]
    assert (tmp_path / "report" / "budget_curve.png").read_bytes() == figures["budget/curve"]

    loaded = read_json(paths.summary_json)
    assert [row["arm"] for row in loaded["headline"]][1:] == ["random", "stratified_random", "full"]
    assert loaded["headline"][1]["accuracy"] == small_arms["random"].accuracy
    assert loaded["label_free"]["distance"] == {"mmd2": 0.01, "frechet": None}  # NaN -> null
    assert loaded["label_free"]["coverage"] == {"0.3": 0.9}
    assert len(loaded["arms"]["random"]["per_seed"]) == 3
    # Writing the same report again gives the same bytes (no timestamps, sorted JSON).
    before = (tmp_path / "report" / "summary.json").read_bytes(), page
    write_report(str(tmp_path / "report"), summary, tables, figures)
    assert ((tmp_path / "report" / "summary.json").read_bytes(), (tmp_path / "report" / "report.html").read_text()) == before


def test_headline_markdown(small_arms):
    summary = summarize(small_arms)
    summary["headline"].append(
        {"arm": "a|b", "accuracy": float("nan"), "accuracy_lo": None, "accuracy_hi": None, "macro_f1": None, "n_train": 0}
    )
    text = headline_markdown(summary)
    lines = text.splitlines()
    assert lines[0] == "| arm | accuracy [95% CI] | macro-F1 | n |"
    assert len(lines) == 2 + 5
    selected = small_arms["selected"]
    assert lines[2] == (
        f"| selected | {selected.accuracy:.4f} [{selected.accuracy_lo:.4f}, {selected.accuracy_hi:.4f}] | {selected.macro_f1:.4f} | 30 |"
    )
    assert lines[-1] == "| a\\|b | n/a [n/a, n/a] | n/a | 0 |"


def test_render_html_without_headline_or_figures():
    page = render_html({"recipe": "tfidf_logreg"}, {}, {})
    assert page.startswith("<!DOCTYPE html>") and "<h2>Headline</h2>" not in page and "tfidf_logreg" in page
