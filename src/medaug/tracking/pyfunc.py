"""The registered model: a merged causal LM wrapped as an MLflow pyfunc that answers in its task's format.

Input: a DataFrame, a list of dicts or a dict of columns, with `question` and `contexts` (list of str) or
`context` (str), and for a multiple-choice task `options` ({"A": "...", ...}; contexts may then be left out) and,
for a progressive question, `history` (the earlier steps: [{"question": ..., "answer": ...}], the case so far in
`contexts`), as `medaug predict`, pyfunc.predict and `mlflow models serve` hand it over.
Output: one answer per row: a label (yes/no/maybe for PubMedQA), or an option letter. It scores exactly as the
evaluate stage does (same Scorer, same prompt).
Input of another shape (no `question`, a number for text, no row at all) is refused with one message naming the row
and the field, which `mlflow models serve` returns as HTTP 400; nothing is guessed.
"""

from __future__ import annotations

import json
import math
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow.pyfunc

from medaug.errors import MedaugError

if TYPE_CHECKING:
    from medaug.data.schema import Record

PIP_REQUIREMENTS = [f"{pkg}=={version(pkg)}" for pkg in ("torch", "transformers", "mlflow", "pandas", "click")]

EXPECTED = "objects with `question` (a string) and `contexts` (a list of strings) or `context` (a string)"
EXAMPLE = '{"id": "1", "question": "Does ...?", "contexts": ["..."]}'


class InvalidInput(MedaugError):
    """Model input of the wrong shape. The served model turns it into HTTP 400 with this message."""


def _plain(value: Any) -> Any:
    """Python lists and scalars for the numpy arrays and scalars the scoring server hands JSON values over as."""
    return value.tolist() if hasattr(value, "tolist") else value


def _missing(value: Any) -> bool:
    """None, or the NaN a DataFrame holds where a row lacks a column."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _got(value: Any) -> str:
    return "an empty list" if isinstance(value, list) and not value else type(value).__name__


def _columns(columns: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of a dict of columns, each holding one value per question (zip would silently drop the extra ones)."""
    n = len(columns["question"])
    for key, values in columns.items():
        if not isinstance(values, list) or len(values) != n:
            got = f"{len(values)} values" if isinstance(values, list) else _got(values)
            raise InvalidInput(f"model input: column `{key}` must hold one value per question ({n}), got {got}")
    return [dict(zip(columns, values)) for values in zip(*columns.values())]


def _rows(model_input: Any) -> list[Any]:
    """Rows from what pyfunc.predict and `mlflow models serve` hand over: a DataFrame (`dataframe_records`,
    `dataframe_split`), a list of dicts (`inputs: [{...}]`, medaug predict), a dict of columns (`inputs: {question:
    [...], contexts: [[...]]}`) or one record as a dict (`inputs: {question: ..., contexts: [...]}`); the server
    hands dicts over as numpy arrays (0-d for one string)."""
    import pandas as pd

    if isinstance(model_input, pd.DataFrame):
        return model_input.to_dict("records")
    model_input = _plain(model_input)
    if isinstance(model_input, dict):
        columns = {k: _plain(v) for k, v in model_input.items()}
        return _columns(columns) if isinstance(columns.get("question"), list) else [columns]
    if isinstance(model_input, (list, tuple)):
        return list(model_input)
    raise InvalidInput(f"model input: expected a list of {EXPECTED} (or a DataFrame or a dict of such columns), "
                       f"got {_got(model_input)}")


def _question(row: dict[str, Any], at: str) -> str:
    question = row.get("question")
    if _missing(question):
        raise InvalidInput(f"{at}: no `question` (a non-empty string)")
    if not isinstance(question, str) or not question.strip():
        raise InvalidInput(f"{at}: `question` must be a non-empty string, got "
                           f"{'an empty string' if isinstance(question, str) else _got(question)}")
    return question


def _contexts(row: dict[str, Any], at: str) -> list[str]:
    """`contexts` as a non-empty list of str, or one str; else `context`, a str. A column some rows lack holds None
    or NaN in a DataFrame."""
    contexts, context = row.get("contexts"), row.get("context")
    if not _missing(contexts):
        if isinstance(contexts, str):
            return [contexts]
        if not isinstance(contexts, (list, tuple)) or not contexts:
            raise InvalidInput(f"{at}: `contexts` must be a non-empty list of strings, got {_got(contexts)}")
        for i, c in enumerate(contexts):
            if not isinstance(c, str):
                raise InvalidInput(f"{at}: `contexts[{i}]` must be a string, got {_got(c)}")
        return list(contexts)
    if not _missing(context):
        if isinstance(context, str):
            return [context]
        raise InvalidInput(f"{at}: `context` must be a string, got {_got(context)}")
    raise InvalidInput(f"{at}: no `contexts` (a list of strings) or `context` (a string)")


