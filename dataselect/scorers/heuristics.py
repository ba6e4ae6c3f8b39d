"""Rule-based quality filters in the style of Gopher, C4 and FineWeb.

Sources of the rules and their default thresholds:
- Gopher (Rae et al. 2021, "Scaling Language Models: Methods, Analysis & Insights from
  Training Gopher", appendix A.1.1): word count 50..100,000, mean word length 3..10,
  symbol (``#``, ``...``) to word ratio <= 0.1, >= 80% of words with an alphabetic
  character, at least 2 stop words from {the, be, to, of, and, that, have, with},
  duplicate-line fraction <= 0.30, lines ending with an ellipsis <= 0.30.
- C4 (Raffel et al. 2020, "Exploring the Limits of Transfer Learning ...", section 2.2):
  pages containing "lorem ipsum" are dropped; lines mentioning javascript are removed, and so
  are pages with the policy phrases "terms of use", "privacy policy", "cookie policy", "uses
  cookies", "use of cookies" and "use cookies". We score the fraction of lines with any of them.
- FineWeb (Penedo et al. 2024) re-uses the Gopher repetition rules; the non-alphanumeric
  character fraction and the longest-token limit are the usual "symbol soup" / encoded-blob
  guards (base64, hex, uuencode), with thresholds checked against 20 Newsgroups.

Every statistic is computed for the whole batch at once with Arrow's RE2 string kernels
(``pyarrow.compute``) and numpy; there is no Python loop over words or lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from dataselect.scorers.base import Batch, Scorer

# Gopher's stop-word list; matched as whole lower-cased words.
GOPHER_STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
# C4's boilerplate markers (javascript warnings, cookie banners, legal footers), plus "terms of
# service". C4's phrases, not the bare word "cookie": that one dropped 18 of the 914 clean kitchen
# reviews (cookie sheets, cookie cutters) in the multi-domain sentiment benchmark's pool.
C4_BOILERPLATE_PATTERN = r"(?i)javascript|cookie policy|uses? cookies|use of cookies|privacy policy|terms of (?:use|service)"


def _per_text(values: np.ndarray, parents: np.ndarray, n: int) -> np.ndarray:
    """Sum per-line values into per-text totals."""
    return np.bincount(parents, weights=values.astype(np.float64), minlength=n)


class HeuristicRules(Scorer):
    """Gopher/C4/FineWeb rules: per rule ``<rule>`` and ``<rule>_pass``, then keep/reason/score."""

    name: ClassVar[str] = "heuristics"
    kind: ClassVar[str] = "quality"
    stage: ClassVar[str] = "shard"

    @dataclass
    class Config:
        """Thresholds; a record is kept only if it passes every rule."""

        # Gopher uses 50; Usenet/e-mail posts are short (5% of 20 Newsgroups posts have < 54 words
        # including headers), so 30 keeps real short replies while still dropping stubs.
        min_words: int = 30
        max_words: int = 100_000  # Gopher
        min_mean_word_length: float = 3.0  # Gopher
        max_mean_word_length: float = 10.0  # Gopher
        max_symbol_word_ratio: float = 0.1  # Gopher: ('#' and '...' runs) / words
        # Gopher uses 0.8; quote markers ('>'), e-mail headers and signature boxes are words
        # without letters, so 0.7 (about the 1st percentile of 20 Newsgroups posts) is used.
        min_alpha_word_fraction: float = 0.7
        min_stop_words: int = 2  # Gopher: occurrences of GOPHER_STOP_WORDS
        max_duplicate_line_fraction: float = 0.3  # Gopher: over non-blank lines
        max_ellipsis_line_fraction: float = 0.3  # Gopher: lines ending in '...' or '…'
        max_lorem_ipsum: int = 0  # C4: any "lorem ipsum" drops the page
        max_boilerplate_line_fraction: float = 0.2  # C4 markers; lines not whole pages, so a fraction
        # Non-whitespace characters that are neither letters nor digits. Newsgroup posts with
        # quoting ('>') and e-mail headers sit at 5-25% (99th percentile 0.35); symbol soup > 0.6.
        max_non_alnum_fraction: float = 0.4
        # Longest whitespace-free token. Newsgroup separators and URLs stay under 100 characters
        # (99.9% of 20 Newsgroups training posts); base64/hex blobs on one line exceed it.
        max_longest_word: int = 100

    def statistics(self, texts: pa.Array) -> dict[str, np.ndarray]:
        """The raw per-text statistic of every rule (in rule order)."""
        n = len(texts)
        texts = pc.fill_null(texts, "")

        # Word statistics: split the whole batch once into whitespace tokens (Gopher's words).
        token_lists = pc.utf8_split_whitespace(texts)
        tokens = pc.list_flatten(token_lists)
        token_parents = np.array(pc.list_parent_indices(token_lists), dtype=np.int64)
        token_lengths = pc.utf8_length(tokens).to_numpy()
        # Leading whitespace and empty texts yield empty tokens; they are not words.
        words = np.bincount(token_parents, weights=token_lengths > 0, minlength=n)
        safe_words = np.maximum(words, 1.0)
        word_chars = np.bincount(token_parents, weights=token_lengths, minlength=n)
        has_alpha = pc.match_substring_regex(tokens, r"\pL").to_numpy(zero_copy_only=False)
        alpha_words = np.bincount(token_parents, weights=has_alpha, minlength=n)
        longest = np.zeros(n, dtype=np.int64)
        if len(token_lengths):
            # Tokens of one text are contiguous, so a segmented max over text starts suffices.
            starts = np.flatnonzero(np.r_[True, token_parents[1:] != token_parents[:-1]])
            longest[token_parents[starts]] = np.maximum.reduceat(token_lengths, starts)

        # A run ("###", "......") counts once: signature art and trailing dots are one symbol,
        # while hashtag spam ("#a #b #c") still counts every tag.
        symbols = pc.count_substring_regex(texts, r"#+|\.{3,}|\x{2026}+").to_numpy()
        lowered = pc.utf8_lower(texts)
        stop_pattern = r"\b(?:" + "|".join(GOPHER_STOP_WORDS) + r")\b"
        stop_words = pc.count_substring_regex(lowered, stop_pattern).to_numpy()
        non_alnum = pc.utf8_length(pc.replace_substring_regex(texts, r"[\pL\pN\s]+", "")).to_numpy()

        # Line statistics: flatten all lines of the batch once, then reduce per text.
        line_lists = pc.split_pattern(texts, "\n")
        lines = pc.utf8_trim_whitespace(pc.list_flatten(line_lists))
        parents = np.array(pc.list_parent_indices(line_lists), dtype=np.int64)
        non_blank = pc.greater(pc.utf8_length(lines), 0).to_numpy(zero_copy_only=False)
        lines_per_text = _per_text(non_blank, parents, n)
        frame = pd.DataFrame({"text": parents[non_blank], "line": lines.filter(pa.array(non_blank))})
        # A line counts as a duplicate from its second occurrence within the same text.
        duplicated = frame.duplicated(["text", "line"]).to_numpy()
        duplicate_lines = np.bincount(frame["text"].to_numpy()[duplicated], minlength=n)
        ellipsis = pc.match_substring_regex(lines, r"(\.\.\.|\x{2026})$").to_numpy(zero_copy_only=False)
        boilerplate = pc.match_substring_regex(lines, C4_BOILERPLATE_PATTERN).to_numpy(zero_copy_only=False)
        safe_lines = np.maximum(lines_per_text, 1.0)

        return {
            "word_count": words.astype(np.int64),
            "mean_word_length": word_chars / safe_words,
            "symbol_word_ratio": symbols / safe_words,
            "alpha_word_fraction": alpha_words / safe_words,
            "stop_word_count": stop_words.astype(np.int64),
            "duplicate_line_fraction": duplicate_lines / safe_lines,
            "ellipsis_line_fraction": _per_text(ellipsis & non_blank, parents, n) / safe_lines,
            "lorem_ipsum": pc.count_substring(lowered, "lorem ipsum").to_numpy().astype(np.int64),
            "boilerplate_line_fraction": _per_text(boilerplate & non_blank, parents, n) / safe_lines,
            "non_alnum_fraction": non_alnum / np.maximum(word_chars, 1.0),
            "longest_word": longest,
        }

    def _rules(self) -> list[tuple[str, float | None, float | None]]:
        """(statistic, lower bound, upper bound) in the order reasons are reported."""
        c = self.config
        return [
            ("word_count", c.min_words, c.max_words),
            ("mean_word_length", c.min_mean_word_length, c.max_mean_word_length),
            ("symbol_word_ratio", None, c.max_symbol_word_ratio),
            ("alpha_word_fraction", c.min_alpha_word_fraction, None),
            ("stop_word_count", c.min_stop_words, None),
            ("duplicate_line_fraction", None, c.max_duplicate_line_fraction),
            ("ellipsis_line_fraction", None, c.max_ellipsis_line_fraction),
            ("lorem_ipsum", None, c.max_lorem_ipsum),
            ("boilerplate_line_fraction", None, c.max_boilerplate_line_fraction),
            ("non_alnum_fraction", None, c.max_non_alnum_fraction),
            ("longest_word", None, c.max_longest_word),
        ]

    def score(self, batch: Batch) -> dict[str, np.ndarray]:
        stats = self.statistics(batch.records.column("text").combine_chunks())
        n = len(batch)
        out: dict[str, np.ndarray] = {}
        reason = np.full(n, "", dtype=object)
        passed_count = np.zeros(n, dtype=np.int64)
        keep = np.ones(n, dtype=bool)
        rules = self._rules()
        for rule, low, high in rules:
            value = stats[rule]
            too_low = value < low if low is not None else np.zeros(n, dtype=bool)
            too_high = value > high if high is not None else np.zeros(n, dtype=bool)
            ok = ~(too_low | too_high)
            out[rule] = value
            out[f"{rule}_pass"] = ok
            # Only the first failed rule names the reason; format just those records.
            first_failure = keep & ~ok
            for idx in np.flatnonzero(first_failure):
                op, bound = ("<", low) if too_low[idx] else (">", high)
                shown = value[idx] if value.dtype.kind in "iu" else f"{value[idx]:.2f}"
                reason[idx] = f"{rule} {shown} {op} {bound}"
            keep &= ok
            passed_count += ok
        out["keep"] = keep
        out["reason"] = reason
        out["score"] = passed_count / len(rules)
        return out
