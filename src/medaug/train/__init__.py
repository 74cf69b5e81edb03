"""Train stage: LoRA fine-tuning of a causal LM with a completion-only loss (only the answer tokens count).

The batch is left-padded, so every answer sits in the last columns and logits are computed only there
(`logits_to_keep`): with Gemma's 262k vocab the full-sequence projection would dominate the cost.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, get_peft_model
from transformers import Trainer, TrainingArguments, set_seed

from medaug.data.jsonl import write_json
from medaug.data.schema import read_records
from medaug.errors import MedaugError
from medaug.evaluate.task import answer_logprobs, collate, encode
from medaug.models import load_model_and_tokenizer
from medaug.params import Params

VARIANTS = ("original", "augmented")


def completion_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean negative log-likelihood of the answer tokens of a collated batch."""
    mask = batch["answer_mask"]
    return -answer_logprobs(model, batch).sum() / mask.sum().clamp(min=1)


class CompletionTrainer(Trainer):
    loss_is_scaled_for_ga = False  # compute_loss returns a per-micro-batch mean; Trainer divides by grad_accum

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = completion_loss(model, inputs)
        return (loss, None) if return_outputs else loss


def run(p: Params, model: str, variant: str, train_path: Path, out_dir: Path, metrics_path: Path) -> dict[str, Any]:
    """Fine-tune `model` (a key of params `models`) on `train_path`, the training set of `variant`
    (data/train/<variant>.jsonl, written by prepare for `original` and by filter for `augmented`)."""
    if variant not in VARIANTS:
        raise MedaugError(f"train: unknown variant {variant!r} (allowed: {', '.join(VARIANTS)})")
    records = read_records(train_path)
    if not records:
        raise MedaugError(f"{train_path}: no training records")
    ref = p.model_ref(model)
    t = p.train
    set_seed(t.seed)
    base, tokenizer = load_model_and_tokenizer(ref)
    examples = [encode(tokenizer, r, p.task, answer=r.final_decision) for r in records]
    lora = LoraConfig(r=t.lora.r, lora_alpha=t.lora.alpha, lora_dropout=t.lora.dropout,
                      target_modules=t.lora.target_modules, task_type="CAUSAL_LM")
    peft_model = get_peft_model(base, lora)
    gpu = torch.cuda.is_available()
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="medaug-trainer-") as scratch:
        args = TrainingArguments(
            output_dir=scratch, num_train_epochs=t.epochs, max_steps=t.max_steps,
            per_device_train_batch_size=t.batch_size, gradient_accumulation_steps=t.grad_accum,
            learning_rate=t.learning_rate, weight_decay=t.weight_decay, warmup_steps=t.warmup_ratio,
            seed=t.seed, data_seed=t.seed, use_cpu=not gpu, bf16=gpu and torch.cuda.is_bf16_supported(),
            logging_steps=1, save_strategy="no", eval_strategy="no", report_to="none",
            remove_unused_columns=False, dataloader_pin_memory=gpu)
        trainer = CompletionTrainer(model=peft_model, args=args, train_dataset=examples,
                                    data_collator=lambda batch: collate(batch, tokenizer.pad_token_id))
        start = time.time()
        result = trainer.train()
        runtime = time.time() - start
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        peft_model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "medaug.json").write_text(json.dumps(
            {"base": ref, "model": model, "variant": variant, "n_train": len(records)}, indent=2) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    metrics = {"train_loss": losses[-1] if losses else result.training_loss, "train_loss_mean": result.training_loss,
               "train_runtime_s": round(runtime, 2), "n_train": len(records), "steps": result.global_step}
    write_json(metrics_path, metrics)
    return metrics
