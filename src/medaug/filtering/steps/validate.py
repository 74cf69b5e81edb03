"""`validate`: the rules every generated item must pass (filtering/rules.py)."""

from __future__ import annotations

from medaug.data.schema import Record
from medaug.filtering.rules import check_valid
from medaug.filtering.steps.base import Context, Step


def validate(records: list[Record], ctx: Context) -> dict[str, str]:
    """Question length within bounds, a rewrite differs from its parent, the context is not empty."""
    drops = {}
    for r in records:
        if reason := check_valid(r, ctx.parents.get(r.parent_id or ""), ctx.p.filter):
            drops[r.id] = reason
    return drops


STEP = Step("validate", validate)
