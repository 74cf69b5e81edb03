"""PubMedQA's official PQA-L split (preprocess/split_dataset.py of github.com/pubmedqa/pubmedqa), reimplemented.

The original seeds the global `random` with 0 at import, splits the 1000 records into 2 label-stratified
halves (the second half is the 500-record test set), then splits the first half into 10 CV folds with the
same RNG. We make the same RNG calls in the same order on a private `random.Random(0)`, so the test ids
equal the keys of test_ground_truth.json and fold k's dev set equals the original pqal_fold{k}/dev_set.json.
"""

from __future__ import annotations

import math
import random

from medaug.data.schema import Record


def _split_label(pmids: list[str], fold: int, rng: random.Random) -> list[list[str]]:
    rng.shuffle(pmids)
    n = math.ceil(len(pmids) / fold)
    return [pmids[i * n:(i + 1) * n] for i in range(fold - 1)] + [pmids[(fold - 1) * n:]]


def _split(dataset: dict[str, Record], fold: int, rng: random.Random) -> list[dict[str, Record]]:
    label2pmid: dict[str, list[str]] = {"yes": [], "no": [], "maybe": []}
    for pmid, rec in dataset.items():
        label2pmid[rec.final_decision].append(pmid)
    chunks = {label: _split_label(pmids, fold, rng) for label, pmids in label2pmid.items()}
    output = [{pmid: dataset[pmid] for label in ("yes", "no", "maybe") for pmid in chunks[label][i]}
              for i in range(fold)]
    if len(output[-1]) != len(output[0]):  # imbalanced: move one random pick from each other part to the last
        for i in range(fold - 1):
            picked = rng.choice(list(output[i]))
            output[-1][picked] = output[i].pop(picked)
    return output


def official_split(records: list[Record], fold: int) -> tuple[list[Record], list[Record], list[Record]]:
    """(train, dev, test): test is the official half; dev is CV fold `fold`, train the other 9 folds in order."""
    dataset = {r.id: r for r in records}
    rng = random.Random(0)
    cv_set, test = _split(dataset, 2, rng)
    cv_sets = _split(cv_set, 10, rng)
    train = [r for j in range(10) if j != fold for r in cv_sets[j].values()]
    return train, list(cv_sets[fold].values()), list(test.values())
