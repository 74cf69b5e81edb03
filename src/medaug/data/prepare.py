"""Stage `prepare`: the task's source -> its split -> train/dev/test JSONL, the train contexts, and split counts."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medaug.data.jsonl import write_json, write_jsonl
from medaug.data.schema import Record, shuffle_options, write_records
from medaug.errors import MedaugError
from medaug.params import Params


def split_stats(records: list[Record], labels: Sequence[str]) -> dict[str, int]:
    counts = Counter(r.final_decision for r in records)
    return {"total": len(records), **{label: counts[label] for label in labels}}


def load_split(p: Params, root: Path) -> tuple[list[Record], list[Record], list[Record]]:
    """(train, dev, test) of the task's source (see params TaskParams.loader and SplitParams)."""
    task = p.task
    if task.loader == "pubmedqa":
        from medaug.data.pubmedqa import load_source
        from medaug.data.split import official_split

        records = load_source(p.data, Path(root), task)
        if task.split.kind == "pubmedqa":
            return official_split(records, p.data.fold, f"data.source {p.data.source}", task.choices)
        raise MedaugError(f"{task.file or 'task'}: split.kind {task.split.kind!r} needs named source splits; the "
                          f"pubmedqa loader reads one set of records (use split: {{kind: pubmedqa}})")
    from medaug.data.mcq import load_splits

    if task.split.kind != "given":
        raise MedaugError(f"{task.file or 'task'}: split.kind {task.split.kind!r} is PubMedQA's split; the "
                          f"{task.loader} loader reads named splits (use split: {{kind: given, ...}})")
    splits = load_splits(task.loader, p.data.source, Path(root), task.hub_id, task.hub_config,
                         [task.split.train, task.split.test])
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


def run(p: Params, root: Path, out_dir: Path, metrics_path: Path) -> dict[str, Any]:
    """Write out_dir/{train,dev,test,contexts}.jsonl and metrics_path; return {split: {total, <answer>: count}}."""
    train, dev, test = load_split(p, root)
    out_dir = Path(out_dir)
    for name, split in (("train", train), ("dev", dev), ("test", test)):
        write_records(out_dir / f"{name}.jsonl", split)
    # unlabeled contexts generation may draw from: train split only, never dev or test
    write_jsonl(out_dir / "contexts.jsonl", ({"id": r.id, "contexts": r.contexts, "meshes": r.meshes} for r in train))
    stats = {name: split_stats(split, p.task.choices) for name, split in (("train", train), ("dev", dev), ("test", test))}
    write_json(metrics_path, stats)
    return stats
