"""Text normalisation and content hashing for exact deduplication.

Normalisation follows the usual web-corpus practice (e.g. the CCNet and Gopher pipelines):
Unicode NFC so that composed and decomposed accents compare equal, control characters
removed (they break tokenisers and downstream viewers), one newline convention, and outer
whitespace trimmed. Layout inside the text (newlines, tabs) is kept: it carries meaning
for quality heuristics.

The content hash is computed on a stricter *dedup-normalised* form (casefolded,
whitespace runs collapsed), so copies that differ only in case or formatting hash equal,
as in exact-substring/line dedup of CCNet (Wenzek et al., 2020).
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Iterable

# Category Cc is exactly U+0000-U+001F and U+007F-U+009F. \n and \t are layout, kept;
# \r is handled before this table is applied (it becomes \n).
_CONTROL_CHARS = {code: None for code in [*range(0x00, 0x20), *range(0x7F, 0xA0)] if chr(code) not in "\n\t"}


def normalize_text(text: str) -> str:
    """NFC, ``\\r\\n``/``\\r`` -> ``\\n``, control characters (incl. NUL) removed, outer whitespace stripped."""
    # Controls go before NFC: a removed NUL between a letter and its accent would
    # otherwise leave an uncomposed pair, and the function would not be idempotent.
    text = text.replace("\r\n", "\n").replace("\r", "\n").translate(_CONTROL_CHARS)
    return unicodedata.normalize("NFC", text).strip()


def is_invisible(text: str) -> bool:
    """True when no character would show: only whitespace and format characters (category Cf,
    e.g. zero-width spaces, a stray byte-order mark). Such a text carries nothing to learn from."""
    return not any(not char.isspace() and unicodedata.category(char) != "Cf" for char in text)


def dedup_form(text: str) -> str:
    """The form that is hashed: normalised, casefolded, whitespace runs collapsed to one space."""
    return _collapse(normalize_text(text))


def _collapse(normalized: str) -> str:
    # str.split() with no argument splits on every Unicode whitespace run (incl. NBSP).
    return " ".join(normalized.casefold().split())


def content_hash(text: str) -> str:
    """Hex sha1 of :func:`dedup_form`: trivially reformatted copies hash equal."""
    return hashlib.sha1(dedup_form(text).encode("utf-8")).hexdigest()


def content_hashes(texts: Iterable[str], already_normalized: bool = False) -> list[str]:
    """:func:`content_hash` over many texts.

    ``already_normalized=True`` skips :func:`normalize_text` for texts that went through it
    (ingest does), which halves the cost; the result is the same since it is idempotent.

    Every step is a C-level string method (normalize, translate, casefold, split, sha1)
    applied once per document, so the cost is linear in the bytes with no per-token
    Python loop; one shared code path keeps it identical to :func:`content_hash`.
    """
    form = _collapse if already_normalized else dedup_form
    return [hashlib.sha1(form(text).encode("utf-8")).hexdigest() for text in texts]
