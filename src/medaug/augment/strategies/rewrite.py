"""`rewrite` (Dr.LLaMA): the teacher says an item's question in other words; the answer stays the parent's. On a
multiple-choice task the options are the parent's, reordered here (seeded, never the order they had; the answer
letter follows its text), so the teacher cannot lose the answer. With `generate.label_mix`, parents are picked so
their labels follow it (a rare label's parents asked again as further samples)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medaug.augment.strategies.base import REASONS, Job, Strategy, pick, pick_by_label, question
from medaug.data.schema import Record, shuffle_options
from medaug.llm.structured import string_schema
from medaug.params import Params


class Rewrite(Strategy):
    name = prompt = "rewrite"

    def plan(self, p: Params, train: list[Record], root: Path, ctx: Mapping[str, Any]) -> list[Job]:
        g = p.generate
        if not g.label_mix:
            return [self.job(p, r) for r in pick(train, g.per_strategy, g.seed, self.name)]
        return [self.job(p, r, sample=s) for r, s in
                pick_by_label(train, g.per_strategy or len(train), g.label_mix, g.seed, p.task.choices)]

    def schema(self, job: Job) -> dict[str, Any]:
        return string_schema("question")

    def check(self, job: Job, fields: dict[str, str]) -> dict[str, Any] | str:
        q = question(fields["question"], job.item, job.template)
        if q in REASONS:
            return q
        parent = job.item
        if job.letters:
            moved = shuffle_options(parent, job.id, moved=True)
            return {"question": q, "options": moved.options, "final_decision": moved.final_decision,
                    "long_answer": parent.long_answer}
        return {"question": q, "final_decision": parent.final_decision, "long_answer": parent.long_answer}


STRATEGY = Rewrite()
