"""Dagster resources: where files live, where inputs come from, and the embedding model."""

from resources.embedding import EmbeddingResource
from resources.storage import InputsResource, StorageResource

__all__ = ["EmbeddingResource", "InputsResource", "StorageResource"]
