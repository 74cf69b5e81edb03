"""The filter steps, applied in the order `filter.steps` gives.

A step takes the items still in the funnel and the context, and returns {record id: reason} for the items it
drops (it may also write scores onto the records it keeps, in `record.scores`). Steps that need the teacher
get it from the context, built once on first use, with the same request cache as generation.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from medaug.data.schema import Record
from medaug.filtering.rules import check_test_overlap, check_valid, contamination_ngrams, dedup_key, normalize
from medaug.params import Params


@dataclass
class Context:
    p: Params
    root: Path
    train: list[Record]
    dev: list[Record]
    test: list[Record]
    parents: dict[str, Record] = field(init=False)
    _teacher: object = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.parents = {r.id: r for r in self.train + self.dev + self.test}

    @property
    def teacher(self):
        if self._teacher is None:
            from medaug.llm.teacher import make_teacher
            self._teacher = make_teacher(self.p.teacher, self.root)
        return self._teacher


Step = Callable[[list[Record], Context], dict[str, str]]


def validate(records: list[Record], ctx: Context) -> dict[str, str]:
    """Question length within bounds, a rewrite differs from its parent, the context is not empty."""
    drops = {}
    for r in records:
        if reason := check_valid(r, ctx.parents.get(r.parent_id or ""), ctx.p.filter):
            drops[r.id] = reason
    return drops


def dedup(records: list[Record], ctx: Context) -> dict[str, str]:
    """Exact duplicates (normalized question and label) of a kept item or of a train question."""
    kept, train_questions, drops = set(), {normalize(r.question) for r in ctx.train}, {}
    for r in records:
        if dedup_key(r) in kept or normalize(r.question) in train_questions:
            drops[r.id] = "duplicate"
        else:
            kept.add(dedup_key(r))
    return drops


def decontaminate(records: list[Record], ctx: Context) -> dict[str, str]:
    """Derived from a test record, or sharing a test-specific word n-gram in its question or context."""
    n = ctx.p.filter.decontaminate.ngram
    test_ids = {r.id for r in ctx.test}
    grams = contamination_ngrams(ctx.test, ctx.train + ctx.dev, n)
    return {r.id: reason for r in records if (reason := check_test_overlap(r, test_ids, grams, n))}


def balance(records: list[Record], ctx: Context) -> dict[str, str]:
    """Cap each label's share of the kept items at `filter.balance.max_share`, dropping the latest of the
    over-represented labels (the order is generation order, so the cut is deterministic)."""
    share = ctx.p.filter.balance.max_share
    counts = Counter(r.final_decision for r in records)
    drops: dict[str, str] = {}
    while counts and max(counts.values()) > share * sum(counts.values()) and len(counts) > 1:
        label = max(counts, key=lambda k: (counts[k], k))
        victim = next(r for r in reversed(records) if r.final_decision == label and r.id not in drops)
        drops[victim.id] = "label_cap"
        counts[label] -= 1
    return drops


STEPS: dict[str, Step] = {"validate": validate, "dedup": dedup, "decontaminate": decontaminate, "balance": balance}
