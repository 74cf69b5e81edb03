"""Rule-based filters for generated records: validate, exact dedup, test decontamination.

Each check returns a reject reason or None; the steps in steps.py apply them.
"""

from __future__ import annotations

from collections.abc import Iterable

from medaug.data.schema import Record
from medaug.data.text import normalize, word_ngrams
from medaug.params import FilterParams

def check_valid(rec: Record, parent: Record | None, p: FilterParams) -> str | None:
    """Question length within bounds, a rewrite differs from its parent, the context is not empty."""
    n = len(rec.question.strip())
    if n < p.min_question_chars:
        return "too_short"
    if n > p.max_question_chars:
        return "too_long"
    if rec.source == "rewrite" and parent is not None and normalize(rec.question) == normalize(parent.question):
        return "same_as_parent"
    if not rec.context.strip():
        return "empty_context"
    return None


def contamination_ngrams(test: Iterable[Record], clean: Iterable[Record], n: int) -> set[tuple[str, ...]]:
    """Word n-grams of test questions and contexts that do NOT occur in the clean (train/dev) records.

    N-grams shared with train/dev are boilerplate ("the aim of this study was to evaluate") or template text:
    the model sees them in the original training data anyway, and flagging them would drop 13% of real
    PubMedQA train abstracts (and every templated sample abstract) as "test overlap".
    """
    grams: set[tuple[str, ...]] = set()
    for r in test:
        grams |= word_ngrams(r.question, n) | word_ngrams(r.context, n)
    for r in clean:
        grams -= word_ngrams(r.question, n) | word_ngrams(r.context, n)
    return grams


def check_test_overlap(rec: Record, test_ids: set[str], test_grams: set[tuple[str, ...]], n: int) -> str | None:
    """Derived from a test record, or shares a test-specific word n-gram in its question or context."""
    if rec.parent_id in test_ids:
        return "test_overlap"
    if not test_grams.isdisjoint(word_ngrams(rec.question, n) | word_ngrams(rec.context, n)):
        return "test_overlap"
    return None
