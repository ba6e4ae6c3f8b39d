"""The scorer interface: one selection signal, scikit-learn style.

A scorer has a typed ``Config`` dataclass (hyper-parameters with documented defaults),
an optional ``fit(pool, target)`` on a bounded pool sample and the target reference, and
``score(batch) -> {column: array}``. Columns are named ``"<scorer name>.<column>"`` by
:func:`prefixed` so scores from many scorers sit side by side in one table.

Conventions the selector relies on:
- ``<name>.keep`` (bool): a hard filter. False rejects the record before any budget logic.
- ``<name>.reason`` (str): why a record failed ``keep`` ("" when it passed).
- ``<name>.score`` (float): a soft score, higher is better, used by fusion.
- ``<name>.group`` (int64): a duplicate/cluster group id when the scorer forms groups.

Each scorer declares what it needs and what it is, so callers never special-case a name:
``needs_embeddings``, ``needs_text`` (a pool scorer that reads every text), ``needs_fit``,
``device`` (``"gpu"`` when its fit trains a model that wants the accelerator), ``kind`` (what
its ``keep`` rejects or its score measures: ``"quality"``, ``"duplicates"``, ``"relevance"``,
``"label_noise"``, ``"ids"``) and ``library`` (what computes it, shown as the model's kind).

``stage`` says where a scorer runs:
- ``"shard"``: per record, from the record alone (plus fitted state). Runs in the per-shard
  ``quality_scores`` asset, so refreshing one shard never rescores the others.
- ``"pool"``: needs all records at once (duplicates across shards, clusters, label noise).
  Runs in the global selection step on compact per-record columns (ids, hashes, signatures,
  embeddings, labels, earlier scores), never on the text of every shard.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dataselect import ngrams

# Text bytes up to which a batch keeps its tokens for every n-gram scorer that reads them (a
# 10k-record shard of mail text is ~16 MB, its tokens ~60 MB); a larger batch, e.g. a whole pool,
# lets each scorer cut its own, one slice at a time, as memory then counts for more than time.
SHARED_TOKEN_BYTES = 64 << 20


class StoredColumns(Protocol):
    """Columns of the records left in their files, read whole when asked for (e.g. :class:`dataselect.shard_pool.ShardColumns`)."""

    names: list[str]

    def field(self, name: str) -> pa.Field: ...

    def read(self, name: str) -> pa.ChunkedArray: ...

    def matrix(self, name: str, dtype: np.dtype) -> np.ndarray: ...


@dataclass
class Batch:
    """Records plus, when a scorer needs them, their row-aligned unit-norm embeddings.

    ``stored``: more columns of the same records, left in their files until a scorer reads them with
    :meth:`column_array` (the pool's MinHash signatures are 0.5 GB at 1M records, read only while
    ``near_dup`` runs)."""

    records: pa.Table
    embeddings: np.ndarray | None = None
    stored: StoredColumns | None = None
    _tokens: dict = dataclasses.field(default_factory=dict, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return self.records.num_rows

    @property
    def column_names(self) -> list[str]:
        names = self.records.column_names
        return names + [n for n in self.stored.names if n not in names] if self.stored is not None else names

    def field(self, name: str) -> pa.Field:
        return self.records.schema.field(name) if self._in_records(name) else self.stored.field(name)

    def column_array(self, name: str) -> pa.ChunkedArray:
        """One column, read from its files when it was left there (not kept: the caller holds it while it needs it)."""
        return self.records.column(name) if self._in_records(name) else self.stored.read(name)

    def stored_matrix(self, name: str, dtype: np.dtype) -> np.ndarray | None:
        """A stored fixed-size list column as an (n, width) array, filled one file at a time (no second
        copy of the whole column); None when the column is among ``records``."""
        return None if self._in_records(name) else self.stored.matrix(name, dtype)

    def _in_records(self, name: str) -> bool:
        return name in self.records.column_names or self.stored is None

    def column(self, name: str) -> np.ndarray:
        return self.records.column(name).to_numpy(zero_copy_only=False)

    @property
    def texts(self) -> list[str]:
        return self.records.column("text").to_pylist()

    @property
    def text_array(self) -> pa.Array:
        """The texts as one Arrow array, for vectorised string kernels (no Python strings)."""
        return self.records.column("text").combine_chunks()

    def tokens(self, lowercase: bool = True, threads: int | None = None) -> ngrams.Tokenized | pa.Array:
        """What the n-gram featurisers of :mod:`dataselect.ngrams` read: the texts' tokens, cut on the
        first call and shared by the scorers after it (DSIR, the n-gram classifier, the label
        classifier and decontamination each cut the same tokens otherwise), or for a batch of more
        than :data:`SHARED_TOKEN_BYTES` of text, the texts themselves."""
        if lowercase in self._tokens:
            return self._tokens[lowercase]
        texts = self.text_array
        if (pc.sum(pc.binary_length(texts)).as_py() or 0) > SHARED_TOKEN_BYTES:
            return texts
        self._tokens[lowercase] = ngrams.tokenize(texts, lowercase, threads)
        return self._tokens[lowercase]


class Scorer:
    """Base class. Subclasses set ``name`` and ``Config`` and implement :meth:`score`."""

    name: ClassVar[str]
    kind: ClassVar[str]
    stage: ClassVar[str] = "shard"
    needs_embeddings: ClassVar[bool] = False
    needs_text: ClassVar[bool] = False
    needs_fit: ClassVar[bool] = False
    device: ClassVar[str] = "cpu"
    library: ClassVar[str] = "numpy"

    @dataclass
    class Config:
        pass

    def __init__(self, config: Any = None, **overrides: Any):
        base = config if config is not None else self.Config()
        self.config = dataclasses.replace(base, **overrides) if overrides else base

    # Pool records drawn for fit() by the platform's model assets (FitConfig.sample_size overrides it).
    fit_sample_size: ClassVar[int] = 5_000

    def fit(self, pool: Batch, target: Batch) -> "Scorer":
        return self

    def needs_text_given(self, columns: list[str]) -> bool:
        """Whether a pool scorer reads every text when the scores carry ``columns`` (some read a
        per-shard column instead when it is there)."""
        return self.needs_text

    def column_metadata(self) -> dict[str, dict[str, str]]:
        """Arrow field metadata of output columns, by unprefixed name (e.g. a probability vector's classes)."""
        return {}

    def score(self, batch: Batch) -> dict[str, np.ndarray]:
        raise NotImplementedError

    # Fitted state is saved as JSON (config, scalars) + safetensors (arrays); never pickle.
    def state_arrays(self) -> dict[str, np.ndarray]:
        return {}

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        pass

    def save(self, directory: str | Path) -> None:
        from safetensors.numpy import save_file

        from dataselect.storage import atomic_write_bytes

        directory = str(directory).rstrip("/")
        meta = {"scorer": self.name, "config": dataclasses.asdict(self.config)}
        atomic_write_bytes(f"{directory}/{self.name}.json", json.dumps(meta, indent=2).encode())
        arrays = {k: np.ascontiguousarray(v) for k, v in self.state_arrays().items()}
        if arrays:
            import tempfile

            with tempfile.NamedTemporaryFile(suffix=".safetensors") as tmp:
                save_file(arrays, tmp.name)
                atomic_write_bytes(f"{directory}/{self.name}.safetensors", Path(tmp.name).read_bytes())

    @classmethod
    def load(cls, directory: str | Path) -> "Scorer":
        return cls.load_versioned(directory)[0]

    @classmethod
    def load_versioned(cls, directory: str | Path) -> tuple["Scorer", str]:
        """The fitted scorer and its version: a digest of the very bytes it was loaded from, so a
        refit that lands between reading and hashing cannot go unnoticed."""
        from safetensors.numpy import load

        from dataselect.storage import exists, read_bytes

        directory = str(directory).rstrip("/")
        meta = read_bytes(f"{directory}/{cls.name}.json")
        tensors = f"{directory}/{cls.name}.safetensors"
        arrays = read_bytes(tensors) if exists(tensors) else b""
        digest = hashlib.blake2b(digest_size=16)
        for part in (meta, arrays):
            digest.update(len(part).to_bytes(8, "little") + part)
        scorer = cls(cls.Config(**json.loads(meta)["config"]))
        if arrays:
            scorer.load_state_arrays(load(arrays))
        return scorer, digest.hexdigest()


def prefixed(name: str, columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``{"keep": a}`` -> ``{"<name>.keep": a}``."""
    return {f"{name}.{key}": value for key, value in columns.items()}
