"""Records the embedding model cannot represent.

A text made only of tokens the model does not know (one 900,000-character "word", a string
of symbols outside the vocabulary) has no token vector to average, so the static backend
gives it the zero vector. Such a record has no place in embedding space: relevance,
semantic deduplication and the cluster policies would treat it as if it sat at the
origin. It is rejected here, with a reason, instead of failing its shard's embedding check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from dataselect.embedding import represented
from dataselect.scorers.base import Batch, Scorer

NO_EMBEDDING = "no embedding: the embedding model knows none of its tokens"


class Embeddable(Scorer):
    """``keep`` (False where the embedding is the zero vector) and ``reason``."""

    name: ClassVar[str] = "embeddable"
    kind: ClassVar[str] = "quality"  # no embedding: as unusable as junk
    stage: ClassVar[str] = "shard"
    needs_embeddings: ClassVar[bool] = True

    @dataclass
    class Config:
        pass

    def score(self, batch: Batch) -> dict[str, np.ndarray]:
        keep = represented(batch.embeddings)
        return {"keep": keep, "reason": np.where(keep, "", NO_EMBEDDING).astype(object)}
