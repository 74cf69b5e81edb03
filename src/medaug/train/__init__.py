"""Train stage: fine-tune a causal LM (LoRA or full) with a completion-only loss (only the answer tokens count).

Batches are left-padded, so every answer sits in the last columns and logits are computed only there
(`logits_to_keep`): with Gemma's 262k vocab the full-sequence projection would dominate the cost. With
`train.packing` a batch is one row instead, and the logits are kept at a boolean mask of answer positions.
Continued pretraining (train/pretrain.py) makes the base of the `dapt-<variant>` candidates.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, get_peft_model
from transformers import set_seed

from medaug.data.jsonl import write_json
from medaug.data.schema import Record, read_records
from medaug.errors import MedaugError
from medaug.evaluate.task import answer_text, collate, encode
from medaug.models import TRAINED, hub_id
from medaug.models.load import load_model_and_tokenizer
from medaug.models.card import model_card, prepared_source
from medaug.params import Params, TaskParams, TrainParams, asdict_without, untraced
from medaug.paths import PRETRAINED, Candidate, TrainIO
from medaug.tracking import log_stage
from medaug.train.loop import CompletionTrainer, checkpoint_dir, completion_loss, curves, finish, fit, \
    fingerprint, full_state_dict, pack, resolved_precision, save_atomically

__all__ = ["CompletionTrainer", "completion_loss", "run", "base_of", "encode_rationale"]


OTHER_CANDIDATES = ("models", "variants", "rounds", "seeds", "launcher")
"""train params that choose which candidates exist or how they are launched, not what one of them is: no train
stage depends on them, so its output (medaug.json, the model card) must not record them."""


def base_of(p: Params, model: str, variant: str) -> tuple[str, str]:
    """(reference of the model a candidate starts from, its training set's variant): `dapt-augmented` starts
    from models/pretrain/<model> and trains on the augmented set."""
    data = Candidate.recipe_of(variant)
    if data not in p.variants:
        raise MedaugError(f"train: unknown variant {variant!r} (allowed: {', '.join(p.variants)}, the recipes under "
                          f"params.yaml `variants`, and dapt-<those> for models in pretrain.models)")
    if Candidate.is_dapt(variant):
        with untraced():  # a check: the stage exists only for pretrain.models (DVC's matrix)
            pretrained = model in p.pretrain.models
        if not pretrained:
            raise MedaugError(f"train: {variant!r} needs continued pretraining of {model!r}: add it to "
                              f"params.yaml pretrain.models")
        return str(PRETRAINED / model), data
    return p.model_ref(model), data


def adapter_or_ref(ref: str) -> Path | str:
    """What a checkpoint fingerprint hashes for a base: an adapter directory's content (small), else the reference."""
    return Path(ref) if (Path(ref) / "adapter_config.json").exists() else ref


def prepare_model(ref: str, t: TrainParams, seed: int):
    """The model to train: the base with fresh LoRA adapters (train.method lora) or all its weights (full)."""
    model, tokenizer = load_model_and_tokenizer(ref)
    set_seed(seed)  # after loading: building a model on first use draws random numbers too
    if t.method == "lora":
        lora = LoraConfig(r=t.lora.r, lora_alpha=t.lora.alpha, lora_dropout=t.lora.dropout,
                          target_modules=t.lora.target_modules, task_type="CAUSAL_LM")
        model = get_peft_model(model, lora)
    if t.gradient_checkpointing:
        model.enable_input_require_grads()  # LoRA freezes the embeddings; checkpointed blocks need grads in
    return model, tokenizer


def encode_rationale(tokenizer, record: Record, task: TaskParams, t: TrainParams) -> dict[str, Any] | None:
    """The rationale target of a record: train.rationale_template as the prompt (cut like the task's prompt),
    then its explanation (`long_answer`, at most train.rationale_max_tokens) as the completion; None without
    one."""
    text = record.long_answer.strip()
    if not text:
        return None
    e = encode(tokenizer, record, dataclasses.replace(task, template=t.rationale_template))
    completion = tokenizer(answer_text(text, task), add_special_tokens=False).input_ids[:t.rationale_max_tokens]
    return {"input_ids": e["input_ids"] + completion, "n_prompt": e["n_prompt"]}


def with_rationale(collator: Callable[[list[dict[str, Any]]], dict[str, Any]], weight: float):
    """A collator that puts each example's rationale target (if any) in the same batch, after the answers, and
    weights the tokens so that the loss is the answer tokens' mean NLL + weight x the explanation tokens' mean NLL:
    the answer loss is what it is without rationales, and one forward pass serves both (DDP-safe)."""
    def collate_both(examples: list[dict[str, Any]]) -> dict[str, Any]:
        rationales = [e["rationale"] for e in examples if e.get("rationale")]
        batch = collator([*examples, *rationales])
        lengths = [len(e["input_ids"]) - e["n_prompt"] for e in [*examples, *rationales]]
        n_answer, n_rationale = sum(lengths[:len(examples)]), sum(lengths[len(examples):])
        if "keep" in batch:  # pack: one target per completion token, in example order
            w = [1 / n_answer] * n_answer + ([weight / n_rationale] * n_rationale if n_rationale else [])
            batch["token_weight"] = torch.tensor(w, dtype=torch.float32)
        else:  # collate: answer_mask rows, answers first
            mask = batch["answer_mask"].float()
            mask[:len(examples)] /= n_answer
            if rationales:
                mask[len(examples):] *= weight / n_rationale
            batch["token_weight"] = mask
        return batch
    return collate_both


def run(p: Params, c: Candidate, io: TrainIO, mlflow_root: Path | None = None) -> dict[str, Any]:
    """Fine-tune candidate `c` (its seed: of LoRA init, dropout and data order) on `io.train` (data/train/<recipe>.jsonl,
    written by dataset@<recipe>; with the recipe's `rationale`, explanations are a second target), scoring `io.dev`
    during training and keeping the best checkpoint. Writes the adapter (or full model) to io.out, its report, and
    the curves to io.plots = (train rows, dev rows) for DVC; logs a run to MLflow when mlflow_root is given."""
    model, variant, seed = c
    ref, data = base_of(p, model, variant)
    records = read_records(io.train, p.task.choices)
    if not records:
        raise MedaugError(f"{io.train}: no training records")
    dev = read_records(io.dev, p.task.choices) if io.dev else []
    t = p.train
    lm, tokenizer = prepare_model(ref, t, seed)
    examples = [encode(tokenizer, r, p.task, answer=r.final_decision) for r in records]
    collator = pack if t.packing else (lambda batch: collate(batch, tokenizer.pad_token_id))
    weight = p.variants[data].rationale
    if weight:
        for e, r in zip(examples, records):
            e["rationale"] = encode_rationale(tokenizer, r, p.task, t)
        collator = with_rationale(collator, weight)
    name = c.name
    with untraced():  # the checkpoint folder's key, no output
        key = fingerprint(p.model_ref(model), variant, seed, asdict(p.task), {**asdict(t), "seeds": None}, weight,
                          Path(io.train), Path(io.dev) if io.dev else None, adapter_or_ref(ref))
    ckpt = checkpoint_dir(Path(t.checkpoints), name, key)
    trainer, summary, runtime_s = fit(lm, tokenizer, examples, collator, t, ckpt, epochs=t.epochs,
                                      max_steps=t.max_steps, learning_rate=t.learning_rate, seed=seed, dev=dev,
                                      task=p.task,
                                      eval_batch_size=p.evaluate.batch_size)
    losses, dev_rows = curves(trainer.state.log_history)
    metrics = {"train_loss": losses[-1]["loss"] if losses else None,
               "train_loss_mean": sum(r["loss"] for r in losses) / max(1, len(losses)),
               "n_train": len(records), "n_dev": len(dev), **summary}
    state = full_state_dict(trainer)  # every process: FSDP gathers the shards for process 0's save
    if trainer.is_world_process_zero():
        meta = {"base": ref, **base_revision(ref), "model": model, "variant": variant, "seed": seed,
                "method": t.method, "precision": resolved_precision(t.precision), "n_train": len(records),
                "train": asdict_without(t, OTHER_CANDIDATES)}
        write_output(io.out, trainer.model, tokenizer, meta,
                     model_card(name=name, meta=meta, task=p.task, source=prepared_source(),
                                adapter=t.method == "lora", train_metrics=metrics), state)
        write_json(io.report, metrics)
        if io.plots:
            write_json(io.plots[0], losses)
            write_json(io.plots[1], dev_rows)
        if mlflow_root is not None:
            with untraced():  # MLflow's copy of the params: no output of the stage
                logged = {"model": p.model_ref(model), "variant": variant, "seed": seed, "base": ref,
                          "task": asdict(p.task), "train": asdict(t)}
            log_stage(mlflow_root, f"train@{name}", logged, {**metrics, "train_runtime_s": runtime_s},
                      curves=losses + dev_rows, inputs={"train": str(io.train), **({"dev": str(io.dev)} if io.dev
                                                                                     else {})})
    finish(trainer, ckpt)
    return metrics


def base_revision(ref: str) -> dict[str, str]:
    """{"base_revision": the hub commit of `ref`'s files (those just loaded, from the hub cache)} when `ref` is a hub
    id, so the adapter names its base exactly; else {}."""
    if hub_id(ref) != ref:
        return {}
    from transformers.utils.hub import cached_file, extract_commit_hash

    commit = extract_commit_hash(cached_file(ref, "config.json"), None)
    return {"base_revision": commit} if commit else {}


def canonical_adapter_config(model, directory: Path, meta: dict[str, Any]) -> None:
    """Rewrite directory/adapter_config.json with its set-valued fields (target_modules: `all-linear` expands to a
    set) sorted, and its base named as `meta` names it (the hub id and revision where there is one, else medaug's
    reference) instead of this machine's cache path. PEFT writes sets in set order, which changes from process to
    process (string hashes are salted), and the path differs per machine: either would make the same adapter hash
    differently in DVC and dirty dvc.lock."""
    path = directory / "adapter_config.json"
    configs = getattr(model, "peft_config", None)
    if not configs or not path.exists():
        return
    sets = {k for config in configs.values() for k, v in config.to_dict().items() if isinstance(v, set)}
    data = json.loads(path.read_text(encoding="utf-8"))
    data.update({k: sorted(data[k]) for k in sets if isinstance(data.get(k), list)})
    if meta.get("base"):
        data.update(base_model_name_or_path=hub_id(meta["base"]) or meta["base"], revision=meta.get("base_revision"))
    path.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")  # PEFT's own layout


def write_output(out_dir: Path, model, tokenizer, meta: dict[str, Any], card: str | None = None,
                 state_dict: dict[str, torch.Tensor] | None = None) -> None:
    """The adapter (LoRA) or the whole model (full), its tokenizer, medaug.json and model card (README.md, in place
    of PEFT's empty stub), swapped into place. `state_dict`: the weights gathered from every FSDP process
    (loop.full_state_dict), else the model's own."""
    def write(tmp: Path) -> None:
        model.save_pretrained(tmp, **({"state_dict": state_dict} if state_dict is not None else {}))
        canonical_adapter_config(model, tmp, meta)
        tokenizer.save_pretrained(tmp)
        (tmp / TRAINED).write_text(json.dumps(meta, indent=2) + "\n")
        if card is not None:
            (tmp / "README.md").write_text(card, encoding="utf-8")
    save_atomically(out_dir, write)
