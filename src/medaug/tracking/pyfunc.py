"""The registered model: a merged causal LM wrapped as an MLflow pyfunc that answers yes/no/maybe.

Input: a DataFrame (or list of dicts) with `question` and `contexts` (list of str) or `context` (str).
Output: one label per row. It scores exactly as the evaluate stage does (same Scorer, same prompt).
"""

from __future__ import annotations

import json
from importlib.metadata import version

import mlflow.pyfunc

PIP_REQUIREMENTS = [f"{pkg}=={version(pkg)}" for pkg in ("torch", "transformers", "mlflow", "pandas", "click")]


def rows_to_records(model_input) -> list:
    from medaug.data.schema import Record

    rows = model_input.to_dict("records") if hasattr(model_input, "to_dict") else list(model_input)
    records = []
    for i, row in enumerate(rows):
        contexts = row.get("contexts")
        if contexts is None or (not isinstance(contexts, (list, tuple)) and not hasattr(contexts, "tolist")):
            contexts = [row.get("context") or ""]
        records.append(Record(id=str(row.get("id", i)), question=str(row["question"]),
                              contexts=[str(c) for c in list(contexts)], final_decision="yes"))
    return records


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
