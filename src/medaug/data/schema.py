"""The QA record, the same at every stage (docs/architecture.md, "The data contract")."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medaug.data.jsonl import iter_jsonl, write_jsonl
from medaug.errors import MedaugError

LABELS = ("yes", "no", "maybe")
"""PubMedQA's answers: the default label set (a task's own is `task.choices`)."""


@dataclass
class Record:
    id: str
    question: str
    contexts: list[str]
    final_decision: str
    long_answer: str = ""
    options: dict[str, str] | None = None
    """Multiple choice: letter -> option text; `final_decision` is then the correct letter."""
    meshes: list[str] = field(default_factory=list)
    labels: list[str] | None = None
    source: str = "original"
    parent_id: str | None = None
    teacher: dict[str, Any] | None = None
    scores: dict[str, Any] | None = None
    chain: dict[str, Any] | None = None
    """A progressive question (MQG/ECN-QA): {id, step, steps}, step 1..steps of the case `id`; `contexts` is the
    case so far (what steps 1..step revealed)."""
    history: list[dict[str, str]] | None = None
    """A progressive question's earlier steps, in order: [{question, answer}] (the answer as its option's text)."""

    @property
    def context(self) -> str:
        return " ".join(self.contexts)

    @property
    def options_text(self) -> str:
        """A multiple-choice item's option texts, in letter order ("" without options)."""
        return " ".join((self.options or {}).values())

    @property
    def item_text(self) -> str:
        """What makes the item the item it is, for near-duplicate checks: the question, and its option texts in
        sorted order (options only reordered are the same item)."""
        return " ".join([self.question, *sorted((self.options or {}).values())])

    @property
    def unit(self) -> str:
        """What is split, kept, dropped and sampled whole: a progressive question's chain, else the record."""
        return self.chain["id"] if self.chain else self.id

    @property
    def teacher_model(self) -> str:
        """The model that wrote a generated record ("" for original data)."""
        return (self.teacher or {}).get("model", "")

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def render_options(options: dict[str, str] | None) -> str:
    """A multiple-choice item's options as lm-eval writes them: one "A. text" line per letter."""
    return "\n".join(f"{letter}. {text}" for letter, text in (options or {}).items())


def render_history(history: list[dict[str, str]] | None) -> str:
    """A progressive question's earlier steps as prompt lines ("" for none): each question and its answer."""
    return "".join(f"Earlier question: {h['question']}\nIts answer: {h['answer']}\n" for h in history or ())


def shuffle_options(record: Record, seed: int | str, moved: bool = False) -> Record:
    """The record with its option texts in a seeded order (per item: `seed` and its id), the letters kept in
    place and the answer letter moved with its text. `moved`: never the order it had (a draw that keeps it is
    rotated by one)."""
    order = list(range(len(record.options or {})))
    random.Random(f"{seed}:{record.id}").shuffle(order)
    if moved and order == sorted(order):
        order = order[1:] + order[:1]
    letters, texts = list(record.options or {}), list((record.options or {}).values())
    options = {letter: texts[i] for letter, i in zip(letters, order)}  # letter i holds the text at order[i]
    answer = letters[order.index(letters.index(record.final_decision))]
    return dataclasses.replace(record, options=options, final_decision=answer)


_REQUIRED = {"id": str, "question": str, "contexts": list, "final_decision": str}
_OPTIONAL = {"long_answer": str, "options": dict, "meshes": list, "labels": list, "source": str, "parent_id": str,
             "teacher": dict, "scores": dict, "chain": dict, "history": list}


def validate(obj: dict[str, Any], where: str, labels: Sequence[str] | None = None) -> Record:
    """Check one raw dict against the contract; `where` is "file:line" for the error message. The answer
    (`final_decision`) is one of `labels` (the task's choices; None: any non-empty answer), or with `options`
    one of their letters; a multiple-choice record may have no contexts (an exam stem is the whole question).
    Data entering the pipeline (a source, a teacher's items) is checked against the task's choices; a stage
    that reads what another wrote passes them when it depends on the task."""
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
    options = obj.get("options")
    allowed = list(options) if options is not None else list(labels) if labels is not None else None
    if options is not None:
        texts = list(options.values())
        if len(options) < 2 or not all(isinstance(t, str) and t.strip() for t in texts):
            raise MedaugError(f"{where}: field 'options' must map at least 2 letters to non-empty texts")
        if len({" ".join(t.lower().split()) for t in texts}) != len(texts):
            raise MedaugError(f"{where}: field 'options' has two identical options")
    if allowed is None and not obj["final_decision"].strip():
        raise MedaugError(f"{where}: field 'final_decision' is empty")
    if allowed is not None and obj["final_decision"] not in allowed:
        what = "answer letter" if options is not None else "label"
        raise MedaugError(f"{where}: unknown {what} {obj['final_decision']!r} in 'final_decision' "
                          f"(allowed: {', '.join(allowed)})")
    if not obj["question"].strip():
        raise MedaugError(f"{where}: field 'question' is empty")
    if not all(isinstance(c, str) for c in obj["contexts"]) or (not obj["contexts"] and options is None):
        raise MedaugError(f"{where}: field 'contexts' must be a "
                          f"{'' if options is not None else 'non-empty '}list of strings")
    if obj.get("chain") is not None or obj.get("history") is not None:
        _check_chain(obj, where)
    return Record(**obj)


def is_history(history: Any) -> bool:
    """A progressive question's `history`: a list of {question, answer} string pairs."""
    return isinstance(history, list) and all(
        isinstance(h, dict) and set(h) == {"question", "answer"} and all(isinstance(v, str) for v in h.values())
        for h in history)


def _check_chain(obj: dict[str, Any], where: str) -> None:
    chain, history = obj.get("chain"), obj.get("history") or []
    ok = (isinstance(chain, dict) and set(chain) == {"id", "step", "steps"} and isinstance(chain["id"], str)
          and chain["id"] and all(type(chain[k]) is int for k in ("step", "steps"))
          and 1 <= chain["step"] <= chain["steps"])
    if not ok:
        raise MedaugError(f"{where}: field 'chain' must be {{id, step, steps}} with 1 <= step <= steps (got {chain!r})")
    if len(history) != chain["step"] - 1 or not is_history(history):
        raise MedaugError(f"{where}: field 'history' must hold the {chain['step'] - 1} earlier step(s) of chain "
                          f"{chain['id']!r} as {{question, answer}} (got {len(history)})")


def read_records(path: str | Path, labels: Sequence[str] | None = None) -> list[Record]:
    return [validate(obj, f"{path}:{lineno}", labels) for lineno, obj in iter_jsonl(path)]


def write_records(path: str | Path, records: Iterable[Record]) -> int:
    return write_jsonl(path, (r.to_dict() for r in records))
