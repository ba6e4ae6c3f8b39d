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


def validate(frame: pd.DataFrame, expectations: list, suite_name: str, severity=AssetCheckSeverity.ERROR, metadata: dict | None = None) -> AssetCheckResult:
    """Run ``expectations`` on ``frame`` and report each expectation's outcome as metadata."""
    import great_expectations as gx

    context = _context()
    unique = f"{suite_name}-{uuid.uuid4().hex[:8]}"
    source = context.data_sources.add_pandas(unique)
    batch = source.add_dataframe_asset("frame").add_batch_definition_whole_dataframe("whole")
    suite = context.suites.add(gx.ExpectationSuite(name=unique, expectations=expectations))
    validation = context.validation_definitions.add(gx.ValidationDefinition(name=unique, data=batch, suite=suite))
    try:
        result = validation.run(batch_parameters={"dataframe": frame})
    finally:
        context.validation_definitions.delete(unique)
        context.suites.delete(unique)
        context.data_sources.delete(unique)
    outcomes = {}
    for item in result.results:
        config = item.expectation_config
        label = f"{config.type}({config.kwargs.get('column', '')})"
        outcomes[label] = {
            "success": bool(item.success),
            "unexpected_count": item.result.get("unexpected_count"),
            "observed_value": _plain(item.result.get("observed_value")),
            "unexpected_examples": [_plain(v) for v in (item.result.get("partial_unexpected_list") or [])[:5]],
        }
    failed = [label for label, outcome in outcomes.items() if not outcome["success"]]
    return AssetCheckResult(
        passed=bool(result.success),
        severity=severity,
        description=f"GX suite {suite_name}: " + ("all expectations met" if not failed else f"failed {failed}"),
        metadata={"expectations": MetadataValue.json(outcomes), "rows_checked": len(frame), **(metadata or {})},
    )


def _plain(value):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, float) and value != value:
        return None
    return value if isinstance(value, (str, int, float, bool, type(None), list, dict)) else str(value)
