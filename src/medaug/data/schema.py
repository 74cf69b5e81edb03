"""The QA record, the same at every stage (see DESIGN.md, "Data contract")."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medaug.data.jsonl import iter_jsonl, write_jsonl
from medaug.errors import MedaugError

LABELS = ("yes", "no", "maybe")
SOURCES = ("original", "rewrite", "new", "grounded", "mesh")


@dataclass
class Record:
    id: str
    question: str
    contexts: list[str]
    final_decision: str
    long_answer: str = ""
    meshes: list[str] = field(default_factory=list)
    labels: list[str] | None = None
    source: str = "original"
    parent_id: str | None = None
    teacher: dict[str, Any] | None = None
    scores: dict[str, Any] | None = None

    @property
    def context(self) -> str:
        return " ".join(self.contexts)

    @property
    def teacher_model(self) -> str:
        """The model that wrote a generated record ("" for original data)."""
        return (self.teacher or {}).get("model", "")

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


_REQUIRED = {"id": str, "question": str, "contexts": list, "final_decision": str}
_OPTIONAL = {"long_answer": str, "meshes": list, "labels": list, "source": str, "parent_id": str,
             "teacher": dict, "scores": dict}


def validate(obj: dict[str, Any], where: str) -> Record:
    """Check one raw dict against the contract; `where` is "file:line" for the error message."""
    for key, typ in _REQUIRED.items():
        if key not in obj:
            raise MedaugError(f"{where}: missing field '{key}'")
        if not isinstance(obj[key], typ):
            raise MedaugError(f"{where}: field '{key}' must be {typ.__name__}, got {type(obj[key]).__name__}")
    for key, typ in _OPTIONAL.items():
        if obj.get(key) is not None and not isinstance(obj[key], typ):
            raise MedaugError(f"{where}: field '{key}' must be {typ.__name__}, got {type(obj[key]).__name__}")
    unknown = set(obj) - set(_REQUIRED) - set(_OPTIONAL)
    if unknown:
        raise MedaugError(f"{where}: unknown field(s) {sorted(unknown)}")
    if obj["final_decision"] not in LABELS:
        raise MedaugError(f"{where}: unknown label {obj['final_decision']!r} in 'final_decision' "
                          f"(allowed: {', '.join(LABELS)})")
    if not obj["question"].strip():
        raise MedaugError(f"{where}: field 'question' is empty")
    if not obj["contexts"] or not all(isinstance(c, str) for c in obj["contexts"]):
        raise MedaugError(f"{where}: field 'contexts' must be a non-empty list of strings")
    return Record(**obj)


def read_records(path: str | Path) -> list[Record]:
    return [validate(obj, f"{path}:{lineno}") for lineno, obj in iter_jsonl(path)]


def write_records(path: str | Path, records: Iterable[Record]) -> int:
    return write_jsonl(path, (r.to_dict() for r in records))
