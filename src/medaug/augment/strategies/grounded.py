"""`grounded` (MQG): the teacher writes a new item on a passage of the user's corpus (`generate.grounded.corpus`;
reading and chunking: augment/grounded.py), not on a train item; passages that leak the test split are dropped
before any is picked."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medaug.augment import grounded
from medaug.augment.strategies.base import Job, WritesItems, pick
from medaug.data.leakage import Contamination
from medaug.data.schema import Record
from medaug.params import Params


def passages(p: Params, root: Path, strategy: str, leak: Contamination | None = None,
             stats: dict[str, Any] | None = None) -> list[grounded.Passage]:
    """The passages of `generate.grounded.corpus`; those that leak the test split (`leak`) are dropped before any
    is picked, and counted in stats["<strategy>_dropped_test_overlap"]."""
    g = p.generate
    folder, size, overlap = root / g.grounded.corpus, g.grounded.chunk_tokens, g.grounded.overlap_tokens
    if leak is None:
        return grounded.read_corpus(folder, size, overlap)
    clean, dropped = grounded.read_clean_corpus(folder, size, overlap, leak)
    if stats is not None:
        stats[f"{strategy}_dropped_test_overlap"] = dropped
    return clean


class Grounded(WritesItems):
    name = prompt = "grounded"

    def plan(self, p: Params, train: list[Record], root: Path, ctx: Mapping[str, Any]) -> list[Job]:
        g = p.generate
        found = passages(p, root, self.name, ctx.get("leak"), ctx.get("stats"))
        return [self.job(p, s.as_item(), grounding=s.pointer) for s in pick(found, g.per_strategy, g.seed, self.name)]


STRATEGY = Grounded()
