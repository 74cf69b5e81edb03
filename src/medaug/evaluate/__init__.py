"""Evaluation stage: score a candidate (base model, or base + merged LoRA adapter) on the test split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from medaug.data.jsonl import write_json, write_jsonl
from medaug.data.schema import read_records
from medaug.errors import MedaugError
from medaug.evaluate.metrics import compute_metrics
from medaug.evaluate.scorer import Scorer
from medaug.models import load_model_and_tokenizer
from medaug.params import Params

__all__ = ["Scorer", "compute_metrics", "load_candidate", "run"]


def load_candidate(p: Params, model: str, adapter_dir: Path | None
                   ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The base model of `model` (a short name), with the LoRA adapter in `adapter_dir` merged into its weights."""
    base, tokenizer = load_model_and_tokenizer(p.model_ref(model))
    if adapter_dir is not None:
        adapter_dir = Path(adapter_dir)
        if not (adapter_dir / "adapter_config.json").exists():
            raise MedaugError(f"{adapter_dir}: no LoRA adapter here (adapter_config.json missing; run the train "
                              f"stage for {model} first)")
        base = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
    base.to("cuda" if torch.cuda.is_available() else "cpu").eval()
    return base, tokenizer


def run(p: Params, model: str, variant: str, test_path: Path, adapter_dir: Path | None, out_dir: Path,
        metrics_path: Path, confusion_path: Path) -> dict[str, Any]:
    """Write out_dir/predictions.jsonl, metrics_path and confusion_path (rows for DVC's confusion template)."""
    if variant != "zero-shot" and adapter_dir is None:
        raise MedaugError(f"evaluate: variant {variant!r} needs its adapter directory (only zero-shot has none)")
    records = read_records(test_path)
    if not records:
        raise MedaugError(f"{test_path}: no test records")
    lm, tokenizer = load_candidate(p, model, None if variant == "zero-shot" else adapter_dir)
    predictions = Scorer(lm, tokenizer, p.task, p.evaluate.batch_size).predict(records)
    golds = [r.final_decision for r in records]
    preds = [row["prediction"] for row in predictions]
    out_dir = Path(out_dir)
    write_jsonl(out_dir / "predictions.jsonl",
                ({"id": r.id, "gold": r.final_decision, **{k: v for k, v in row.items() if k != "id"}}
                 for r, row in zip(records, predictions)))
    write_json(confusion_path, [{"actual": g, "predicted": q} for g, q in zip(golds, preds)])
    scores = compute_metrics(golds, preds)
    metrics = {"accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"], "n": scores["n"], "model": model,
               "variant": variant, "base": p.model_ref(model), "per_class": scores["per_class"]}
    write_json(metrics_path, metrics)
    return metrics
