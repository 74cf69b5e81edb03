"""`progressive` (MQG/ECN-QA): the teacher turns a case into a chain of `generate.progressive.steps` exam
questions, asked once per case: each step a reveal, a question and its options (flat keys reveal1, question1,
A1.., answer1, reveal2, ...). A reply with one bad step is rejected whole; a good one becomes one record per step,
with the chain, the case so far as its contexts and the earlier steps with their answers as its history. Cases
are the train split's (`generate.progressive.cases: train`) or the corpus passages (`corpus`, MQG's textbook
route). Needs a multiple-choice task whose template shows the history ({history})."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from medaug.augment.strategies.base import REASONS, Job, Strategy, chain_keys, pick, question
from medaug.augment.strategies.grounded import passages
from medaug.data.schema import Record
from medaug.data.text import all_different
from medaug.llm.structured import string_schema
from medaug.params import Params, TaskParams


class Progressive(Strategy):
    name = prompt = "progressive"

    def supports(self, task: TaskParams) -> str | None:
        if task.answer == "options" and "{history}" in task.template:
            return None
        why = "answers with labels" if task.answer != "options" else "has no {history} in its template"
        return (f"it writes chains of exam questions shown with their earlier steps, but task {task.name} "
                f"({task.file or 'the built-in PubMedQA task'}) {why}: use task.file: "
                f"src/medaug/tasks/progressive.yaml, or an options task whose template has {{history}}")

    def plan(self, p: Params, train: list[Record], root: Path, ctx: Mapping[str, Any]) -> list[Job]:
        """Cases to turn into chains: `train`, a train item's context (its stem when it has none), of a train
        chain its last step only (the whole case); `corpus`, the passages of `generate.grounded.corpus`."""
        g = p.generate
        steps = g.progressive.steps
        if g.progressive.cases == "corpus":
            found = passages(p, root, self.name, ctx.get("leak"), ctx.get("stats"))
            return [self.job(p, s.as_item(), grounding=s.pointer, steps=steps)
                    for s in pick(found, g.per_strategy, g.seed, self.name)]
        cases = [replace(r, contexts=[r.context or r.question]) for r in train
                 if not r.chain or r.chain["step"] == r.chain["steps"]]
        return [self.job(p, r, steps=steps) for r in pick(cases, g.per_strategy, g.seed, self.name)]

    def schema(self, job: Job) -> dict[str, Any]:
        return string_schema(*chain_keys(job.letters, job.steps),
                             enums={f"answer{n}": list(job.letters) for n in range(1, job.steps + 1)})

    def check(self, job: Job, fields: dict[str, str]) -> dict[str, Any] | str:
        """{"chain": [record fields of steps 1..steps]}, each with the case so far (its `contexts`), the chain
        {id: the job's id, step, steps} and the earlier steps with their answers (`history`); or the reason of its
        first bad step (`empty_reveal`, the question's, `empty_option`, `duplicate_options`), or
        `repeated_question` when two steps ask the same."""
        chain: list[dict[str, Any]] = []
        reveals: list[str] = []
        history: list[dict[str, str]] = []
        for n in range(1, job.steps + 1):
            reveals.append(fields[f"reveal{n}"].strip())
            if not reveals[-1]:
                return "empty_reveal"
            q = question(fields[f"question{n}"], job.item, job.template)
            if q in REASONS:
                return q
            options = {x: fields[f"{x}{n}"].strip() for x in job.letters}
            if not all(options.values()):
                return "empty_option"
            if not all_different(options.values()):
                return "duplicate_options"
            answer = fields[f"answer{n}"]
            chain.append({"question": q, "options": options, "final_decision": answer, "contexts": list(reveals),
                          "chain": {"id": job.id, "step": n, "steps": job.steps}, "history": list(history)})
            history.append({"question": q, "answer": options[answer]})
        if not all_different([step["question"] for step in chain]):
            return "repeated_question"
        return {"chain": chain}


STRATEGY = Progressive()
