"""Rule-based filters for generated records: validate, exact dedup, test decontamination.

Each check returns a reject reason or None; the steps in steps.py apply them.
"""

from __future__ import annotations

from medaug.data.leakage import Contamination
from medaug.data.schema import Record
from medaug.data.text import all_different, normalize
from medaug.params import FilterParams


def check_valid(rec: Record, parent: Record | None, p: FilterParams) -> str | None:
    """Question length within bounds, a rewrite differs from its parent, the context is not empty (an exam item
    may have none: its stem stands alone). Multiple choice: the options are all different ("duplicate_options",
    `text.all_different`) and the stem does not give the answer away: it holds the
    correct option's text and no other option's ("answer_in_stem")."""
    n = len(rec.question.strip())
    if n < p.min_question_chars:
        return "too_short"
    if n > p.max_question_chars:
        return "too_long"
    if rec.source == "rewrite" and parent is not None and normalize(rec.question) == normalize(parent.question):
        return "same_as_parent"
    if rec.options is None:
        return None if rec.context.strip() else "empty_context"
    if not all_different(rec.options.values()):
        return "duplicate_options"
    texts = {letter: normalize(t) for letter, t in rec.options.items()}
    stem = f" {normalize(rec.question)} "
    if [x for x, t in texts.items() if f" {t} " in stem] == [rec.final_decision]:
        return "answer_in_stem"
    return None


def check_test_overlap(rec: Record, leak: Contamination) -> str | None:
    """Derived from a test record, or its question, context or options leak the test split (`data.leakage`: a
    test-specific word n-gram, "test_overlap", or a whole test question, "test_question", which catches a copy of a
    test question too short to have an n-gram)."""
    if rec.parent_id in leak.ids:
        return "test_overlap"
    return leak.reason(rec.question) or leak.reason(rec.context) or leak.reason(rec.options_text)
