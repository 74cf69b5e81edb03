"""A loader: how a task's source becomes train/dev/test records. A task file names its loader (`loader: medqa`);
`loaders/__init__.py` lists them."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medaug.data.schema import Record, shuffle_options
from medaug.errors import MedaugError
from medaug.params import Params

Split = tuple[list[Record], list[Record], list[Record]]


@dataclass(frozen=True)
class Loader:
    name: str

    def load(self, p: Params, root: Path) -> Split:
        """(train, dev, test) of `p.data.source` (a relative path resolved against `root`) for task `p.task`."""
        raise NotImplementedError


@dataclass(frozen=True)
class GivenSplits(Loader):
    """A source with named splits (`split: {kind: given, train, test}`), one row schema: `rows(rows, name, split)`
    turns a split's rows into records. Dev is a seeded `split.dev_size` units (a progressive case's chain is one)
    taken from train, at most a fifth of it; `task.shuffle_options` reorders every item's options."""
    rows: Callable[[Any, str, str], list[Record]]

    def load(self, p: Params, root: Path) -> Split:
        from medaug.data.mcq import load_splits

        task = p.task
        if task.split.kind != "given":
            raise MedaugError(f"{task.file or 'task'}: split.kind {task.split.kind!r} is PubMedQA's split; the "
                              f"{self.name} loader reads named splits (use split: {{kind: given, ...}})")
        splits = load_splits(self, p.data.source, Path(root), [task.split.train, task.split.test])
        train, test = splits[task.split.train], splits[task.split.test]
        for name, records in ((task.split.train, train), (task.split.test, test)):
            for r in records:
                if sorted(r.options or ()) != sorted(task.choices):
                    raise MedaugError(f"data.source {p.data.source} ({name}): item {r.id} has the options "
                                      f"{', '.join(r.options or ()) or 'none'}, the task {task.name} expects "
                                      f"{', '.join(task.choices)}")
        units = list(dict.fromkeys(r.unit for r in train))  # a progressive case's chain goes to dev whole
        n_dev = min(task.split.dev_size, len(units) // 5)
        if n_dev < 1 or not test:
            raise MedaugError(f"data.source {p.data.source}: {len(units)} {task.split.train} and {len(test)} "
                              f"{task.split.test} items are too few for train, dev (a fifth of train, at most "
                              f"split.dev_size) and test")
        dev_units = set(random.Random(task.split.seed).sample(units, n_dev))
        if task.shuffle_options:
            train, test = ([shuffle_options(r, task.shuffle_seed) for r in rs] for rs in (train, test))
        return ([r for r in train if r.unit not in dev_units], [r for r in train if r.unit in dev_units], test)
