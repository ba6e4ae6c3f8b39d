"""The embedding model behind a resource: one model load per process, device chosen once.

``backend="auto"`` takes the real sentence-transformer on a CUDA device and the static
(model2vec-distilled) embeddings of the same model on CPU, where the transformer manages only
about a dozen long documents per second on two cores.
"""

from functools import lru_cache

from dagster import ConfigurableResource

from dataselect.embedding import default_static_cache_dir, make_embedder
from resources.settings import setting


@lru_cache(maxsize=4)
def _embedder(backend: str, device: str, batch_size: int, max_tokens: int, static_dims: int, cache_dir: str):
    # Dagster builds a resource per run; the model is loaded once per process and settings.
    return make_embedder(backend, device=device, batch_size=batch_size, max_tokens=max_tokens, pca_dims=static_dims, cache_dir=cache_dir)


class EmbeddingResource(ConfigurableResource):
    backend: str | None = None  # "auto" | "transformer" | "static"; unset: $DATASELECT_EMBEDDING_BACKEND, else auto
    device: str | None = None  # "auto" | "cpu" | "cuda"; unset: $DATASELECT_DEVICE, else auto
    batch_size: int = 64
    max_tokens: int = 256
    static_dims: int = 256

    def get_embedder(self):
        return _embedder(
            setting(self.backend, "DATASELECT_EMBEDDING_BACKEND"),
            setting(self.device, "DATASELECT_DEVICE"),
            self.batch_size,
            self.max_tokens,
            self.static_dims,
            str(default_static_cache_dir(self.static_dims)),  # $DATASELECT_CACHE, read at use time
        )
