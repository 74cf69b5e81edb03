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
from typing import TYPE_CHECKING, Any, Literal

from medaug.errors import MedaugError

if TYPE_CHECKING:
    from medaug.params import Params
    from medaug.paths import Candidate

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


def check_round(p: Params, c: Candidate) -> None:
    """Fail, naming the fix, when params do not ask for round candidate `c`: dvc.yaml's round stages go from round
    1 to the `rounds` of the recipes in train.rounds (`medaug rounds --write` writes them), so a recipe with fewer
    rounds than that, or none, would run rounds nobody asked for."""
    recipe = p.variants.get(c.recipe)
    if c.recipe not in p.train.rounds or recipe is None or not c.round:
        raise MedaugError(f"dvc.yaml runs {c.name}, but params.yaml train.rounds ({p.train.rounds}) does not list "
                          f"{c.recipe!r}")
    if c.round > recipe.rounds:
        raise MedaugError(f"dvc.yaml runs round {c.round} of {c.recipe!r}, whose variants.{c.recipe}.rounds is "
                          f"{recipe.rounds}: dvc.yaml's round stages are for recipes of {c.round}+ rounds; give the "
                          f"recipes in train.rounds the same rounds and run `medaug rounds --write`")
