"""How the work is split: one dynamic partition per landing file (the landing sensor adds keys as
files arrive), and the one concurrency pool, for the steps that may hold the GPU."""

from dagster import DynamicPartitionsDefinition

shards = DynamicPartitionsDefinition(name="shards")

GPU_POOL = "gpu"  # embeddings, the target's embedding, the report, GPU scorers: one step at a time on a GPU
