"""Stage `prepare`: source -> official split -> train/dev/test JSONL, the train contexts, and split counts."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from medaug.data.jsonl import write_json, write_jsonl
from medaug.data.pubmedqa import load_source
from medaug.data.schema import LABELS, Record, write_records
from medaug.data.split import official_split
from medaug.params import Params


def split_stats(records: list[Record]) -> dict[str, int]:
    counts = Counter(r.final_decision for r in records)
    return {"total": len(records), **{label: counts[label] for label in LABELS}}


def run(p: Params, root: Path, out_dir: Path, metrics_path: Path) -> dict[str, Any]:
    """Write out_dir/{train,dev,test,contexts}.jsonl and metrics_path; return {split: {total, yes, no, maybe}}."""
    records = load_source(p.data, Path(root))
    train, dev, test = official_split(records, p.data.fold, where=f"data.source {p.data.source}")
    out_dir = Path(out_dir)
    for name, split in (("train", train), ("dev", dev), ("test", test)):
        write_records(out_dir / f"{name}.jsonl", split)
    # unlabeled contexts generation may draw from: train split only, never dev or test
    write_jsonl(out_dir / "contexts.jsonl", ({"id": r.id, "contexts": r.contexts, "meshes": r.meshes} for r in train))
    stats = {name: split_stats(split) for name, split in (("train", train), ("dev", dev), ("test", test))}
    write_json(metrics_path, stats)
    return stats
