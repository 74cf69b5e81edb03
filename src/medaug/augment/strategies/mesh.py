"""`mesh` (KAILIN): the teacher writes a new item on a parent picked so MeSH headings (or, with
`generate.mesh.descriptors`, tree branches) are covered evenly (augment/mesh.py), on the heading it was picked
for. Label tasks only: it asks for one of the task's labels."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medaug.augment import mesh
from medaug.augment.strategies.base import Job, WritesItems
from medaug.data.mesh import load_descriptors
from medaug.data.schema import Record
from medaug.params import Params, TaskParams


class Mesh(WritesItems):
    name = prompt = "mesh"

    def supports(self, task: TaskParams) -> str | None:
        if task.answer == "options":
            return (f"it picks parents by their MeSH headings and asks for one of a label task's answers, but task "
                    f"{task.name} ({task.file or 'the built-in PubMedQA task'}) is multiple choice: use rewrite, "
                    f"new, grounded or progressive")
        return None

    def plan(self, p: Params, train: list[Record], root: Path, ctx: Mapping[str, Any]) -> list[Job]:
        g = p.generate
        descriptors = load_descriptors(root / g.mesh.descriptors) if g.mesh.descriptors else None
        return [self.job(p, r, heading=h) for r, h in mesh.balanced_pick(train, g.per_strategy, g.seed, descriptors)]


STRATEGY = Mesh()
