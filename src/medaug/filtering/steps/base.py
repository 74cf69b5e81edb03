"""What every filter step shares: the `Context` it runs in and the `Step` it is.

A step takes the items still in the funnel and the context, and returns {record id: reason} for the items it
drops (it may also write scores onto the records it keeps, in `record.scores`). Steps that need the teacher
get it from the context, built once on first use, with the same request cache as generation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from medaug.data.schema import Record
from medaug.params import Params


@dataclass
class Context:
    p: Params
    root: Path
    train: list[Record]
    dev: list[Record]
    test: list[Record]
    earlier: list[Record] = field(default_factory=list)  # rounds: generated items already in the training set
    picked: bool = False  # rounds: the parents were picked on purpose (balance lets a label reach their share)
    parents: dict[str, Record] = field(init=False)
    _teacher: object = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.parents = {r.id: r for r in self.train + self.dev + self.test}

    @property
    def teacher_used(self) -> bool:
        return self._teacher is not None

    @property
    def teacher(self):
        if self._teacher is None:
            from medaug.llm.teacher import make_teacher
            self._teacher = make_teacher(self.p.filter_teacher(), self.root)
        return self._teacher


@dataclass(frozen=True)
class Step:
    """A filter step: its name (what `filter.steps` lists and the funnel and rejects call it) and what it does.
    One module per step in this package, listed once in its __init__; its knobs are its section of params.yaml
    `filter` (e.g. `filter.dedup`), when it has any."""
    name: str
    run: Callable[[list[Record], Context], dict[str, str]]

    def __call__(self, records: list[Record], ctx: Context) -> dict[str, str]:
        return self.run(records, ctx)
