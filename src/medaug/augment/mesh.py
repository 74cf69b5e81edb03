"""MeSH-balanced sampling for the `mesh` strategy (KAILIN: question generation guided by the MeSH hierarchy).

PubMedQA records carry their MeSH headings (`meshes`), very unevenly: in PQA-L `Humans` is on 96% of the
records and 58% of its 3,408 headings are on one record each, so a random sample is mostly about the same few
topics. `balanced_pick` instead keeps asking for the heading covered least so far (rarest first), so a sample
of n records reaches as many headings, as evenly, as the records allow. With a descriptors file (read by
medaug.data.mesh, shared with the data card's coverage counts) it balances MeSH tree branches (the tree
number's top level, e.g. C14 Cardiovascular Diseases) instead of headings.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Mapping, Sequence

from medaug.data.mesh import branches, keys_of
from medaug.data.schema import Record


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
