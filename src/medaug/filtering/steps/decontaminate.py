"""`decontaminate`: items that leak the test split go (params `filter.decontaminate`; never optional)."""

from __future__ import annotations

from medaug.data.leakage import Contamination
from medaug.data.schema import Record
from medaug.filtering.embed import embed, max_cosine
from medaug.filtering.rules import check_test_overlap
from medaug.filtering.steps.base import Context, Step


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


STEP = Step("decontaminate", decontaminate)
