"""Train stage: fine-tune a causal LM (LoRA or full) with a completion-only loss (only the answer tokens count).

Batches are left-padded, so every answer sits in the last columns and logits are computed only there
(`logits_to_keep`): with Gemma's 262k vocab the full-sequence projection would dominate the cost. With
`train.packing` a batch is one row instead, and the logits are kept at a boolean mask of answer positions.
Continued pretraining (train/pretrain.py) makes the base of the `dapt-<variant>` candidates.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from peft import LoraConfig, get_peft_model
from transformers import set_seed

from medaug.data.jsonl import write_json
from medaug.data.schema import read_records
from medaug.errors import MedaugError
from medaug.evaluate.task import collate, encode
from medaug.models import TRAINED, load_model_and_tokenizer
from medaug.params import Params, TrainParams
from medaug.paths import PRETRAINED
from medaug.tracking import log_stage
from medaug.train.loop import CompletionTrainer, checkpoint_dir, completion_loss, curves, finish, fit, \
    fingerprint, pack, save_atomically

__all__ = ["CompletionTrainer", "completion_loss", "run", "base_of", "VARIANTS"]

VARIANTS = ("original", "augmented")


def base_of(p: Params, model: str, variant: str) -> tuple[str, str]:
    """(reference of the model a candidate starts from, its training set's variant): `dapt-augmented` starts
    from models/pretrain/<model> and trains on the augmented set."""
    data = variant.removeprefix("dapt-")
    if data not in VARIANTS:
        raise MedaugError(f"train: unknown variant {variant!r} (allowed: {', '.join(VARIANTS)}, and dapt-<those> "
                          f"for models in pretrain.models)")
    if variant.startswith("dapt-"):
        if model not in p.pretrain.models:
            raise MedaugError(f"train: {variant!r} needs continued pretraining of {model!r}: add it to "
                              f"params.yaml pretrain.models")
        return str(PRETRAINED / model), data
    return p.model_ref(model), data


def adapter_or_ref(ref: str) -> Path | str:
    """What a checkpoint fingerprint hashes for a base: an adapter directory's content (small), else the reference."""
    return Path(ref) if (Path(ref) / "adapter_config.json").exists() else ref


def prepare_model(ref: str, t: TrainParams):
    """The model to train: the base with fresh LoRA adapters (train.method lora) or all its weights (full)."""
    model, tokenizer = load_model_and_tokenizer(ref)
    set_seed(t.seed)  # after loading: building a model on first use draws random numbers too
    if t.method == "lora":
        lora = LoraConfig(r=t.lora.r, lora_alpha=t.lora.alpha, lora_dropout=t.lora.dropout,
                          target_modules=t.lora.target_modules, task_type="CAUSAL_LM")
        model = get_peft_model(model, lora)
    if t.gradient_checkpointing:
        model.enable_input_require_grads()  # LoRA freezes the embeddings; checkpointed blocks need grads in
    return model, tokenizer


def run(p: Params, model: str, variant: str, train_path: Path, out_dir: Path, metrics_path: Path,
        dev_path: Path | None = None, plots: tuple[Path, Path] | None = None,
        mlflow_root: Path | None = None) -> dict[str, Any]:
    """Fine-tune candidate `model`-`variant` on `train_path` (data/train/<variant>.jsonl, written by prepare for
    `original` and by filter for `augmented`), scoring `dev_path` during training and keeping the best
    checkpoint. Writes the adapter (or full model) to out_dir, metrics, and the curves to plots = (train rows,
    dev rows) for DVC; logs a run to MLflow when mlflow_root is given."""
    ref, _ = base_of(p, model, variant)
    records = read_records(train_path)
    if not records:
        raise MedaugError(f"{train_path}: no training records")
    dev = read_records(dev_path) if dev_path else []
    t = p.train
    lm, tokenizer = prepare_model(ref, t)
    examples = [encode(tokenizer, r, p.task, answer=r.final_decision) for r in records]
    collator = pack if t.packing else (lambda batch: collate(batch, tokenizer.pad_token_id))
    name = f"{model}-{variant}"
    key = fingerprint(p.model_ref(model), variant, asdict(p.task), asdict(t), Path(train_path),
                      Path(dev_path) if dev_path else None, adapter_or_ref(ref))
    ckpt = checkpoint_dir(Path(t.checkpoints), name, key)
    trainer, summary, runtime_s = fit(lm, tokenizer, examples, collator, t, ckpt, epochs=t.epochs,
                                      max_steps=t.max_steps, learning_rate=t.learning_rate, dev=dev, task=p.task,
                                      eval_batch_size=p.evaluate.batch_size)
    losses, dev_rows = curves(trainer.state.log_history)
    metrics = {"train_loss": losses[-1]["loss"] if losses else None,
               "train_loss_mean": sum(r["loss"] for r in losses) / max(1, len(losses)),
               "n_train": len(records), "n_dev": len(dev), **summary}
    if trainer.is_world_process_zero():
        write_output(out_dir, trainer.model, tokenizer, {"base": ref, "model": model, "variant": variant,
                                                        "method": t.method, "n_train": len(records)})
        write_json(metrics_path, metrics)
        if plots:
            write_json(plots[0], losses)
            write_json(plots[1], dev_rows)
        if mlflow_root is not None:
            log_stage(mlflow_root, f"train@{name}", {"model": p.model_ref(model), "variant": variant, "base": ref,
                                                     "task": asdict(p.task), "train": asdict(t)},
                      {**metrics, "train_runtime_s": runtime_s}, curves=losses + dev_rows)
    finish(trainer, ckpt)
    return metrics


def write_output(out_dir: Path, model, tokenizer, meta: dict[str, Any]) -> None:
    """The adapter (LoRA) or the whole model (full), its tokenizer and medaug.json, swapped into place."""
    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / TRAINED).write_text(json.dumps(meta, indent=2) + "\n")
    save_atomically(out_dir, write)
