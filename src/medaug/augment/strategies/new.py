"""`new` (Dr.LLaMA): the teacher writes a new item on a parent's text: a question, its answer and an
explanation (a multiple-choice task: a standalone exam question on the parent's topic, one option per letter).
With `generate.label_mix` each request names the label its item must have (prompts/new_target*), in proportion
to the mix, and a reply with another label is rejected as `off_target`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medaug.augment.strategies.base import Job, WritesItems, pick, targets
from medaug.data.schema import Record
from medaug.params import Params


class New(WritesItems):
    name = prompt = "new"

    def plan(self, p: Params, train: list[Record], root: Path, ctx: Mapping[str, Any]) -> list[Job]:
        g = p.generate
        parents = pick(train, g.per_strategy, g.seed, self.name)
        if not g.label_mix:
            return [self.job(p, r) for r in parents]
        return [self.job(p, r, "new_target", target=t)
                for r, t in zip(parents, targets(len(parents), g.label_mix, g.seed, p.task.choices))]


STRATEGY = New()
