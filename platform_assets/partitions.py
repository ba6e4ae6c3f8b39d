"""One dynamic partition per landing file; the landing sensor adds keys as files arrive."""

from dagster import DynamicPartitionsDefinition

shards = DynamicPartitionsDefinition(name="shards")
