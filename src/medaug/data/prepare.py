"""Stage `prepare`: the task's source -> its split -> train/dev/test JSONL, the train contexts, and split counts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medaug.data.jsonl import write_json, write_jsonl
from medaug.data.schema import Record, write_records
from medaug.params import Params


def split_stats(records: list[Record], labels: Sequence[str]) -> dict[str, int]:
    counts = Counter(r.final_decision for r in records)
    return {"total": len(records), **{label: counts[label] for label in labels}}


def load_split(p: Params, root: Path) -> tuple[list[Record], list[Record], list[Record]]:
    """(train, dev, test) of the task's source, read by the loader its task file names (data/loaders/)."""
    from medaug.data import loaders

    return loaders.get(p.task).load(p, Path(root))


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
