"""Rows written as a source file the loaders read: JSON lines, or parquet for a `.parquet` path."""

import json
from pathlib import Path


def write(path: Path, rows: list[dict]) -> Path:
    import datasets

    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        datasets.Dataset.from_list(rows).to_parquet(str(path))
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
