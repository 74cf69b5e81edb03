"""PubMedQA-format sources -> Records, in the source's own order (the official split depends on it). Answers are
the task's `choices` (PubMedQA's yes, no, maybe by default; a PubMedQA-format file of another label set names
its own in its task file).

Sources (params `data.source`, a path):
- `*.json`: PubMedQA's original `ori_pqal.json` (dict PMID -> {QUESTION, CONTEXTS, LABELS, MESHES, ...}); the
  bundled synthetic sample (data/sample/ori_pqal_sample.json) is one;
- `*.parquet` / `*.jsonl`: a local file in the hub schema (pubid, question, context{contexts, labels, meshes, ...},
  long_answer, final_decision);
- a folder holding `train.parquet` or `train.jsonl` in the hub schema: what `medaug data fetch` writes from
  `task.hub_id` / `task.hub_config` (PubMedQA's pqa_labeled has one split, train).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medaug.data.jsonl import read_json
from medaug.data.schema import LABELS, Record, validate
from medaug.errors import MedaugError
from medaug.params import DataParams, TaskParams


def _get(obj: dict[str, Any], key: str, typ: type, where: str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise MedaugError(f"{where}: missing field '{key}'")
    if not isinstance(obj[key], typ):
        raise MedaugError(f"{where}: field '{key}' must be {typ.__name__}, got {type(obj[key]).__name__}")
    return obj[key]


def _record(rid: str, question: str, contexts: list, labels: list, meshes: list, long_answer: str,
            decision: str, where: str, choices: Sequence[str]) -> Record:
    # schema.validate checks the answer is one of the task's choices, the empty question/contexts, element types
    return validate({"id": rid, "question": question, "contexts": contexts, "labels": labels,
                     "meshes": meshes, "long_answer": long_answer, "final_decision": decision,
                     "source": "original"}, where, choices)


def from_original(path: Path, choices: Sequence[str] = LABELS) -> list[Record]:
    """PubMedQA's ori_pqal.json: a dict keyed by PMID, in file order; answers among `choices`."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise MedaugError(f"{path}: expected a JSON object keyed by PMID, got {type(data).__name__}")
    records = []
    for pmid, item in data.items():
        where = f"{path}: PMID {pmid}"
        if not isinstance(item, dict):
            raise MedaugError(f"{where}: expected an object, got {type(item).__name__}")
        records.append(_record(
            str(pmid), _get(item, "QUESTION", str, where), _get(item, "CONTEXTS", list, where),
            _get(item, "LABELS", list, where), _get(item, "MESHES", list, where),
            _get(item, "LONG_ANSWER", str, where), _get(item, "final_decision", str, where), where, choices))
    return records


def from_hub_rows(rows: Any, name: str, choices: Sequence[str] = LABELS) -> list[Record]:
    """Rows in the hub schema (qiaojin/PubMedQA, pqa_labeled) -> Records, answers among `choices`; `name` is used
    in error messages."""
    records, seen = [], set()
    for i, row in enumerate(rows):
        where = f"{name}: row {i}"
        pubid = _get(row, "pubid", object, where)
        if isinstance(pubid, bool) or not isinstance(pubid, (int, str)):
            raise MedaugError(f"{where}: field 'pubid' must be int or str, got {type(pubid).__name__}")
        where = f"{name}: row {i} (pubid {pubid})"
        if str(pubid) in seen:
            raise MedaugError(f"{where}: duplicate pubid")
        seen.add(str(pubid))
        ctx = _get(row, "context", dict, where)
        records.append(_record(
            str(pubid), _get(row, "question", str, where), _get(ctx, "contexts", list, f"{where} context"),
            _get(ctx, "labels", list, f"{where} context"), _get(ctx, "meshes", list, f"{where} context"),
            _get(row, "long_answer", str, where), _get(row, "final_decision", str, where), where, choices))
    return records


def _load_hub_file(path: Path, choices: Sequence[str]) -> list[Record]:
    from medaug.data.mcq import read_hub_file

    if not path.exists():
        raise MedaugError(f"{path}: file not found (params.yaml data.source)")
    return from_hub_rows(read_hub_file(path), str(path), choices)


def load_source(p: DataParams, root: Path, task: TaskParams | None = None) -> list[Record]:
    """Records from `p.source`, in the source's order; a relative path is resolved against `root`; `task` names the
    answers (default: PubMedQA's)."""
    choices = (task or TaskParams()).choices
    path = Path(p.source)
    if not path.is_absolute():
        path = Path(root) / path
    if path.is_dir():
        from medaug.data.mcq import load_file

        found, rows = load_file(path, "train")
        return from_hub_rows(rows, str(found), choices)
    if path.suffix == ".json":
        return from_original(path, choices)
    if path.suffix in (".parquet", ".jsonl"):
        return _load_hub_file(path, choices)
    raise MedaugError(f"params.yaml: data.source = {p.source!r} is not valid (allowed: a path ending in .json, "
                      f".parquet or .jsonl, or a folder with train.parquet or train.jsonl)")
