"""Great Expectations 1.x suites run in one ephemeral context, mapped to Dagster check results.

dagster-ge does not support GX 1.x, so checks call GX directly: one pandas data source,
a whole-dataframe batch, a suite and a validation definition per check call.
"""

import os
import uuid
from functools import lru_cache

import pandas as pd
from dagster import AssetCheckResult, AssetCheckSeverity, MetadataValue

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")


@lru_cache(maxsize=1)
def _context():
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


SHOWN_IDS = 5  # offending ids named in a check's description; the metadata keeps up to 20


def validate(
    frame: pd.DataFrame,
    expectations: list,
    suite_name: str,
    severity=AssetCheckSeverity.ERROR,
    metadata: dict | None = None,
    id_column: str | None = None,
) -> AssetCheckResult:
    """Run ``expectations`` on ``frame`` and report each expectation's outcome as metadata.

    A failed expectation is described by its ``description`` (what an offending row is), the
    count and, when ``frame`` has ``id_column``, the first offending ids, e.g.
    ``12 evaluation records also in the pool: e3, e17, ...``.
    """
    import great_expectations as gx

    context = _context()
    unique = f"{suite_name}-{uuid.uuid4().hex[:8]}"
    source = context.data_sources.add_pandas(unique)
    batch = source.add_dataframe_asset("frame").add_batch_definition_whole_dataframe("whole")
    suite = context.suites.add(gx.ExpectationSuite(name=unique, expectations=expectations))
    validation = context.validation_definitions.add(gx.ValidationDefinition(name=unique, data=batch, suite=suite))
    result_format = {"result_format": "SUMMARY", "partial_unexpected_count": 20}
    if id_column is not None and id_column in frame.columns:
        result_format["unexpected_index_column_names"] = [id_column]
    try:
        result = validation.run(batch_parameters={"dataframe": frame}, result_format=result_format)
    finally:
        context.validation_definitions.delete(unique)
        context.suites.delete(unique)
        context.data_sources.delete(unique)
    outcomes, problems = {}, []
    for item in result.results:
        config = item.expectation_config
        label = f"{config.type}({config.kwargs.get('column', '')})"
        rows = item.result.get("partial_unexpected_index_list") or [] if "unexpected_index_column_names" in result_format else []
        offending_ids = [_plain(row.get(id_column)) for row in rows]
        outcomes[label] = {
            "success": bool(item.success),
            "unexpected_count": item.result.get("unexpected_count"),
            "observed_value": _plain(item.result.get("observed_value")),
            "unexpected_examples": [_plain(v) for v in (item.result.get("partial_unexpected_list") or [])[:5]],
            **({"unexpected_ids": offending_ids} if offending_ids else {}),
        }
        if not item.success:
            problems.append(_problem(config.description or label, outcomes[label], offending_ids))
    return AssetCheckResult(
        passed=bool(result.success),
        severity=severity,
        description=f"GX suite {suite_name}: all expectations met" if not problems else "; ".join(problems),
        metadata={"expectations": MetadataValue.json(outcomes), "rows_checked": len(frame), **(metadata or {})},
    )


def _problem(what: str, outcome: dict, offending_ids: list) -> str:
    """One failed expectation in words: ``3 records with empty text: a, b, c`` or ``what (observed 7)``."""
    count = outcome["unexpected_count"]
    if count is None:  # a table-level expectation (row count): no rows to name
        return f"{what} (observed {outcome['observed_value']})"
    shown = ", ".join(str(i) for i in offending_ids[:SHOWN_IDS])
    more = ", …" if count > SHOWN_IDS and shown else ""
    return f"{count} {what}" + (f": {shown}{more}" if shown else "")


def _plain(value):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, float) and value != value:
        return None
    return value if isinstance(value, (str, int, float, bool, type(None), list, dict)) else str(value)
