"""`medaug data fetch`: the task's dataset on the Hugging Face Hub, at a pinned revision, as a folder `data.source`
can name.

The prepare stage never reads the network: a source read from the hub has no bytes DVC can hash, and the hub's
`main` moves, so the same `dvc repro` could train on other data tomorrow. fetch downloads the task file's `hub_id`
at `hub_revision` (a commit sha pins it; without one, the hub's `main` at that moment) through huggingface_hub,
reads the split files with datasets (the dataset's own layout: its README's `configs:` or the hub's file-name
conventions), and writes one `<split>.parquet` per split the task reads, plus `medaug_source.json` (hub_id,
config, the commit sha, rows per split). prepare records that file in reports/prepare.json, and the model cards
name the revision. Track the folder with `dvc add` (or git), as any data a stage depends on.

Nothing in stages/ imports this module.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from medaug.data.prepare import ORIGIN
from medaug.errors import MedaugError, one_line
from medaug.params import TaskParams


def splits(task: TaskParams) -> list[str]:
    """The source splits the task's loader reads: PubMedQA's one set (`train`), or the named train and test."""
    return ["train"] if task.split.kind == "pubmedqa" else list(dict.fromkeys([task.split.train, task.split.test]))


def fetch(task: TaskParams, out: Path, revision: str | None = None) -> dict[str, Any]:
    """Write `out`/<split>.parquet for each of the task's splits and `out`/medaug_source.json; return the latter's
    content. `revision` (default: the task file's hub_revision, else main) is resolved to its commit sha. `out` is
    replaced only once every split is written."""
    import datasets
    from huggingface_hub import snapshot_download

    if not task.hub_id:
        raise MedaugError(f"{task.file or 'task'}: the task names no hub dataset (hub_id); point data.source at a "
                          f"folder with one <split>.jsonl or <split>.parquet per split")
    wanted = revision or task.hub_revision or "main"
    ref = f"{task.hub_id}@{wanted}"
    try:
        snapshot = Path(snapshot_download(task.hub_id, repo_type="dataset", revision=wanted))
    except Exception as e:
        raise MedaugError(f"medaug data fetch: cannot download the dataset {ref} ({one_line(e)}); check the task "
                          f"file's hub_id and hub_revision, the network, or HF_TOKEN for a gated dataset") from None
    commit = snapshot.name  # the hub cache names a snapshot by its commit
    out = Path(out)
    tmp = out.with_name(f".{out.name}.fetching")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    rows = {}
    for split in splits(task):
        try:
            ds = datasets.load_dataset(str(snapshot), task.hub_config, split=split)
        except Exception as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise MedaugError(f"medaug data fetch: {ref} (config {task.hub_config}) has no readable split "
                              f"'{split}' ({one_line(e)}); the task file's split names the splits it reads") from None
        ds.to_parquet(str(tmp / f"{split}.parquet"))
        rows[split] = len(ds)
    origin = {"hub_id": task.hub_id, "config": task.hub_config, "revision": commit, "requested": wanted,
              "rows": rows}
    (tmp / ORIGIN).write_text(json.dumps(origin, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return origin
