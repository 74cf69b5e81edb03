"""Text normalisation shared by generation (reply checks) and filtering (dedup, decontamination)."""

from __future__ import annotations

import re
from collections.abc import Collection


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def normalize(text: str) -> str:
    """Lowercase; collapse runs of whitespace, punctuation and underscores into one space."""
    return re.sub(r"[\W_]+", " ", text.lower()).strip()


def word_ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    w = words(text)
    return {tuple(w[i:i + n]) for i in range(len(w) - n + 1)}


def all_different(texts: Collection[str]) -> bool:
    """No two texts are the same once `normalize`d ("Iron." is "iron"): what generation and the `validate` filter
    require of a teacher's options (reading data, `schema.validate` is looser: case and whitespace only)."""
    return len({normalize(t) for t in texts}) == len(texts)
