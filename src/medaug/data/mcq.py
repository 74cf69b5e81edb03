"""Multiple-choice exam sources (MedQA, MedMCQA, progressive cases) -> Records with `options` and the correct letter.

Schemas:
- `medqa` (GBaker/MedQA-USMLE-4-options): question, options{A..D}, answer_idx, answer (the correct option's
  text), meta_info, metamap_phrases; rows have no id, so it is `medqa-<split>-<row>`;
- `medmcqa` (openlifescienceai/medmcqa): id, question, opa..opd, cop (0-3; -1 in the public test split, whose
  labels are hidden), choice_type, exp (the explanation, or None), subject_name, topic_name;
- `progressive` (medaug's progressive schema, MQG / ECN-QA style; there is no hub dataset): one case per row,
  {case_id, steps: [{reveal, question, options{A..D}, answer (the correct letter)}]}, each step revealing more of
  the case. Step j of case c becomes the Record `c-j` with contexts = the reveals of steps 1..j, chain = {id: c,
  step: j, steps} and history = the earlier steps' questions with their correct options' texts ([] at step 1).

Each schema is a loader (data/loaders/: medqa, medmcqa, progressive) that names its rows function here.
Sources (params `data.source`): a folder holding one `<split>.jsonl` or `<split>.parquet` per split, in the loader's
schema: the bundled synthetic rows (data/sample/<loader>/), or what `medaug data fetch` writes from the task's hub
dataset (not for `progressive`, which has none).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medaug.data.schema import Record, validate
from medaug.errors import MedaugError, one_line

LETTERS = "ABCD"


def _get(obj: Any, key: str, typ: type, where: str) -> Any:
    """obj[key] checked against `typ`; None counts as missing (the hub fills absent fields with None)."""
    if not isinstance(obj, dict) or obj.get(key) is None:
        raise MedaugError(f"{where}: missing field '{key}'")
    if not isinstance(obj[key], typ) or (typ is int and isinstance(obj[key], bool)):
        raise MedaugError(f"{where}: field '{key}' must be {typ.__name__}, got {type(obj[key]).__name__}")
    return obj[key]


def _optional_str(obj: dict, key: str, where: str) -> str | None:
    return None if obj.get(key) is None else _get(obj, key, str, where)


def _record(rid: str, question: str, options: dict[str, str], letter: str, long_answer: str, where: str) -> Record:
    # schema.validate checks the letter, empty or identical options and the empty question
    return validate({"id": rid, "question": question, "contexts": [], "options": options, "final_decision": letter,
                     "long_answer": long_answer, "source": "original"}, where)


def from_medqa_rows(rows: Any, name: str, split: str) -> list[Record]:
    """Rows in the MedQA hub schema -> Records; `name` is used in error messages."""
    records = []
    for i, row in enumerate(rows):
        where = f"{name}: row {i}"
        options = _get(row, "options", dict, where)
        for letter, text in options.items():
            if not isinstance(text, str):
                raise MedaugError(f"{where}: option {letter!r} must be str, got {type(text).__name__}")
        letter = _get(row, "answer_idx", str, where)
        if letter not in options:
            raise MedaugError(f"{where}: field 'answer_idx' must be one of {', '.join(options)} (got {letter!r})")
        answer = _optional_str(row, "answer", where)
        if answer is not None and answer.strip() != options[letter].strip():
            raise MedaugError(f"{where}: field 'answer' ({answer!r}) is not option {letter} "
                              f"({options[letter]!r}), the one 'answer_idx' names")
        records.append(_record(f"medqa-{split}-{i}", _get(row, "question", str, where), dict(options), letter, "",
                               where))
    return records


def from_medmcqa_rows(rows: Any, name: str, split: str) -> list[Record]:
    """Rows in the MedMCQA hub schema -> Records; `name` is used in error messages."""
    records, seen = [], set()
    for i, row in enumerate(rows):
        where = f"{name}: row {i}"
        rid = _get(row, "id", str, where)
        if rid in seen:
            raise MedaugError(f"{where}: duplicate id {rid!r}")
        seen.add(rid)
        cop = _get(row, "cop", int, where)
        if cop == -1:
            raise MedaugError(f"{where}: the answer is hidden (cop = -1): MedMCQA's public test split has no labels; "
                              f"use the validation split as test")
        if cop not in range(len(LETTERS)):
            raise MedaugError(f"{where}: field 'cop' must be 0, 1, 2 or 3 (got {cop})")
        options = {letter: _get(row, f"op{letter.lower()}", str, where) for letter in LETTERS}
        records.append(_record(rid, _get(row, "question", str, where), options, LETTERS[cop],
                               _optional_str(row, "exp", where) or "", where))
    return records


PROGRESSIVE_ROW = "{case_id, steps: [{reveal, question, options, answer}]}"
"""medaug's progressive schema, one case per row, as error messages name it."""


