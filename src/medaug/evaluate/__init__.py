"""Evaluation stage: score a candidate (base model, or base + merged LoRA adapter) on the test split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from medaug.data.jsonl import write_json, write_jsonl
from medaug.data.schema import read_records
from medaug.errors import MedaugError
from medaug.evaluate.metrics import compute_metrics
from medaug.evaluate.scorer import Scorer
from medaug.models import TRAINED, load_model_and_tokenizer
from medaug.params import Params

__all__ = ["Scorer", "compute_metrics", "load_candidate", "run"]


def load_candidate(p: Params, model: str, adapter_dir: Path | None
                   ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The base model of `model` (a short name), or the trained candidate in `adapter_dir` (its adapters merged
    into the weights, the continued-pretraining one first for dapt-* candidates), on the GPU when there is one."""
    if adapter_dir is not None and not (Path(adapter_dir) / TRAINED).exists():
        raise MedaugError(f"{adapter_dir}: no trained model here ({TRAINED} missing; run the train stage for "
                          f"{model} first)")
    lm, tokenizer = load_model_and_tokenizer(p.model_ref(model) if adapter_dir is None else str(adapter_dir))
    lm.to("cuda" if torch.cuda.is_available() else "cpu").eval()
    return lm, tokenizer


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
