"""Dagster resources: where files live, where inputs come from, and the embedding model."""

from resources.embedding import EmbeddingResource
from resources.storage import InputsResource, StorageResource


def make_resources(
    landing_dir: str | None = None,
    reference_path: str | None = None,
    evaluation_path: str | None = None,
    store: str | None = None,
    embedding_backend: str | None = None,
) -> dict:
    """The platform's resources; a setting left as None is read from the environment when used."""
    return {
        "inputs": InputsResource(landing_dir=landing_dir, reference_path=reference_path, evaluation_path=evaluation_path),
        "storage": StorageResource(root=store),
        "embedding": EmbeddingResource(backend=embedding_backend),
    }


__all__ = ["EmbeddingResource", "InputsResource", "StorageResource", "make_resources"]
