"""`dedup`: near-duplicate items go (params `filter.dedup`)."""

from __future__ import annotations

import numpy as np

from medaug.data.schema import Record
from medaug.filtering.embed import EarlierCosines, embed, max_cosine
from medaug.filtering.minhash import NearDuplicates
from medaug.filtering.steps.base import Context, Step


def dedup(records: list[Record], ctx: Context) -> dict[str, str]:
    """Near-duplicate questions: word-shingle Jaccard >= `filter.dedup.threshold` (exact duplicates are 1.0)
    with a train question (or an item of an earlier round, `ctx.earlier`), or with an already kept generated item
    of the same label and teacher (two teachers asked about the same item are compared, not pooled: the later
    one's items must not go for being like the earlier one's, or its row of the table would be biased); with
    `embedding`, also MiniLM cosine >= `embedding_threshold`, which catches paraphrases. The same question with
    another label is kept: across abstracts the answer differs, and a negated rewrite ("does X not reduce Y?") is a
    useful contrast, yet MiniLM puts it at cosine ~0.99 from the original. Multiple choice: an item is its stem
    and its options (`Record.item_text`, option texts sorted, so reordered options are the same item), and the
    answer letter does not group items (reordering moves it)."""
    p = ctx.p.filter.dedup
    train = NearDuplicates(p.threshold, p.shingle, p.num_perm)
    for t in ctx.train + ctx.earlier:
        train.add(t.item_text)
    kept_text: dict[str, NearDuplicates] = {}
    kept = np.zeros(len(records), bool)
    groups = np.array([f"{'' if r.options else r.final_decision}\t{r.teacher_model}" for r in records])
    if p.embedding:
        vecs = embed([r.item_text for r in records])
        near_train = max_cosine(vecs, embed([t.item_text for t in ctx.train + ctx.earlier])) >= p.embedding_threshold
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


STEP = Step("dedup", dedup)
