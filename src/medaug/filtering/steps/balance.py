"""`balance`: no label above its share of the kept items (params `filter.balance`)."""

from __future__ import annotations

from collections import Counter

from medaug.data.schema import Record
from medaug.filtering.steps.base import Context, Step


def balance(records: list[Record], ctx: Context) -> dict[str, str]:
    """Cap each label's share of the kept items at `filter.balance.max_share`, each teacher's items on their own
    (a recipe may select one teacher), dropping the latest of the over-represented labels (the order is
    generation order, so the cut is deterministic). A set with a single label is left as it is: capping it would
    drop everything.

    In a round (`ctx.picked`: augment/rounds.py) the parents were chosen on purpose, e.g. the student's errors,
    which gather on the labels it gets wrong; a label may then reach its share among the items' parents when that
    is higher. The cap still stops a teacher from pushing a label past what it was given, and no longer undoes the
    targeting (on PQA-L, 19 of a round's 24 parents were `maybe`, and a flat 0.5 cap dropped 11 of its 23 items)."""
    share = ctx.p.filter.balance.max_share
    drops: dict[str, str] = {}
    for model in dict.fromkeys(r.teacher_model for r in records):
        mine = [r for r in records if r.teacher_model == model]
        counts = Counter(r.final_decision for r in mine)
        cap = dict.fromkeys(counts, share)
        if ctx.picked:
            given = Counter(ctx.parents[i].final_decision for i in {r.parent_id for r in mine} if i in ctx.parents)
            cap = {k: max(share, given[k] / (sum(given.values()) or 1)) for k in counts}
        while counts and len(counts) > 1:
            over = [k for k in counts if counts[k] > cap[k] * sum(counts.values())]
            if not over:
                break
            label = max(over, key=lambda k: (counts[k], k))
            victim = next(r for r in reversed(mine) if r.final_decision == label and r.id not in drops)
            drops[victim.id] = "label_cap"
            counts[label] -= 1
    return drops


STEP = Step("balance", balance)
