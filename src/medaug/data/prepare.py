"""Stage `prepare`: the task's source -> its split -> train/dev/test JSONL, the train contexts, split counts and
what the source was (its path, a digest of its bytes, and where it came from)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medaug.data.jsonl import write_json, write_jsonl
from medaug.data.schema import Record, write_records
from medaug.digest import sha256_files
from medaug.params import Params


def split_stats(records: list[Record], labels: Sequence[str]) -> dict[str, int]:
    counts = Counter(r.final_decision for r in records)
    return {"total": len(records), **{label: counts[label] for label in labels}}


def load_split(p: Params, root: Path) -> tuple[list[Record], list[Record], list[Record]]:
    """(train, dev, test) of the task's source, read by the loader its task file names (data/loaders/)."""
    from medaug.data import loaders

    return loaders.get(p.task).load(p, Path(root))


ORIGIN = "medaug_source.json"
"""Where a source came from, inside its folder (or beside its file): `medaug data fetch` writes {hub_id, config,
revision, ...}; the bundled samples say {"synthetic": true, ...}."""


def provenance(source: str, root: Path) -> dict[str, Any]:
    """{path, sha256, origin} of the data.source `source`: the sha256 of its file, or of every file of its folder
    (digest.sha256_files: names and bytes), so two reports name the same bytes exactly when they are; `origin` is
    its ORIGIN file ({} without one: a file of the user's)."""
    path = Path(source) if Path(source).is_absolute() else Path(root) / source
    folder = path if path.is_dir() else path.parent
    files = [f for f in path.rglob("*") if f.is_file()] if path.is_dir() else [path]
    origin = folder / ORIGIN
    return {"path": source, "sha256": sha256_files(folder, files),
            "origin": json.loads(origin.read_text()) if origin.is_file() else {}}


def run(p: Params, root: Path, out_dir: Path, metrics_path: Path) -> dict[str, Any]:
    """Write out_dir/{train,dev,test,contexts}.jsonl and metrics_path ({split: {total, <answer>: count}, source:
    provenance}); return the counts."""
    train, dev, test = load_split(p, root)
    out_dir = Path(out_dir)
    for name, split in (("train", train), ("dev", dev), ("test", test)):
        write_records(out_dir / f"{name}.jsonl", split)
    # unlabeled contexts generation may draw from: train split only, never dev or test
    write_jsonl(out_dir / "contexts.jsonl", ({"id": r.id, "contexts": r.contexts, "meshes": r.meshes} for r in train))
    stats = {name: split_stats(split, p.task.choices) for name, split in (("train", train), ("dev", dev), ("test", test))}
    write_json(metrics_path, {**stats, "source": provenance(p.data.source, root)})
    return stats
