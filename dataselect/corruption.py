"""Seeded corruption of a clean labelled pool, with the ground truth kept per row.

The corruptions are the ones data-selection work measures itself against: exact and near
duplicates (Lee et al., 2022, "Deduplicating Training Data Makes Language Models
Better"), label noise by uniform flips (the symmetric-noise model of Natarajan et al.,
2013, as used in Confident Learning, Northcutt et al., 2021), and web junk (encoded
blobs, boilerplate, empty pages) of the kind C4/Gopher-style heuristic filters remove.

Every added or changed row says what was done to it (``is_exact_dup``, ``is_near_dup``,
``is_flipped``, ``is_junk``, ``source_id``, ``true_label``), so detectors can be scored.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dataselect.records import ID, LABEL, TEXT

SOURCE_ID = "source_id"
IS_EXACT_DUP = "is_exact_dup"
IS_NEAR_DUP = "is_near_dup"
IS_FLIPPED = "is_flipped"
IS_JUNK = "is_junk"
TRUE_LABEL = "true_label"  # the label before any flip; null for junk, which has no topic
GROUND_TRUTH_COLUMNS = (SOURCE_ID, IS_EXACT_DUP, IS_NEAR_DUP, IS_FLIPPED, IS_JUNK, TRUE_LABEL)

JUNK_KINDS = ("base64", "hex", "cookie_banner", "lorem_ipsum", "nav_menu", "empty", "whitespace")

_TOKENS = re.compile(r"(\s+)")  # split keeping separators: words at even, whitespace at odd positions


@dataclass
class CorruptionConfig:
    """Knobs beyond the four fractions of :func:`corrupt_pool`."""

    # Near duplicates: this fraction of a document's words is deleted or substituted,
    # drawn uniformly per copy. The edits form one contiguous span (a rewritten clause),
    # which keeps word 5-gram Jaccard high (~0.8+ for documents of 100+ words); scattered
    # edits of the same rate would break up to five shingles each.
    edit_rate_min: float = 0.03
    edit_rate_max: float = 0.05
    # Exact duplicates: this share is reformatted (CRLF, doubled spaces, padding) rather
    # than verbatim; both hash equal under dedup normalisation.
    reformat_fraction: float = 0.5
    vocabulary_sample: int = 500  # documents sampled for substitute words


def _eligible_sources(texts: pd.Series) -> np.ndarray:
    """Rows worth copying: documents with at least two words."""
    word_counts = texts.fillna("").astype(str).str.split().str.len()
    return np.flatnonzero(word_counts.to_numpy() >= 2)


def _reformat(text: str, variant: int) -> str:
    # Only whitespace changes: the dedup-normalised form (casefold, collapsed spaces) is equal.
    if variant == 0:
        return text.replace("\n", "\r\n") + "\r\n"
    if variant == 1:
        return text.replace(" ", "  ")
    return "  " + text + " \n\t"


def _perturb(text: str, rng: np.random.Generator, vocabulary: np.ndarray, rate: float) -> str:
    parts = _TOKENS.split(text)
    words = [i for i in range(0, len(parts), 2) if parts[i]]
    n_edits = min(len(words), max(1, round(rate * len(words))))
    start = int(rng.integers(0, len(words) - n_edits + 1))
    for position in words[start : start + n_edits]:
        if rng.random() < 0.5:
            parts[position] = ""
            # Drop one adjacent separator too, so a deletion leaves no double space.
            if position + 1 < len(parts):
                parts[position + 1] = ""
            elif position > 0:
                parts[position - 1] = ""
        else:
            original = parts[position].casefold()
            substitute = vocabulary[int(rng.integers(0, len(vocabulary)))]
            if substitute.casefold() == original:
                substitute = substitute + "s"
            parts[position] = substitute
    return "".join(parts)


def _junk_text(kind: str, rng: np.random.Generator) -> str:
    if kind == "base64":
        blob = base64.b64encode(rng.bytes(int(rng.integers(300, 1200)))).decode()
        return "\n".join(blob[i : i + 76] for i in range(0, len(blob), 76))
    if kind == "hex":
        blob = rng.bytes(int(rng.integers(200, 800))).hex()
        return " ".join(blob[i : i + 32] for i in range(0, len(blob), 32))
    if kind == "cookie_banner":
        site = "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), int(rng.integers(5, 10))))
        partners = int(rng.integers(12, 900))
        return (
            f"We value your privacy. {site}.com and our {partners} partners use cookies and similar "
            "technologies to store and access information on your device. Click Accept All to consent, "
            "or Manage Preferences to choose. You can change your choice at any time. "
            "Accept All | Reject All | Manage Preferences | Privacy Policy | Cookie Policy"
        )
    if kind == "lorem_ipsum":
        words = (
            "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut "
            "labore et dolore magna aliqua enim ad minim veniam quis nostrud exercitation ullamco"
        ).split()
        return "Lorem ipsum " + " ".join(rng.choice(words, int(rng.integers(40, 120)))) + "."
    if kind == "nav_menu":
        items = np.array(
            [
                "Home",
                "About Us",
                "Products",
                "Services",
                "Blog",
                "News",
                "Careers",
                "Contact",
                "Login",
                "Sign Up",
                "FAQ",
                "Support",
                "Terms",
                "Privacy",
                "Sitemap",
                "Shop",
                "Cart",
            ]
        )
        menu = " | ".join(rng.permutation(items)[: int(rng.integers(8, len(items)))])
        return f"{menu}\nSkip to main content\n© {int(rng.integers(1998, 2025))} All rights reserved."
    if kind == "empty":
        return ""
    return " \n\t  \n"[: int(rng.integers(1, 7))]  # whitespace only


def corrupt_pool(
    pool: pd.DataFrame,
    seed: int,
    exact_dup: float = 0.10,
    near_dup: float = 0.05,
    flip: float = 0.15,
    junk: float = 0.03,
    config: CorruptionConfig | None = None,
) -> pd.DataFrame:
    """The pool plus duplicate and junk rows, some labels flipped, shuffled, with ground truth.

    Fractions are of the original pool size. Duplicates copy the clean label of their
    source; flips are then drawn among all non-junk labelled rows (copies included), so
    ``is_flipped`` is exactly ``label != true_label``. New ids are ``<source>~dup``,
    ``<source>~near`` and ``junk-<n>``, with ``.<k>`` appended on a clash.
    """
    config = config or CorruptionConfig()
    missing = {ID, TEXT, LABEL} - set(pool.columns)
    if missing:
        raise ValueError(f"pool lacks columns {sorted(missing)}")
    if pool[ID].duplicated().any():
        raise ValueError("pool ids must be unique")
    rng = np.random.default_rng(seed)
    n = len(pool)
    base = pool.reset_index(drop=True).copy()
    base[SOURCE_ID] = base[ID]
    base[IS_EXACT_DUP] = base[IS_NEAR_DUP] = base[IS_FLIPPED] = base[IS_JUNK] = False
    base[TRUE_LABEL] = base[LABEL]
    taken = set(base[ID].astype(str))

    def new_id(stem: str) -> str:
        candidate, k = stem, 0
        while candidate in taken:
            k += 1
            candidate = f"{stem}.{k}"
        taken.add(candidate)
        return candidate

    eligible = _eligible_sources(base[TEXT])
    if len(eligible) == 0 and (exact_dup > 0 or near_dup > 0):
        raise ValueError("no document with two or more words to duplicate")

    def pick_sources(count: int) -> np.ndarray:
        return np.sort(rng.choice(eligible, size=count, replace=count > len(eligible)))

    # Exact duplicates.
    exact = base.iloc[pick_sources(round(exact_dup * n))].copy()
    reformat = rng.random(len(exact)) < config.reformat_fraction
    variants = rng.integers(0, 3, len(exact))
    exact[TEXT] = [_reformat(text, int(v)) if r else text for text, r, v in zip(exact[TEXT], reformat, variants)]
    exact[ID] = [new_id(f"{source}~dup") for source in exact[SOURCE_ID]]
    exact[IS_EXACT_DUP] = True

    # Near duplicates: substitutes come from the pool's own vocabulary, so they look natural.
    near = base.iloc[pick_sources(round(near_dup * n))].copy()
    if len(near):
        sample = rng.choice(eligible, size=min(config.vocabulary_sample, len(eligible)), replace=False)
        vocabulary = np.array(sorted({w for t in base[TEXT].iloc[sample] for w in str(t).split() if w.isalpha()}))
        if len(vocabulary) == 0:
            vocabulary = np.array(["lorem"])
        rates = rng.uniform(config.edit_rate_min, config.edit_rate_max, len(near))
        near[TEXT] = [_perturb(text, rng, vocabulary, rate) for text, rate in zip(near[TEXT], rates)]
        near[ID] = [new_id(f"{source}~near") for source in near[SOURCE_ID]]
        near[IS_NEAR_DUP] = True

    # Junk: every kind appears once before any repeats, in a seeded order.
    labels = np.array(sorted(base[LABEL].dropna().astype(str).unique()))
    n_junk = round(junk * n)
    kinds = [JUNK_KINDS[i % len(JUNK_KINDS)] for i in rng.permutation(n_junk)]
    junk_ids = [new_id(f"junk-{k:05d}") for k in range(n_junk)]
    junk_rows = pd.DataFrame(
        {
            ID: junk_ids,
            TEXT: [_junk_text(kind, rng) for kind in kinds],
            LABEL: rng.choice(labels, n_junk) if len(labels) else [None] * n_junk,
            SOURCE_ID: junk_ids,
            IS_EXACT_DUP: False,
            IS_NEAR_DUP: False,
            IS_FLIPPED: False,
            IS_JUNK: True,
            TRUE_LABEL: None,
        }
    )

    combined = pd.concat([base, exact, near, junk_rows], ignore_index=True)

    # Flips: a uniformly random *other* label, via a non-zero offset modulo the label count.
    n_flip = round(flip * n)
    if n_flip:
        if len(labels) < 2:
            raise ValueError("flipping labels needs at least two distinct labels")
        candidates = np.flatnonzero((~combined[IS_JUNK] & combined[LABEL].notna()).to_numpy())
        chosen = np.sort(rng.choice(candidates, size=min(n_flip, len(candidates)), replace=False))
        codes = np.searchsorted(labels, combined[LABEL].iloc[chosen].astype(str).to_numpy())
        offsets = rng.integers(1, len(labels), len(chosen))
        label_position = combined.columns.get_loc(LABEL)
        combined.iloc[chosen, label_position] = labels[(codes + offsets) % len(labels)]
        combined.iloc[chosen, combined.columns.get_loc(IS_FLIPPED)] = True

    shuffled = combined.iloc[rng.permutation(len(combined))].reset_index(drop=True)
    for flag in (IS_EXACT_DUP, IS_NEAR_DUP, IS_FLIPPED, IS_JUNK):
        shuffled[flag] = shuffled[flag].astype(bool)
    return shuffled
