"""The evaluation report: PNG plots, one self-contained HTML page and a machine-readable JSON.

Layout follows the DataComp results tables (Gadre et al. 2023): one headline row per arm with
its interval, then the budget sweep, the ablation and the label-free metrics. The HTML embeds
every image as a base64 data URI and its CSS inline, so the file can be mailed, attached to a
Dagster materialisation or opened offline; it loads nothing from the network.

Plots draw on ``matplotlib.figure.Figure`` with the Agg canvas directly: no pyplot, so no
global figure state and no display is ever touched.
"""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.decomposition import PCA

from dataselect.evaluation import ArmResult, RandomArms, headline_rows
from dataselect.storage import as_path, atomic_write_bytes, confined, safe_name, write_json

HEADLINE_COLUMNS = ["arm", "accuracy", "accuracy_lo", "accuracy_hi", "macro_f1", "n_train"]
_ARM_COLOURS = {"selected": "#1b7837", "random": "#7f7f7f", "stratified_random": "#2166ac", "full": "#b2182b"}


@dataclass
class ReportPaths:
    html: str
    summary_json: str
    figures: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- summary
def summarize(
    arms: dict[str, ArmResult | RandomArms],
    label_free: dict[str, Any] | None = None,
    build_comparison: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The summary dict :func:`write_report` expects: ``headline`` rows plus per-arm details.

    Fit times are left out so identical runs give identical summaries; pass them in
    ``extra`` (e.g. ``timings={...}``) to report them.
    """
    summary: dict[str, Any] = {
        "headline": headline_rows(arms),
        "arms": {name: result.to_dict(include_timing=False) for name, result in arms.items()},
    }
    if label_free is not None:
        summary["label_free"] = label_free
    if build_comparison is not None:
        summary["build_comparison"] = build_comparison
    summary.update(extra)
    return summary


def _json_safe(value: Any) -> Any:
    """Plain JSON types; NaN and infinities become null (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_json_safe(v) for v in value.tolist()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if value is None or isinstance(value, str):
        return value
    return str(value)


# --------------------------------------------------------------------------- plots
def _png(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def plot_score_histograms(scores: pd.DataFrame, selected: Sequence[bool], columns: Sequence[str] | None = None, bins: int = 40) -> bytes:
    """One panel per score column: selected vs rejected records, on shared bins."""
    selected = np.asarray(selected, dtype=bool)
    if columns is None:
        columns = [
            c for c in scores.columns
            if pd.api.types.is_numeric_dtype(scores[c]) and not pd.api.types.is_bool_dtype(scores[c])
        ]  # fmt: skip
    columns = list(columns)
    n_cols = min(3, max(1, len(columns)))
    n_rows = max(1, math.ceil(len(columns) / n_cols))
    figure = Figure(figsize=(4.2 * n_cols, 3.0 * n_rows))
    for i, column in enumerate(columns):
        axis = figure.add_subplot(n_rows, n_cols, i + 1)
        values = scores[column].to_numpy(dtype=float, na_value=np.nan)
        finite = np.isfinite(values)
        if not finite.any():
            axis.set_title(f"{column} (no finite values)", fontsize=9)
            continue
        edges = np.histogram_bin_edges(values[finite], bins=bins)
        axis.hist(values[finite & ~selected], bins=edges, histtype="stepfilled", alpha=0.6, label="rejected", color="#999999")
        axis.hist(values[finite & selected], bins=edges, histtype="stepfilled", alpha=0.7, label="selected", color=_ARM_COLOURS["selected"])
        axis.set_title(str(column), fontsize=9)
        axis.legend(fontsize=7)
    if not columns:
        figure.add_subplot(1, 1, 1).set_title("no score columns")
    # Fixed spacing rather than tight_layout, whose extra pass of text layout over every panel cost
    # a quarter of the plot; savefig's tight bounding box still trims the margins.
    figure.subplots_adjust(hspace=0.45, wspace=0.25)
    return _png(figure)


def plot_embedding_projection(
    pool_emb: np.ndarray,
    selected: Sequence[bool],
    target_emb: np.ndarray | None = None,
    max_points: int = 5000,
    seed: int = 0,
) -> bytes:
    """PCA to 2-D of pool (not selected), selected and target embeddings, at most ``max_points`` drawn."""
    selected = np.asarray(selected, dtype=bool)
    groups = {"pool": pool_emb[~selected], "selected": pool_emb[selected]}
    if target_emb is not None and len(target_emb):
        groups["target"] = target_emb
    rng = np.random.default_rng(seed)
    per_group = max(1, max_points // len(groups))
    sampled = {
        name: matrix[np.sort(rng.choice(len(matrix), size=per_group, replace=False))] if len(matrix) > per_group else matrix
        for name, matrix in groups.items()
    }
    stacked = np.concatenate([m for m in sampled.values() if len(m)])
    points = PCA(n_components=2, random_state=seed).fit_transform(stacked) if len(stacked) >= 2 else np.zeros((len(stacked), 2))
    figure = Figure(figsize=(6.0, 5.0))
    axis = figure.add_subplot(1, 1, 1)
    styles = {"pool": ("#bbbbbb", 4), "selected": (_ARM_COLOURS["selected"], 5), "target": ("#d95f02", 5)}
    start = 0
    for name, matrix in sampled.items():
        block = points[start : start + len(matrix)]
        start += len(matrix)
        colour, size = styles[name]
        axis.scatter(block[:, 0], block[:, 1], s=size, c=colour, alpha=0.5, label=f"{name} ({len(groups[name])})", linewidths=0)
    axis.set_xlabel("PC 1")
    axis.set_ylabel("PC 2")
    axis.legend(fontsize=8, markerscale=3)
    axis.set_title("Embeddings, PCA projection")
    return _png(figure)


def plot_arm_accuracy(headline: Sequence[dict[str, Any]] | pd.DataFrame) -> bytes:
    """Accuracy per arm with its interval as error bars."""
    table = pd.DataFrame(list(headline) if not isinstance(headline, pd.DataFrame) else headline)
    figure = Figure(figsize=(6.0, 3.6))
    axis = figure.add_subplot(1, 1, 1)
    accuracy = table["accuracy"].to_numpy(dtype=float)
    errors = np.vstack([accuracy - table["accuracy_lo"].to_numpy(dtype=float), table["accuracy_hi"].to_numpy(dtype=float) - accuracy])
    colours = [_ARM_COLOURS.get(arm, "#666666") for arm in table["arm"]]
    positions = np.arange(len(table))
    axis.bar(positions, accuracy, yerr=np.nan_to_num(errors), capsize=4, color=colours)
    axis.set_xticks(positions, [str(a) for a in table["arm"]], rotation=15)
    lowest = np.nanmin(table["accuracy_lo"].to_numpy(dtype=float)) if len(table) else 0.0
    axis.set_ylim(max(0.0, lowest - 0.05) if np.isfinite(lowest) else 0.0, 1.0)
    axis.set_ylabel("accuracy")
    axis.set_title("Accuracy per arm (95% interval)")
    return _png(figure)


def plot_budget_curve(sweep: pd.DataFrame) -> bytes:
    """Accuracy vs budget per arm; random as a shaded band, the full pool as a horizontal line."""
    figure = Figure(figsize=(6.5, 4.2))
    axis = figure.add_subplot(1, 1, 1)
    for arm, rows in sweep[sweep["arm"] != "full"].groupby("arm", sort=False):
        rows = rows.sort_values("budget")
        colour = _ARM_COLOURS.get(arm, None)
        axis.plot(rows["budget"], rows["accuracy"], marker="o", label=arm, color=colour)
        if arm in ("random", "stratified_random"):
            axis.fill_between(rows["budget"], rows["accuracy_lo"], rows["accuracy_hi"], alpha=0.2, color=colour)
    full = sweep[sweep["arm"] == "full"]
    if len(full):
        row = full.iloc[0]
        axis.axhline(float(row["accuracy"]), color=_ARM_COLOURS["full"], linestyle="--", label="full pool")
        if np.isfinite(row["accuracy_lo"]) and np.isfinite(row["accuracy_hi"]):
            axis.axhspan(float(row["accuracy_lo"]), float(row["accuracy_hi"]), color=_ARM_COLOURS["full"], alpha=0.08)
    # Budgets span decades (2.5% .. 50%): log x, ticks at the budgets themselves.
    budgets = np.sort(sweep.loc[sweep["arm"] != "full", "budget"].unique())
    axis.set_xscale("log")
    if len(budgets):
        axis.set_xticks(budgets, [f"{100 * b:g}%" for b in budgets])
        axis.minorticks_off()
    axis.set_xlabel("budget (fraction of the pool)")
    axis.set_ylabel("accuracy")
    axis.set_title("Budget sweep")
    axis.legend(fontsize=8)
    return _png(figure)


# --------------------------------------------------------------------------- html
_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
figure{margin:1em 0}img{max-width:100%}figcaption{font-size:.85em;color:#555}
"""


def _cell(value: Any) -> str:
    if value is None:
        text = ""
    elif isinstance(value, (float, np.floating)):
        text = "" if not math.isfinite(value) else f"{value:.4f}"
    elif isinstance(value, (list, tuple)):
        text = ", ".join(map(str, value))
    else:
        text = str(value)
    return html.escape(text)


def _table_html(frame: pd.DataFrame) -> str:
    header = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>" for row in frame.itertuples(index=False))
    return f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        items: list[tuple[str, Any]] = []
        for key, inner in value.items():
            items.extend(_flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return items
    return [(prefix, value)]


def _by_arm(label_free: dict[str, Any]) -> pd.DataFrame:
    """Label-free metrics as one row per metric and one column per arm (selected, random, full...)."""
    cells: dict[str, dict[str, Any]] = {}
    for group, arms in label_free.items():
        for arm, value in arms.items():
            for name, number in _flatten(value):
                cells.setdefault(f"{group}.{name}" if name else group, {})[arm] = number
    frame = pd.DataFrame.from_dict(cells, orient="index")
    return frame.rename_axis("metric").reset_index()


def _headline_frame(summary: dict[str, Any]) -> pd.DataFrame:
    rows = summary.get("headline", [])
    frame = pd.DataFrame(rows)
    for column in HEADLINE_COLUMNS:
        if column not in frame:
            frame[column] = np.nan
    return frame


def _interval_text(row: Any) -> str:
    def number(v: Any) -> str:
        return "n/a" if v is None or not np.isfinite(float(v)) else f"{float(v):.4f}"

    return f"{number(row['accuracy'])} [{number(row['accuracy_lo'])}, {number(row['accuracy_hi'])}]"


def headline_markdown(summary: dict[str, Any]) -> str:
    """The headline table (arm, accuracy [95% interval], macro-F1, n) as markdown."""
    frame = _headline_frame(summary)
    lines = [f"**{summary['verdict']['sentence']}**", ""] if "verdict" in summary else []
    lines += ["| arm | accuracy [95% CI] | macro-F1 | n |", "|---|---|---|---|"]
    for _, row in frame.iterrows():
        f1 = row["macro_f1"]
        f1_text = "n/a" if f1 is None or not np.isfinite(float(f1)) else f"{float(f1):.4f}"
        arm = str(row["arm"]).replace("|", "\\|")
        n = row["n_train"]
        n_text = str(int(n)) if n is not None and np.isfinite(float(n)) else "n/a"
        lines.append(f"| {arm} | {_interval_text(row)} | {f1_text} | {n_text} |")
    return "\n".join(lines)


def render_html(
    summary: dict[str, Any], tables: dict[str, pd.DataFrame], figures: dict[str, bytes], title: str = "Data selection report"
) -> str:
    """One self-contained page: inline CSS, images as data URIs, every data string escaped."""
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"]  # fmt: skip
    headline = _headline_frame(summary)
    if len(headline):
        shown = pd.DataFrame(
            {
                "arm": headline["arm"],
                "accuracy [95% CI]": [_interval_text(row) for _, row in headline.iterrows()],
                "macro-F1": headline["macro_f1"],
                "n": headline["n_train"],
            }
        )
        verdict = summary.get("verdict")
        parts.append(
            "<h2>Headline</h2>"
            + (f"<p class='verdict'><strong>{html.escape(verdict['sentence'])}</strong></p>" if verdict else "")
            + _table_html(shown)
        )
        parts.append(
            "<p>Intervals: percentile bootstrap (1,000 resamples) over evaluation records for one"
            " trained model; over seeds (the mean of the per-seed accuracies) for random arms.</p>"
        )
    # The headline is above and per-arm details live in summary.json; every other dict gets
    # its own section (label-free metrics, build comparison) and loose scalars share one.
    sections = {k: v for k, v in summary.items() if k not in ("headline", "arms") and isinstance(v, dict)}
    loose = [(k, v) for k, v in summary.items() if k not in ("headline", "arms") and not isinstance(v, dict)]
    for key, value in sections.items():
        frame = _by_arm(value) if key == "label_free" else pd.DataFrame(_flatten(value), columns=["name", "value"])
        parts.append(f"<h2>{html.escape(key.replace('_', ' ').capitalize())}</h2>" + _table_html(frame))
    if loose:
        parts.append("<h2>Details</h2>" + _table_html(pd.DataFrame(loose, columns=["name", "value"])))
    for name, table in tables.items():
        parts.append(f"<h2>{html.escape(name.replace('_', ' ').capitalize())}</h2>" + _table_html(table))
    for name, png in figures.items():
        encoded = base64.b64encode(png).decode("ascii")
        label = html.escape(name)
        parts.append(f"<figure><img alt='{label}' src='data:image/png;base64,{encoded}'><figcaption>{label}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(
    directory: str,
    summary: dict[str, Any],
    tables: dict[str, pd.DataFrame],
    figures: dict[str, bytes],
    title: str = "Data selection report",
) -> ReportPaths:
    """Write ``<name>.png`` per figure, ``report.html`` and ``summary.json``, each atomically."""
    root = as_path(directory)
    figure_paths = {}
    for name, png in figures.items():
        figure_paths[name] = str(atomic_write_bytes(confined(root, f"{safe_name(name)}.png"), png))
    safe_summary = _json_safe(summary)
    json_path = write_json(confined(root, "summary.json"), safe_summary)
    page = render_html(safe_summary, tables, figures, title)
    html_path = atomic_write_bytes(confined(root, "report.html"), page.encode("utf-8"))
    return ReportPaths(html=str(html_path), summary_json=str(json_path), figures=figure_paths)
