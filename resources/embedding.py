"""The embedding model behind a resource: one model load per process, device chosen once.

``backend="auto"`` takes the real sentence-transformer on a CUDA device and the static
(model2vec-distilled) embeddings of the same model on CPU, where the transformer manages only
about a dozen long documents per second on two cores.
"""

from dagster import ConfigurableResource
from pydantic import PrivateAttr

from dataselect.embedding import make_embedder
from resources.settings import setting


class EmbeddingResource(ConfigurableResource):
    backend: str | None = None  # "auto" | "transformer" | "static"; unset: $DATASELECT_EMBEDDING_BACKEND, else auto
    device: str | None = None  # "auto" | "cpu" | "cuda"; unset: $DATASELECT_DEVICE, else auto
    batch_size: int = 64
    max_tokens: int = 256
    static_dims: int = 256

    _embedder = PrivateAttr(default=None)

    def get_embedder(self):
        if self._embedder is None:
            self._embedder = make_embedder(
                setting(self.backend, "DATASELECT_EMBEDDING_BACKEND"),
                device=setting(self.device, "DATASELECT_DEVICE"),
                batch_size=self.batch_size,
                max_tokens=self.max_tokens,
                pca_dims=self.static_dims,
            )
        return self._embedder
