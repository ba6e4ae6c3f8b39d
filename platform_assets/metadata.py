"""Small helpers that turn tables and images into metadata the Dagster UI renders."""

import base64

import pandas as pd


def table_preview(frame: pd.DataFrame, columns: list[str], limit: int = 10) -> str:
    """A markdown table of the first rows (empty-table note when there are none)."""
    if frame.empty:
        return "_none_"
    shown = frame[[c for c in columns if c in frame.columns]].head(limit)
    shown = shown.astype(object).where(shown.notna(), "").astype(str)
    shown = shown.apply(lambda column: column.str.slice(0, 120).str.replace("|", "\\|").str.replace("\n", " "))
    header = "| " + " | ".join(shown.columns) + " |\n|" + "---|" * len(shown.columns) + "\n"
    rows = "".join("| " + " | ".join(row) + " |\n" for row in shown.itertuples(index=False))
    more = f"\n_{len(frame) - limit} more rows_" if len(frame) > limit else ""
    return header + rows + more


def png_markdown(title: str, png: bytes) -> str:
    """An inline image the asset's metadata panel shows."""
    return f"![{title}](data:image/png;base64,{base64.b64encode(png).decode()})"
