"""Which training items a round of targeted generation asks the teacher about (issue 34, LLM2LLM's loop): the
parents, picked from the current student's scores on the *training split* (never dev or test).

A scored row is what the scorer writes per item (`eval/<candidate>/predictions.jsonl`): `id`, `gold`, `prediction`
and `logprobs` ({answer: log-prob}). Parents are original items only; generated ones never are (LLM2LLM: new items
from generated parents drift), which `pick` checks against the ids it is given.

- `errors`: the items the student got wrong, the most confidently wrong first (lowest margin);
- `margin`: every item by its margin, the gold answer's log-prob less the best other answer's, lowest first (the
  wrong ones, then the right ones it was least sure of);
- `random`: a seeded sample of the items, whatever the student answered: the equal-budget control that tells
  "targeting helps" from "more items help".

Each takes at most `n`. The round stages call it (augment/rounds.py); the probe stage uses `margin`.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from medaug.errors import MedaugError

Rule = Literal["errors", "margin", "random"]
RULES: tuple[str, ...] = ("errors", "margin", "random")


def margin(row: Mapping[str, Any]) -> float:
    """The gold answer's log-prob less the best other answer's: < 0 when the student is wrong, near 0 when unsure."""
    lp = row["logprobs"]
    if row["gold"] not in lp or len(lp) < 2:
        raise MedaugError(f"scored row {row.get('id')!r}: its logprobs {sorted(lp)} must hold the gold answer "
                          f"{row['gold']!r} and another")
    return lp[row["gold"]] - max(v for k, v in lp.items() if k != row["gold"])


def pick(rule: Rule, rows: Sequence[Mapping[str, Any]], n: int, seed: int, originals: Iterable[str]) -> list[str]:
    """The ids of at most `n` parents among `rows` by `rule`, in the order they were picked. `originals`: the ids of
    the original training items; a row outside them (a generated item) is refused."""
    if rule not in RULES:
        raise MedaugError(f"pick: unknown rule {rule!r} (rules: {', '.join(RULES)})")
    if n < 0:
        raise MedaugError(f"pick: n must be >= 0 (got {n})")
    known = set(originals)
    foreign = [r["id"] for r in rows if r["id"] not in known]
    if foreign:
        raise MedaugError(f"pick: {len(foreign)} scored rows are not original training items (e.g. {foreign[0]!r}); "
                          f"parents are original items only")
    if rule == "random":
        ids = sorted(r["id"] for r in rows)
        return random.Random(seed).sample(ids, min(n, len(ids)))
    ranked = sorted(rows, key=lambda r: (margin(r), r["id"]))
    if rule == "errors":
        ranked = [r for r in ranked if r["prediction"] != r["gold"]]
    return [r["id"] for r in ranked[:n]]
