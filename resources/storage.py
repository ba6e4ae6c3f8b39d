"""Storage roots and input locations, as configurable resources.

Paths are UPath-compatible strings, so ``s3://bucket/prefix`` works like a local folder.
Object-store credentials never come from files in the repository: either fsspec reads them
from the environment itself (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` for S3), or
``StorageResource.storage_options`` passes them explicitly, each value a Dagster ``EnvVar``
so that only the variable's name is stored in run config and shown in the UI.

Every derived path goes through :func:`dataselect.storage.confined`, so a shard key or
build id cannot point outside the storage root.
"""

import numpy as np
from dagster import ConfigurableResource
from pydantic import Field
from upath import UPath

from dataselect.storage import as_path, confined, parquet_num_rows, safe_name
from resources.settings import setting


class StorageResource(ConfigurableResource):
    """Where every asset writes its Parquet/JSON files."""

    root: str | None = Field(None, description="A folder or fsspec URL; unset: $DATASELECT_STORE, else data/store.")
    storage_options: dict[str, str] = Field(
        default_factory=dict,
        description="fsspec options for a URL root (e.g. {'key': EnvVar('AWS_ACCESS_KEY_ID'), "
        "'secret': EnvVar('AWS_SECRET_ACCESS_KEY')} for s3://). Pass secrets only as EnvVar, never as literals.",
    )

    def root_path(self) -> UPath:
        """The root as a UPath, carrying ``storage_options`` when the root is a URL."""
        root = setting(self.root, "DATASELECT_STORE")
        if "://" in root and self.storage_options:
            return UPath(root, **self.storage_options)
        return as_path(root)

    def path(self, *parts: str) -> UPath:
        return confined(self.root_path(), *parts)

    def shard_file(self, asset: str, shard: str) -> UPath:
        return self.path(asset, f"{safe_name(shard)}.parquet")

    def shard_files(self, asset: str) -> dict[str, UPath]:
        folder = self.path(asset)
        if not folder.exists():
            return {}
        return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix == ".parquet" and not p.name.startswith(".")}

    def read_shard(self, asset: str, shard: str, columns: list[str] | None = None):
        from dataselect.storage import read_parquet

        return read_parquet(self.shard_file(asset, shard), columns=columns)

    def read_embeddings(self, shard: str):
        """One shard's vectors as an (n, dim) float32 array, row-aligned with its raw_pool records."""
        return _read_vectors(self.shard_file("embeddings", shard))

    def read_pool_embeddings(self, shards: list[str]):
        """The shards' vectors stacked in order, filled into one array: a concatenation would hold
        every shard's copy beside the result (2 GB at 1M records of 256 floats)."""
        if not shards:
            raise ValueError("no shards to read embeddings of")
        total = sum(parquet_num_rows(self.shard_file("embeddings", k)) for k in shards)  # footers only
        vectors, at = None, 0
        for shard in shards:
            part = self.read_embeddings(shard)
            if vectors is None:
                vectors = np.empty((total, part.shape[1]), part.dtype)
            vectors[at : at + len(part)] = part
            at += len(part)
        if at != total:  # a shard rewritten between the footers and the reads
            raise ValueError(f"the embeddings files hold {total} rows, their vectors {at}")
        return vectors

    def read_target(self):
        """The target reference records and their embeddings."""
        from dataselect.storage import read_parquet

        return read_parquet(self.path("reference", "target.parquet")), _read_vectors(self.path("reference", "target_embeddings.parquet"))

    def model_dir(self, scorer_name: str) -> UPath:
        return self.path("models", safe_name(scorer_name))


class InputsResource(ConfigurableResource):
    """The landing folder of raw shards, the target reference and the optional evaluation set."""

    landing_dir: str | None = Field(None, description="Unset: $DATASELECT_LANDING, else data/landing.")
    reference_path: str | None = Field(None, description="Unset: $DATASELECT_REFERENCE, else data/reference.jsonl.")
    evaluation_path: str | None = Field(None, description="Unset: $DATASELECT_EVAL, else data/eval.jsonl; empty: no evaluation set.")

    def landing(self) -> UPath:
        return as_path(setting(self.landing_dir, "DATASELECT_LANDING"))

    def reference(self) -> UPath:
        return as_path(setting(self.reference_path, "DATASELECT_REFERENCE"))

    def evaluation(self) -> UPath | None:
        location = setting(self.evaluation_path, "DATASELECT_EVAL")
        if not location:
            return None
        path = as_path(location)
        return path if path.exists() else None


def _read_vectors(path: UPath):
    from dataselect.embedding import arrow_to_vectors
    from dataselect.storage import read_parquet

    return arrow_to_vectors(read_parquet(path))[1]
