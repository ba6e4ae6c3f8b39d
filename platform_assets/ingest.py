"""raw_pool (per shard) and target_reference: parse, normalise, validate, quarantine."""

import numpy as np
from dagster import AssetExecutionContext, DataVersion, Failure, MaterializeResult, MetadataValue, RetryPolicy, asset

from dataselect import records as cols
from dataselect.embedding import vectors_to_arrow
from dataselect.ingest import ShardReadError, list_landing_files, read_reference, read_shard
from dataselect.storage import write_parquet
from platform_assets.metadata import table_preview
from platform_assets.partitions import GPU_POOL, shards
from resources import EmbeddingResource, InputsResource, StorageResource


@asset(
    partitions_def=shards,
    group_name="ingest",
    kinds={"python", "parquet"},
    retry_policy=RetryPolicy(max_retries=2, delay=2),
    description="One landing shard parsed, normalised (NFC, control characters stripped) and validated. "
    "Bad lines go to the shard's quarantine table with their error; parsing never stops at the first bad line.",
)
def raw_pool(context: AssetExecutionContext, inputs: InputsResource, storage: StorageResource) -> MaterializeResult:
    key = context.partition_key
    files = {f.key: f for f in list_landing_files(inputs.landing())}
    if key not in files:
        raise Failure(f"shard {key!r}: no landing file for it under {inputs.landing()}")
    landing = files[key]
    try:
        result = read_shard(landing.path, key)
    except ShardReadError as error:
        raise Failure(f"shard {key!r}: {error}") from error
    file_meta = {"fingerprint": landing.fingerprint, "source": str(landing.path), "raw_count": str(result.raw_count)}
    write_parquet(storage.shard_file("raw_pool", key), result.records, file_meta)
    write_parquet(storage.shard_file("quarantine", key), result.quarantine, file_meta)
    return MaterializeResult(
        data_version=DataVersion(landing.fingerprint),
        metadata={
            "dagster/row_count": result.records.num_rows,
            "quarantined": result.quarantine.num_rows,
            "raw_count": result.raw_count,
            "source_file": MetadataValue.path(str(landing.path)),
            "fingerprint": landing.fingerprint,
            "path": MetadataValue.path(str(storage.shard_file("raw_pool", key))),
            "quarantine_preview": MetadataValue.md(table_preview(result.quarantine.to_pandas(), ["row", "id", "error"])),
        },
    )


@asset(
    group_name="ingest",
    kinds={"python", "parquet"},
    pool=GPU_POOL,
    description="The target reference set (examples of what the model should be good at), normalised like the pool, "
    "with its embeddings from the same embedding backend as the pool.",
)
def target_reference(inputs: InputsResource, storage: StorageResource, embedding: EmbeddingResource) -> MaterializeResult:
    reference = read_reference(inputs.reference())
    texts = reference.records.column(cols.TEXT).to_pylist()
    embedder = embedding.get_embedder()
    vectors = embedder.embed(texts) if texts else np.zeros((0, embedder.dim), np.float32)
    write_parquet(storage.path("reference", "target.parquet"), reference.records)
    write_parquet(
        storage.path("reference", "target_embeddings.parquet"),
        vectors_to_arrow(reference.records.column(cols.ID).to_pylist(), vectors),
        {"backend": embedder.name},
    )
    return MaterializeResult(
        metadata={
            "dagster/row_count": reference.records.num_rows,
            "dropped_invalid": reference.quarantine.num_rows,
            "embedding_backend": embedder.name,
            "source": MetadataValue.path(str(inputs.reference())),
        }
    )


@asset(
    deps=[raw_pool, target_reference],
    group_name="ingest",
    kinds={"python", "parquet"},
    description="The optional labelled target evaluation set, normalised; used only by the evaluation report. "
    "A blocking check proves it shares no id and no content hash with the pool or the reference.",
)
def evaluation_set(inputs: InputsResource, storage: StorageResource) -> MaterializeResult:
    path = inputs.evaluation()
    if path is None:
        records = read_reference_schema()
        dropped = 0
    else:
        result = read_reference(path)
        records, dropped = result.records, result.quarantine.num_rows
    write_parquet(storage.path("reference", "evaluation.parquet"), records)
    labels = records.column(cols.LABEL).to_pylist() if records.num_rows else []
    return MaterializeResult(
        metadata={
            "dagster/row_count": records.num_rows,
            "dropped_invalid": dropped,
            "labels": MetadataValue.json(sorted({str(label) for label in labels if label is not None})),
            "source": str(path) if path is not None else "none configured",
        }
    )


def read_reference_schema():
    """An empty evaluation table, so downstream code sees one shape with or without an eval set."""
    from dataselect.ingest import RECORD_SCHEMA

    return RECORD_SCHEMA.empty_table()
