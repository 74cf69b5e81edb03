"""PubMedQA's official PQA-L split (preprocess/split_dataset.py of github.com/pubmedqa/pubmedqa), reimplemented.

The original seeds the global `random` with 0 at import, splits the 1000 records into 2 label-stratified
halves (the second half is the 500-record test set), then splits the first half into 10 CV folds with the
same RNG. We make the same RNG calls in the same order on a private `random.Random(0)`, so the test ids
equal the keys of test_ground_truth.json and fold k's dev set equals the original pqal_fold{k}/dev_set.json.

Another label set (a PubMedQA-format file whose task names other `choices`) is stratified the same way over its
own labels, in the task's order; for yes, no, maybe the calls are the original's.

The original assumes PQA-L's 1000 records: it cuts each label's list into chunks of ceil(n / parts), which can
leave a part empty when a label has few records. We fail on such data, naming the counts, rather than write
an empty split or crash where the original would.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from medaug.data.schema import LABELS, Record
from medaug.errors import MedaugError

MIN_RECORDS = 20
"""Fewest records any label mix can split: 10 non-empty CV folds need 10 in the half that is not test."""


def _split_label(pmids: list[str], fold: int, rng: random.Random) -> list[list[str]]:
    rng.shuffle(pmids)
    n = math.ceil(len(pmids) / fold)
    return [pmids[i * n:(i + 1) * n] for i in range(fold - 1)] + [pmids[(fold - 1) * n:]]


def _split(dataset: dict[str, Record], fold: int, rng: random.Random,
           labels: Sequence[str]) -> list[dict[str, Record]]:
    label2pmid: dict[str, list[str]] = {label: [] for label in labels}
    for pmid, rec in dataset.items():
        label2pmid[rec.final_decision].append(pmid)
    chunks = {label: _split_label(pmids, fold, rng) for label, pmids in label2pmid.items()}
    output = [{pmid: dataset[pmid] for label in labels for pmid in chunks[label][i]} for i in range(fold)]
    # imbalanced: move one random pick from each other part to the last (an empty part fails in official_split)
    if len(output[-1]) != len(output[0]) and all(output[:-1]):
        for i in range(fold - 1):
            picked = rng.choice(list(output[i]))
            output[-1][picked] = output[i].pop(picked)
    return output


def official_split(records: list[Record], fold: int, where: str = "data.source", labels: Sequence[str] = LABELS
                   ) -> tuple[list[Record], list[Record], list[Record]]:
    """(train, dev, test): test is the official half; dev is CV fold `fold`, train the other 9 folds in order;
    each stratified over `labels` (the task's choices, which every record's answer is one of). `where` names the
    source in the error raised when the records are too few to fill every part."""
    dataset = {r.id: r for r in records}
    rng = random.Random(0)
    halves = _split(dataset, 2, rng, labels)
    cv_sets = _split(halves[0], 10, rng, labels) if all(halves) else []
    if not cv_sets or not all(cv_sets):
        counts = ", ".join(f"{label} {sum(r.final_decision == label for r in records)}" for label in labels)
        raise MedaugError(f"{where}: {len(records)} records ({counts}) leave a part of the official split empty: "
                          f"it needs at least {MIN_RECORDS} records, with each label's share large enough to "
                          f"reach all 10 CV folds (PQA-L has 1000)")
    test = halves[1]
    train = [r for j in range(10) if j != fold for r in cv_sets[j].values()]
    return train, list(cv_sets[fold].values()), list(test.values())