def _options(row: dict[str, Any], at: str) -> dict[str, str] | None:
    """`options` as {letter: text} with 2 or more non-empty texts, or None when the row has none."""
    options = row.get("options")
    if _missing(options):
        return None
    if not isinstance(options, dict) or len(options) < 2 or not all(
            isinstance(t, str) and t.strip() for t in options.values()):
        raise InvalidInput(f"{at}: `options` must map 2 or more letters to non-empty strings, got {_got(options)}")
    return {str(k): v for k, v in options.items()}


def _history(row: dict[str, Any], at: str) -> list[dict[str, str]] | None:
    """`history` as [{question, answer}] (strings), or None when the row has none."""
    history = row.get("history")
    if _missing(history):
        return None
    from medaug.data.schema import is_history

    if not is_history(history):
        raise InvalidInput(f"{at}: `history` must be a list of {{\"question\": str, \"answer\": str}} (the earlier "
                           f"steps of a progressive case), got {_got(history)}")
    return history


def model_input(record: Record) -> dict[str, Any]:
    """The input row that asks the registered model about `record`."""
    return {"question": record.question, **({"contexts": record.contexts} if record.contexts else {}),
            **({"options": record.options} if record.options else {}),
            **({"history": record.history} if record.history else {})}


def to_record(row: Any, where: str, default_id: str) -> Record:
    """One input row as a Record to score, or InvalidInput naming the row (`where`, and its id when it has one),
    the field and what it must be. The one check of the input shape, for pyfunc.predict, the server and
    `medaug predict`."""
    from medaug.data.schema import Record

    if not isinstance(row, dict):
        raise InvalidInput(f"{where}: expected one of {EXPECTED}, got {_got(row)}")
    row = {k: _plain(v) for k, v in row.items()}
    rid = None if _missing(row.get("id")) else row["id"]
    if isinstance(rid, bool) or not isinstance(rid, (str, int, float, type(None))):
        raise InvalidInput(f"{where}: `id` must be a string or a number, got {_got(rid)}")
    at = where if rid is None else f"{where} (id {str(rid)!r})"
    question, options = _question(row, at), _options(row, at)
    no_context = options is not None and _missing(row.get("contexts")) and _missing(row.get("context"))
    return Record(id=default_id if rid is None else str(rid), question=question,
                  contexts=[] if no_context else _contexts(row, at), options=options, final_decision="",
                  history=_history(row, at))


def rows_to_records(model_input: Any) -> list[Record]:
    """The Records to score, one per input row (id: the row's `id`, else its index); a row of the wrong shape, or
    no row at all, raises InvalidInput."""
    rows = _rows(model_input)
    if not rows:
        raise InvalidInput(f"model input: no rows; expected a list of {EXPECTED}")
    return [to_record(row, f"row {i}", str(i)) for i, row in enumerate(rows)]


def read_predict_input(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a `medaug predict --input` JSONL file as {id, question, contexts, ...} (id: the row's index when the
    line has none), each checked as the served model checks its input, before any model loads. A line that is not
    UTF-8 or not a JSON object fails in iter_jsonl, naming file and line."""
    from medaug.data.jsonl import iter_jsonl

    rows = []
    for lineno, obj in iter_jsonl(path):
        record = to_record(obj, f"{path}:{lineno}", str(len(rows)))
        rows.append({"id": record.id, **model_input(record)})
    if not rows:
        raise MedaugError(f"{path}: no input rows; write one JSON object per line, e.g. {EXAMPLE}")
    return rows


class PubMedQAClassifier(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from medaug.evaluate import Scorer
        from medaug.params import SplitParams, TaskParams

        with open(context.artifacts["task"]) as f:
            spec = json.load(f)
        task = TaskParams(**{**spec["task"], "split": SplitParams(**spec["task"].get("split", {}))})
        path = context.artifacts["model"]
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        model.eval()
        self.scorer = Scorer(model, tokenizer, task, batch_size=spec.get("batch_size", 8))

    def predict(self, context, model_input, params=None) -> list[str]:
        from mlflow.exceptions import MlflowException

        try:
            records = rows_to_records(model_input)
            task = self.scorer.task
            for i, r in enumerate(records):
                if task.answer == "options" and sorted(r.options or ()) != sorted(task.choices):
                    raise InvalidInput(f"row {i}: this model answers multiple choice: give `options` with the "
                                       f"letters {', '.join(task.choices)}, e.g. {{\"A\": \"...\", ...}}")
                if task.answer == "labels" and r.options:
                    raise InvalidInput(f"row {i}: this model answers {'/'.join(task.choices)}; it takes no `options`")
        except InvalidInput as e:  # INVALID_PARAMETER_VALUE: `mlflow models serve` answers 400 with this message
            raise MlflowException.invalid_parameter_value(str(e)) from None
        return [r["prediction"] for r in self.scorer.predict(records)]
