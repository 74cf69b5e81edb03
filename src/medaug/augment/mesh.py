"""MeSH-balanced sampling for the `mesh` strategy (KAILIN: question generation guided by the MeSH hierarchy), and
the coverage counts the data card reports.

PubMedQA records carry their MeSH headings (`meshes`), very unevenly: in PQA-L `Humans` is on 96% of the
records and 58% of its 3,408 headings are on one record each, so a random sample is mostly about the same few
topics. `balanced_pick` instead keeps asking for the heading covered least so far (rarest first), so a sample
of n records reaches as many headings, as evenly, as the records allow. With a descriptors file it balances
MeSH tree branches (the tree number's top level, e.g. C14 Cardiovascular Diseases) instead of headings.

Descriptors file (optional, `generate.mesh.descriptors`), one mapping a line; blank lines and lines starting
with # are skipped:
- NLM's MeSH trees file as distributed (mtreesYYYY.bin): `Heading;TreeNumber`, one line per tree number;
- or TSV: `Heading<TAB>TreeNumber[;TreeNumber...]`.
A line with a tab is read as TSV, otherwise as mtrees.
"""

from __future__ import annotations

import heapq
import random
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


def focus(rec: Record, key: str, descriptors: Mapping[str, Sequence[str]] | None) -> str:
    """The heading a record was picked for: the key itself, or with descriptors the record's first heading
    (alphabetically) in that branch."""
    if not descriptors:
        return key
    return min(h for h in rec.meshes if key in branches(h, descriptors))


def balanced_pick(records: list[Record], n: int, seed: int,
                  descriptors: Mapping[str, Sequence[str]] | None = None) -> list[tuple[Record, str]]:
    """n records (0 = all that have a key), each with the heading it was picked for, in train order.

    Greedy: take the key (heading or branch) with the fewest picked records so far, the rarer in `records`
    first, ties in a seeded order; pick its next record (seeded order) not picked yet; count every key of that
    record. Records with no key are never picked: this strategy is about headings."""
    rng = random.Random(f"{seed}:mesh")
    order = list(range(len(records)))
    rng.shuffle(order)
    members: dict[str, list[int]] = {}
    for i in order:
        for k in sorted(keys_of(records[i], descriptors)):
            members.setdefault(k, []).append(i)
    tiebreak = sorted(members)
    rng.shuffle(tiebreak)
    rank = {k: r for r, k in enumerate(tiebreak)}
    n = n or len(records)
    count = dict.fromkeys(members, 0)
    heap = [(0, len(members[k]), rank[k], k) for k in members]
    heapq.heapify(heap)
    picked: dict[int, str] = {}
    nxt = dict.fromkeys(members, 0)
    while heap and len(picked) < n:
        c, size, r, k = heapq.heappop(heap)
        if c != count[k]:  # its count grew since this entry was pushed
            heapq.heappush(heap, (count[k], size, r, k))
            continue
        while nxt[k] < size and members[k][nxt[k]] in picked:
            nxt[k] += 1
        if nxt[k] == size:
            continue  # every record of this key is picked: drop it
        i = members[k][nxt[k]]
        picked[i] = focus(records[i], k, descriptors)
        for k2 in keys_of(records[i], descriptors):
            count[k2] += 1
        heapq.heappush(heap, (count[k], size, r, k))
    return [(records[i], picked[i]) for i in sorted(picked)]


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
