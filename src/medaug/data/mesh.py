"""MeSH descriptor files and heading coverage: what the `mesh` strategy balances (augment) and what the data card
reports (filtering) read the same way, from here, so neither stage depends on the other's code.

Descriptors file (optional, `generate.mesh.descriptors`), one mapping a line; blank lines and lines starting
with # are skipped:
- NLM's MeSH trees file as distributed (mtreesYYYY.bin): `Heading;TreeNumber`, one line per tree number;
- or TSV: `Heading<TAB>TreeNumber[;TreeNumber...]`.
A line with a tab is read as TSV, otherwise as mtrees.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medaug.data.schema import Record
from medaug.errors import MedaugError

UNMAPPED = "(unmapped)"


def load_descriptors(path: Path) -> dict[str, list[str]]:
    """heading -> its tree numbers, in file order."""
    if not path.is_file():
        raise MedaugError(f"generate.mesh.descriptors: {path}: file not found")
    trees: dict[str, list[str]] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        heading, sep, numbers = line.partition("\t") if "\t" in line else line.rpartition(";")
        numbers_ = [n.strip() for n in numbers.split(";") if n.strip()]
        if not sep or not heading.strip() or not numbers_:
            raise MedaugError(f"{path}:{lineno}: expected `Heading;TreeNumber` or `Heading<TAB>TreeNumber[;...]`")
        trees.setdefault(heading.strip(), []).extend(numbers_)
    return trees


def branches(heading: str, descriptors: Mapping[str, Sequence[str]]) -> set[str]:
    """The top-level tree branches of a heading (C14.280.647 -> C14); none when the file does not list it."""
    return {number.split(".")[0] for number in descriptors.get(heading, ())}


def keys_of(rec: Record, descriptors: Mapping[str, Sequence[str]] | None) -> set[str]:
    """What balancing counts for a record: its headings, or with descriptors its headings' branches."""
    if not descriptors:
        return set(rec.meshes)
    return {b for h in rec.meshes for b in branches(h, descriptors)}


def mesh_coverage(records: list[Record], descriptors: Mapping[str, Sequence[str]] | None = None) -> dict[str, Any]:
    """How many records carry each heading and, with descriptors, each tree branch (a record counts once per
    branch; a record none of whose headings is mapped counts under "(unmapped)"). Most covered first.

    {"records": n, "headings": {heading: n}, "branches": {branch: n}} ("branches" is {} without descriptors)."""
    headings = Counter(h for r in records for h in set(r.meshes))
    by_branch: Counter[str] = Counter()
    if descriptors:
        for r in records:
            by_branch.update(keys_of(r, descriptors) or {UNMAPPED})

    def ordered(c: Counter[str]) -> dict[str, int]:
        return dict(sorted(c.items(), key=lambda kv: (-kv[1], kv[0])))
    return {"records": len(records), "headings": ordered(headings), "branches": ordered(by_branch)}