def _case_field(obj: Any, key: str, typ: type, where: str) -> Any:
    """`_get`, its error naming what a progressive row or step holds."""
    try:
        value = _get(obj, key, typ, where)
    except MedaugError as e:
        raise MedaugError(f"{e} (a row is {PROGRESSIVE_ROW})") from None
    if typ is str and not value.strip():
        raise MedaugError(f"{where}: field '{key}' is empty (a row is {PROGRESSIVE_ROW})")
    return value


def from_progressive_rows(rows: Any, name: str, split: str) -> list[Record]:
    """Rows in medaug's progressive schema (one case each) -> one Record per step, in order; `name` is used in
    error messages. Options whose text is None are dropped (arrow gives every step the union of the letters)."""
    records, seen = [], set()
    for i, row in enumerate(rows):
        where = f"{name}: row {i}"
        case_id = _case_field(row, "case_id", str, where)
        if case_id in seen:
            raise MedaugError(f"{where}: duplicate case_id {case_id!r} (give every case its own id)")
        seen.add(case_id)
        steps = row.get("steps")
        if not isinstance(steps, list) or not steps:
            got = f"{len(steps)} steps" if isinstance(steps, list) else type(steps).__name__
            raise MedaugError(f"{where}: field 'steps' must be a non-empty list of steps {{reveal, question, options, "
                              f"answer}} (got {got})")
        contexts: list[str] = []
        history: list[dict[str, str]] = []
        for j, step in enumerate(steps, 1):
            at = f"{where}: step {j}"
            reveal = _case_field(step, "reveal", str, at)
            question = _case_field(step, "question", str, at)
            options = {k: v for k, v in _case_field(step, "options", dict, at).items() if v is not None}
            for letter, text in options.items():
                if not isinstance(text, str):
                    raise MedaugError(f"{at}: option {letter!r} must be str, got {type(text).__name__}")
            letter = _case_field(step, "answer", str, at)
            if letter not in options:
                raise MedaugError(f"{at}: field 'answer' must be the letter of one of its options, "
                                  f"{', '.join(options) or 'none given'} (got {letter!r})")
            contexts.append(reveal)
            # schema.validate checks the options (at least 2, non-empty, distinct), the chain and the history
            records.append(validate({"id": f"{case_id}-{j}", "question": question, "contexts": list(contexts),
                                     "options": options, "final_decision": letter, "long_answer": "",
                                     "source": "original", "chain": {"id": case_id, "step": j, "steps": len(steps)},
                                     "history": [dict(h) for h in history]}, at))
            history.append({"question": question, "answer": options[letter]})
    return records


def read_hub_file(path: Path) -> Any:
    """The rows of a .parquet or .jsonl file in a hub schema (datasets' parquet/json builders)."""
    import datasets  # heavy import, only for these sources

    builder = "parquet" if path.suffix == ".parquet" else "json"
    try:
        return datasets.load_dataset(builder, data_files=str(path), split="train")
    except Exception as e:  # arrow/json errors: keep the message on one line
        raise MedaugError(f"{path}: cannot read as {builder} in the hub schema ({one_line(e)})") from None


def load_file(folder: Path, split: str) -> tuple[Path, Any]:
    """(the file, its rows) of `split` in the source folder `folder`: <split>.jsonl or <split>.parquet."""
    found = [folder / f"{split}{ext}" for ext in (".jsonl", ".parquet") if (folder / f"{split}{ext}").exists()]
    if not found:
        raise MedaugError(f"{folder / f'{split}.jsonl'}: file not found (the data.source folder {folder} needs "
                          f"{split}.jsonl or {split}.parquet for split '{split}')")
    if len(found) > 1:
        raise MedaugError(f"{folder}: both {split}.jsonl and {split}.parquet exist; keep one")
    return found[0], read_hub_file(found[0])


def load_splits(loader: Any, source: str, root: Path, splits: list[str]) -> dict[str, list[Record]]:
    """{split: Records} for each of `splits` of a `loaders.base.GivenSplits` loader, from the folder `source` (one
    <split>.jsonl or <split>.parquet per split); a relative folder is resolved against `root`."""
    from_rows = loader.rows
    folder = Path(root) / source  # an absolute source stays as is
    if not folder.is_dir():
        raise MedaugError(f"params.yaml: data.source = {source!r} is not a folder (the {loader.name} loader reads a "
                          f"folder with one <split>.jsonl or <split>.parquet per split)")
    out = {}
    for s in splits:
        path, rows = load_file(folder, s)
        out[s] = from_rows(rows, str(path), s)
    return out
