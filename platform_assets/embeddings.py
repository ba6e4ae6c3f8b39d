"""embeddings (per shard): unit-norm float32 vectors through the embedding resource."""

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, RetryPolicy, asset

from dataselect import records as cols
from dataselect.embedding import vectors_to_arrow
from dataselect.pipeline import records_fingerprint
from dataselect.storage import exists, parquet_metadata, read_parquet, write_parquet
from platform_assets.ingest import raw_pool
from platform_assets.partitions import GPU_POOL, shards
from resources import EmbeddingResource, StorageResource


@asset(
    partitions_def=shards,
    deps=[raw_pool],
    pool=GPU_POOL,
    group_name="embed",
    kinds={"pytorch", "parquet"},
    retry_policy=RetryPolicy(max_retries=2, delay=5),
    description="Sentence embeddings of one shard (unit-norm float32). Skips the model entirely when the shard's "
    "records and the backend are unchanged since the last materialization.",
)
def embeddings(context: AssetExecutionContext, embedding: EmbeddingResource, storage: StorageResource) -> MaterializeResult:
    key = context.partition_key
    records = read_parquet(storage.shard_file("raw_pool", key), columns=[cols.ID, cols.TEXT, cols.CONTENT_HASH])
    source = records_fingerprint(records)
    embedder = embedding.get_embedder()
    target = storage.shard_file("embeddings", key)
    previous = parquet_metadata(target) if exists(target) else {}
    reused = previous.get("source") == source and previous.get("backend") == embedder.name
    if not reused:
        vectors = embedder.embed(records.column(cols.TEXT).to_pylist())
        table = vectors_to_arrow(records.column(cols.ID).to_pylist(), vectors)
        write_parquet(target, table, {"source": source, "backend": embedder.name, "dim": str(embedder.dim)})
    context.log.info(f"shard {key}: {'reused' if reused else 'embedded'} {records.num_rows} records with {embedder.name}")
    return MaterializeResult(
        metadata={
            "dagster/row_count": records.num_rows,
            "records_embedded": 0 if reused else records.num_rows,
            "reused_previous": reused,
            "backend": embedder.name,
            "device": str(getattr(embedder, "device", "cpu")),
            "dim": embedder.dim,
            "path": MetadataValue.path(str(target)),
        }
    )
