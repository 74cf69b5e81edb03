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

import numpy as np

from medaug.data.schema import Record
from medaug.filtering.embed import EarlierCosines, embed, max_cosine
from medaug.filtering.minhash import NearDuplicates
from medaug.filtering.llm_checks import consistency, judge
from medaug.data.leakage import Contamination
from medaug.filtering.rules import check_test_overlap, check_valid
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
    def teacher_used(self) -> bool:
        return self._teacher is not None

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
    """Near-duplicate questions: word-shingle Jaccard >= `filter.dedup.threshold` (exact duplicates are 1.0)
    with a train question, or with an already kept generated item of the same label and teacher (two teachers
    asked about the same item are compared, not pooled: the later one's items must not go for being like the
    earlier one's, or its row of the table would be biased); with `embedding`, also
    MiniLM cosine >= `embedding_threshold`, which catches paraphrases. The same question with another label
    is kept: across abstracts the answer differs, and a negated rewrite ("does X not reduce Y?") is a
    useful contrast, yet MiniLM puts it at cosine ~0.99 from the original. Multiple choice: an item is its stem
    and its options (`Record.item_text`, option texts sorted, so reordered options are the same item), and the
    answer letter does not group items (reordering moves it)."""
    p = ctx.p.filter.dedup
    train = NearDuplicates(p.threshold, p.shingle, p.num_perm)
    for t in ctx.train:
        train.add(t.item_text)
    kept_text: dict[str, NearDuplicates] = {}
    kept = np.zeros(len(records), bool)
    groups = np.array([f"{'' if r.options else r.final_decision}\t{r.teacher_model}" for r in records])
    if p.embedding:
        vecs = embed([r.item_text for r in records])
        near_train = max_cosine(vecs, embed([t.item_text for t in ctx.train])) >= p.embedding_threshold
        earlier = EarlierCosines(vecs)
    drops = {}
    for i, r in enumerate(records):
        same = kept_text.setdefault(groups[i], NearDuplicates(p.threshold, p.shingle, p.num_perm))
        if train.match(r.item_text):
            drops[r.id] = "duplicate_of_train"
        elif same.match(r.item_text):
            drops[r.id] = "near_duplicate"
        elif p.embedding and (near_train[i] or np.any((earlier.row(i) >= p.embedding_threshold) & kept[:i]
                                                      & (groups[:i] == groups[i]))):
            drops[r.id] = "embedding_duplicate"
        else:
            same.add(r.item_text)
            kept[i] = True
    return drops


def decontaminate(records: list[Record], ctx: Context) -> dict[str, str]:
    """Derived from a test record, or sharing a test-specific word n-gram in its question or context
    ("test_overlap"), or containing a whole test question, however short ("test_question"): `data.leakage`, the
    check continued pretraining and grounded generation apply to their corpora too. With `embedding`, also a
    question or context at MiniLM cosine >= `embedding_threshold` from any test question or context, i.e. a
    paraphrase of a test item ("test_embedding").

    A context copied unchanged from train/dev (a rewrite's, or a new question's on a train abstract) is not
    embedded: it is original training data, which the split already judged (as `data.leakage` ignores
    n-grams shared with train/dev), and skipping it halves the step's time, mostly spent on abstracts."""
    p = ctx.p.filter.decontaminate
    leak = Contamination(ctx.test, ctx.train + ctx.dev, p.ngram)
    drops = {r.id: reason for r in records if (reason := check_test_overlap(r, leak))}
    if p.embedding:
        rest = [r for r in records if r.id not in drops]
        original = {r.context for r in ctx.train + ctx.dev}
        own = [r for r in rest if r.context not in original]
        test = embed([t.item_text for t in ctx.test] + [t.context for t in ctx.test if t.context])
        close = {r.id for r, c in zip(rest, max_cosine(embed([r.item_text for r in rest]), test))
                 if c >= p.embedding_threshold}
        close |= {r.id for r, c in zip(own, max_cosine(embed([r.context for r in own]), test))
                  if c >= p.embedding_threshold}
        drops |= {r.id: "test_embedding" for r in rest if r.id in close}
    return drops


def balance(records: list[Record], ctx: Context) -> dict[str, str]:
    """Cap each label's share of the kept items at `filter.balance.max_share`, each teacher's items on their own
    (a recipe may select one teacher), dropping the latest of the over-represented labels (the order is
    generation order, so the cut is deterministic). A set with a single label is left as it is: capping it would
    drop everything."""
    share = ctx.p.filter.balance.max_share
    drops: dict[str, str] = {}
    for model in dict.fromkeys(r.teacher_model for r in records):
        mine = [r for r in records if r.teacher_model == model]
        counts = Counter(r.final_decision for r in mine)
        while counts and max(counts.values()) > share * sum(counts.values()) and len(counts) > 1:
            label = max(counts, key=lambda k: (counts[k], k))
            victim = next(r for r in reversed(mine) if r.final_decision == label and r.id not in drops)
            drops[victim.id] = "label_cap"
            counts[label] -= 1
    return drops


STEPS: dict[str, Step] = {"validate": validate, "dedup": dedup, "decontaminate": decontaminate, "judge": judge,
                          "consistency": consistency, "balance": balance}
