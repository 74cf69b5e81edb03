"""Training sets from recipes (`variants.<name>` in params.yaml): the train split, then the generated items the
filter kept that the recipe selects, in the order the filter kept them.

Selection, in this order: `strategies` (the record's `source`), `teachers` (its `teacher.model`),
`min_judge_score` (its `scores.judge`), then a seeded subsample of `fraction` of what is left, then the first
`max_items`; a progressive chain is taken or left whole. The subsample keeps the kept order, and a smaller fraction
with the same seed is a subset of a larger one, so a size series adds items rather than swapping them.

Teacher cost attributable to a variant (`teacher_cost_usd` in its report): every generated item the filter kept
carries an equal share of what its strategy and teacher cost in `generate` (every request for that pair,
including the items rejected there or dropped by the filter: they were paid for to get the kept ones), plus an
equal share of the filter's own teacher cost (judge, consistency). A variant's cost is the sum over the
generated items it takes, so `fraction: 0.5` costs half of the full set. Cache hits count at what they cost when
first paid: the cost of the data, not of this run.
"""

from __future__ import annotations

import logging

import random
from collections import Counter
from pathlib import Path
from typing import Any

from medaug.data.jsonl import atomic_path, iter_jsonl, read_json, write_json
from medaug.data.schema import Record, read_records, write_records
from medaug.errors import MedaugError
from medaug.params import Params, VariantParams
from medaug.paths import DatasetIO

log = logging.getLogger(__name__)


def select(recipe: VariantParams, kept: list[Record]) -> list[Record]:
    """The generated items of `kept` the recipe takes (see the module docstring). A progressive chain is taken or
    left whole: `min_judge_score` holds for all its steps or none is taken, `fraction` draws chains, and
    `max_items` takes no chain it would cut."""
    items = [r for r in kept if r.source in recipe.strategies]
    if recipe.teachers:
        items = [r for r in items if r.teacher_model in recipe.teachers]
    if recipe.min_judge_score is not None:
        low = {r.unit for r in items if not isinstance((r.scores or {}).get("judge"), (int, float))
               or r.scores["judge"] < recipe.min_judge_score}
        items = [r for r in items if r.unit not in low]
    if recipe.fraction < 1:
        rng = random.Random(recipe.seed)
        units = sorted({r.unit for r in items})  # by id: the kept order may move
        rank = {u: rng.random() for u in units}
        chosen = set(sorted(units, key=rank.__getitem__)[:round(len(units) * recipe.fraction)])
        items = [r for r in items if r.unit in chosen]
    if recipe.max_items:
        size, taken, n = Counter(r.unit for r in items), set(), 0
        for unit in size:  # in kept order
            n += size[unit]
            if n > recipe.max_items:
                break
            taken.add(unit)
        items = [r for r in items if r.unit in taken]
    return items


def item_costs(kept: list[Record], generate_report: dict[str, Any], funnel_report: dict[str, Any]
               ) -> dict[str, float]:
    """{kept item id: its share of the teacher cost} (see the module docstring)."""
    pairs = Counter((r.source, r.teacher_model) for r in kept)
    by = generate_report.get("cost_usd_by_source") or {}
    filter_share = (funnel_report.get("teacher") or {}).get("cost_usd", 0.0) + \
        (funnel_report.get("teacher") or {}).get("cost_usd_saved", 0.0)
    return {r.id: by.get(r.source, {}).get(r.teacher_model, 0.0) / pairs[r.source, r.teacher_model]
            + filter_share / len(kept) for r in kept}


def build(name: str, recipe: VariantParams, train: list[Record], kept: list[Record],
          costs: dict[str, float] | None = None) -> tuple[list[Record], dict[str, Any]]:
    """(the training set, its report: items by source and teacher, and the teacher cost of its generated items
    given `costs`, {item id: usd})."""
    added = select(recipe, kept)
    if recipe.strategies and not added:
        raise MedaugError(f"params.yaml: variants.{name} selects none of the {len(kept)} items the filter kept "
                          f"(data/filtered/kept.jsonl), so it would train on the train split alone: loosen it, "
                          f"or use a recipe without strategies for that")
    report = {"items": len(train) + len(added), "train_split": len(train), "generated": len(added),
              "by_source": dict(sorted(Counter(r.source for r in added).items())),
              "by_teacher": dict(sorted(Counter(r.teacher_model for r in added).items())),
              "teacher_cost_usd": round(sum((costs or {}).get(r.id, 0.0) for r in added), 6)}
    return train + added, report


def provenance(p: Params, name: str, recipe: VariantParams, train: list[Record], added: list[Record],
               io: DatasetIO) -> tuple[str, dict[str, Any]]:
    """The recipe's own data card (data/datacard.py, of its items only) and what the registry tags with: its
    teachers (`<backend>:<model>`) and its funnel, from the filter stage's records of every item asked for. A
    recipe without generated items: a card that says so, and neither."""
    from medaug.data import datacard

    if not recipe.strategies:
        return (f"# Data card: recipe `{name}`\n\nThe {p.task.name} train split alone ({len(train)} records): no "
                f"generated items.\n"), {}

    def mine(strategy: str, teacher: str) -> bool:
        return strategy in recipe.strategies and (not recipe.teachers or teacher in recipe.teachers)

    generated = [r for r in read_records(io.generated, p.task.choices) if mine(r.source, r.teacher_model)]
    gen_rejects = [x for _, x in iter_jsonl(io.generate_rejects)] if Path(io.generate_rejects).exists() else None
    funnel = datacard.recipe_funnel(mine, p.filter.steps, generated, gen_rejects,
                                    [x for _, x in iter_jsonl(io.filter_rejects)], len(added))
    if judge := (read_json(io.funnel_report).get("teacher") or {}).get("model"):
        funnel["teacher"] = {"model": judge}  # who judged the recipe's items (its share of the cost: item_costs)
    teachers = sorted(f"{tp.backend}:{tp.model}" for tp, _ in datacard.teachers(p, added).values() if tp)
    return datacard.render(p, train, generated, added, funnel, recipe=name), {"teachers": teachers,
                                                                              "funnel": funnel}


def run(p: Params, name: str, io: DatasetIO) -> dict[str, Any]:
    """Write variant `name`'s training set (its recipe: params `variants.<name>`) to io.out
    (data/train/<name>.jsonl), its report and its data card (io.card)."""
    recipe = p.variants.get(name)
    if recipe is None:
        raise MedaugError(f"params.yaml: no recipe `variants.{name}` (known: {', '.join(p.variants)})")
    train = read_records(io.train)
    kept = read_records(io.kept)
    costs = item_costs(kept, read_json(io.generate_report), read_json(io.funnel_report)) if kept else {}
    records, report = build(name, recipe, train, kept, costs)
    card, tags = provenance(p, name, recipe, train, records[len(train):], io)
    report.update(tags)
    write_records(io.out, records)
    write_json(io.report, report)
    with atomic_path(io.card) as tmp:
        tmp.write_text(card, encoding="utf-8")
    log.info(f"dataset {name}: {report['train_split']} train + {report['generated']} generated "
             f"{report['by_source'] or ''}".rstrip())
    return report
