"""`pubmedqa`: PubMedQA's ori_pqal.json, or the hub's rows (data/pubmedqa.py), with its official split."""

from __future__ import annotations

from pathlib import Path

from medaug.data.loaders.base import Loader, Split
from medaug.data.pubmedqa import load_source
from medaug.data.split import official_split
from medaug.errors import MedaugError
from medaug.params import Params


class PubMedQA(Loader):
    def load(self, p: Params, root: Path) -> Split:
        task = p.task
        if task.split.kind != "pubmedqa":
            raise MedaugError(f"{task.file or 'task'}: split.kind {task.split.kind!r} needs named source splits; "
                              f"the pubmedqa loader reads one set of records (use split: {{kind: pubmedqa}})")
        records = load_source(p.data, Path(root), task)
        return official_split(records, p.data.fold, f"data.source {p.data.source}", task.choices)


LOADER = PubMedQA("pubmedqa")
