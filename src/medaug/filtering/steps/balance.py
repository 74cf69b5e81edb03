"""`balance`: no label above its share of the kept items (params `filter.balance`)."""

from __future__ import annotations

from collections import Counter

from medaug.data.schema import Record
from medaug.filtering.steps.base import Context, Step


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


STEP = Step("balance", balance)
