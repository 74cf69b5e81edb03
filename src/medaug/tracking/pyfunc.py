"""The registered model: a merged causal LM wrapped as an MLflow pyfunc that answers yes/no/maybe.

Input: a DataFrame, a list of dicts or a dict of columns, with `question` and `contexts` (list of str) or
`context` (str), as `medaug predict`, pyfunc.predict and `mlflow models serve` hand it over.
Output: one label per row. It scores exactly as the evaluate stage does (same Scorer, same prompt).
"""

from __future__ import annotations

import json
from importlib.metadata import version

import mlflow.pyfunc

PIP_REQUIREMENTS = [f"{pkg}=={version(pkg)}" for pkg in ("torch", "transformers", "mlflow", "pandas", "click")]


def _rows(model_input) -> list[dict]:
    """Rows from what pyfunc.predict and `mlflow models serve` hand over: a DataFrame (`dataframe_records`,
    `dataframe_split`), a list of dicts (`inputs: [{...}]`, medaug predict), a dict of columns (`inputs: {question:
    [...], contexts: [[...]]}`) or one record as a dict (`inputs: {question: ..., contexts: [...]}`); the server
    hands dicts over as numpy arrays (0-d for one string)."""
    if hasattr(model_input, "to_dict"):
        return model_input.to_dict("records")
    if isinstance(model_input, dict):
        columns = {k: v.tolist() if hasattr(v, "tolist") else v for k, v in model_input.items()}
        if isinstance(columns.get("question"), str):
            return [columns]
        return [dict(zip(columns, values)) for values in zip(*columns.values())]
    return list(model_input)


def _contexts(row: dict) -> list[str]:
    """`contexts` as a list (or numpy array) of str, or one str; else `context`. A column some rows lack holds
    None or NaN (a float) in a DataFrame."""
    for value in (row.get("contexts"), row.get("context")):
        if isinstance(value, str):
            return [value]
        if isinstance(value, (list, tuple)) or getattr(value, "ndim", 0) == 1:  # numpy array, pandas Series
            return [str(c) for c in list(value)]
    return [""]


def rows_to_records(model_input) -> list:
    from medaug.data.schema import Record

    rows = _rows(model_input)
    ids = [row.get("id") for row in rows]  # None or NaN where a DataFrame row had none
    return [Record(id=str(i if rid is None or rid != rid else rid), question=str(row["question"]),
                   contexts=_contexts(row), final_decision="yes") for i, (row, rid) in enumerate(zip(rows, ids))]


class PubMedQAClassifier(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from medaug.evaluate import Scorer
        from medaug.params import TaskParams

        with open(context.artifacts["task"]) as f:
            spec = json.load(f)
        task = TaskParams(**spec["task"])
        path = context.artifacts["model"]
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        model.eval()
        self.scorer = Scorer(model, tokenizer, task, batch_size=spec.get("batch_size", 8))

    def predict(self, context, model_input, params=None) -> list[str]:
        return [r["prediction"] for r in self.scorer.predict(rows_to_records(model_input))]
