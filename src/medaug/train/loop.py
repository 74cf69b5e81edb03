"""One training loop for SFT and continued pretraining: HF Trainer with checkpoints that survive a kill, dev
evaluation that keeps the best checkpoint, curves for DVC plots and MLflow, and DDP (torchrun / accelerate
launch) for free. Only the world's process 0 writes outputs."""

from __future__ import annotations

import logging

import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase, Trainer, TrainingArguments
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from medaug.data.jsonl import temp_dir_beside
from medaug.data.schema import Record
from medaug.errors import MedaugError
from medaug.evaluate.metrics import compute_metrics
from medaug.evaluate.scorer import Scorer
from medaug.evaluate.task import answer_logprobs
from medaug.params import TaskParams, TrainParams, untraced

log = logging.getLogger(__name__)


def completion_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean negative log-likelihood of the answer tokens of a batch from `collate` (left-padded) or `pack`
    (one row, `keep` marks the positions that predict an answer token): logits only at those positions. With
    `token_weight` (the same shape as answer_mask, or one per target), the weighted sum instead (see
    train.with_rationale)."""
    if "keep" in batch:
        # no attention mask and no cache: transformers then reads each position restart as a new sequence
        logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False,
                       logits_to_keep=batch["keep"]).logits  # (answer tokens, vocab)
        logprobs = torch.log_softmax(logits.float(), dim=-1).gather(-1, batch["targets"].unsqueeze(-1)).squeeze(-1)
        return -(logprobs * batch["token_weight"]).sum() if "token_weight" in batch else -logprobs.mean()
    logprobs = answer_logprobs(model, batch)
    if "token_weight" in batch:
        return -(logprobs * batch["token_weight"]).sum()
    return -logprobs.sum() / batch["answer_mask"].sum().clamp(min=1)


def pack(examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Concatenate encoded examples into one row, positions restarting at 0 for each: with no attention mask,
    transformers reads the restarts as sequence boundaries (no attention across examples) and nothing is padded."""
    ids, positions, keep, targets = [], [], [], []
    for e in examples:
        n, n_prompt = len(e["input_ids"]), e["n_prompt"]
        ids += e["input_ids"]
        positions += range(n)
        keep += [n_prompt - 1 <= j < n - 1 for j in range(n)]  # position j predicts token j + 1
        targets += e["input_ids"][n_prompt:]
    return {"input_ids": torch.tensor([ids]), "position_ids": torch.tensor([positions]),
            "keep": torch.tensor([keep]), "targets": torch.tensor(targets)}


class CompletionTrainer(Trainer):
    """Completion-only loss; `evaluate` scores the dev records (accuracy, macro-F1 and the gold answer's loss)
    with the same scorer as the evaluate stage."""

    loss_is_scaled_for_ga = False  # compute_loss returns a per-micro-batch mean; Trainer divides by grad_accum

    def __init__(self, *args, dev: list[Record] | None = None, task: TaskParams | None = None,
                 eval_batch_size: int = 8, **kwargs):
        super().__init__(*args, **kwargs)
        self.dev, self.task, self.eval_batch_size = dev or [], task, eval_batch_size

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = completion_loss(model, inputs)
        return (loss, None) if return_outputs else loss

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval") -> dict[str, float]:
        scorer = Scorer(self.model, self.processing_class, self.task, self.eval_batch_size)
        rows = scorer.predict(self.dev, progress=False)
        self.model.train()
        scores = compute_metrics([r.final_decision for r in self.dev], [row["prediction"] for row in rows],
                                 self.task.choices)
        loss = -sum(row["logprobs"][r.final_decision] for r, row in zip(self.dev, rows)) / len(self.dev)
        metrics = {f"{metric_key_prefix}_accuracy": scores["accuracy"],
                   f"{metric_key_prefix}_macro_f1": scores["macro_f1"], f"{metric_key_prefix}_loss": loss}
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics=metrics)
        return metrics


def fingerprint(*parts: Any) -> str:
    """A short digest of what a run depends on (params, data, base): a checkpoint is resumed only by a run with
    the same fingerprint."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            if part.is_dir():
                for f in sorted(x for x in part.rglob("*") if x.is_file()):
                    h.update(f.relative_to(part).as_posix().encode())
                    h.update(hashlib.sha256(f.read_bytes()).digest())
            else:
                h.update(hashlib.sha256(part.read_bytes()).digest())
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def checkpoint_dir(root: Path, name: str, key: str) -> Path:
    """root/<name>-<key>; other runs' checkpoints of `name` (other data or params) are removed (process 0)."""
    target = Path(root) / f"{name}-{key}"
    if int(os.environ.get("RANK", "0")) == 0 and Path(root).is_dir():
        for stale in Path(root).glob(f"{name}-" + "?" * len(key)):
            if stale != target:
                shutil.rmtree(stale, ignore_errors=True)
    return target


def _step(checkpoint: Path) -> int:
    return int(checkpoint.name.rsplit("-", 1)[-1])


def last_checkpoint(ckpt: Path) -> str | None:
    """The newest complete checkpoint in `ckpt` (Trainer writes trainer_state.json last: a checkpoint without one
    was cut by a kill, and process 0 removes it)."""
    found = [d for d in Path(ckpt).glob("checkpoint-*") if d.name.rsplit("-", 1)[-1].isdigit()]
    complete = [d for d in found if (d / "trainer_state.json").exists()]
    if int(os.environ.get("RANK", "0")) == 0:
        for d in set(found) - set(complete):
            shutil.rmtree(d, ignore_errors=True)
    return str(max(complete, key=_step)) if complete else None


def resolved_precision(precision: str) -> str:
    """train.precision as it runs here: `auto` is bf16 on a GPU that supports it, else fp32 (always on CPU)."""
    if precision == "auto":
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    return precision


def precision_flags(precision: str) -> dict[str, bool]:
    precision = resolved_precision(precision)
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


def launched_processes(launcher: str) -> int:
    """How many processes train.launcher asks for: --num_processes (accelerate) or --nproc_per_node x --nnodes
    (torchrun; accelerate's --num_machines), 1 for `python`."""
    words = launcher.replace("=", " ").split()

    def flag(*names: str) -> int:
        for i, w in enumerate(words[:-1]):
            if w in names and words[i + 1].isdigit():
                return int(words[i + 1])
        return 0

    total = flag("--num_processes")
    return total or max(1, flag("--nproc_per_node", "--nproc-per-node")) * max(1, flag("--nnodes"))


def check_launch(t: TrainParams) -> None:
    """Fail, with the fix, where a launcher would silently train another way than asked: `accelerate launch
    --num_processes N` on a machine without GPUs starts ONE process (accelerate's simple launcher), with 1/N of the
    global batch; FSDP asked of accelerate on CPU processes runs plain DDP (accelerate/state.py applies FSDP only to
    GPU-type distributed runs; with FSDP version 1 the Trainer stops on "no available devices" instead)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    wanted = launched_processes(t.launcher)
    if wanted > 1 and world == 1:
        raise MedaugError(f"train.launcher {t.launcher!r} asks for {wanted} processes but this is the only one: "
                          f"without GPUs, accelerate launch starts one process unless told --multi_gpu (which on "
                          f"CPU runs torch.distributed over gloo); use `accelerate launch --multi_gpu --num_processes "
                          f"{wanted}` or `torchrun --nproc_per_node {wanted}`")
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() in ("1", "true") and not torch.cuda.is_available():
        raise MedaugError("train.launcher asks for FSDP, but accelerate applies FSDP only to GPU processes (these "
                          "are CPU processes, which would train with plain DDP): on CPU drop --use_fsdp (DDP: "
                          "`accelerate launch --multi_gpu --num_processes N`); FSDP needs CUDA devices")


def full_state_dict(trainer: Trainer) -> dict[str, torch.Tensor] | None:
    """The trained model's whole state dict, gathered from every process's shard: under FSDP every process must
    call this (a collective) before process 0 saves; None otherwise (save_pretrained reads the model itself)."""
    return trainer.accelerator.get_state_dict(trainer.model) if trainer.is_fsdp_enabled else None


def fit(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, examples: list[dict[str, Any]],
        collator: Callable, t: TrainParams, ckpt: Path, *, epochs: float, max_steps: int, learning_rate: float,
        seed: int, dev: list[Record] | None = None, task: TaskParams | None = None, eval_batch_size: int = 8
        ) -> tuple[Trainer, dict[str, Any], float]:
    """Train `model` on `examples`, resuming from the last checkpoint in `ckpt` if a killed run left one.
    With `dev` records, evaluates every t.eval_steps (0: once per epoch) and at the end, and ends with the best
    checkpoint's weights. Returns the trainer, a summary (steps, best step and dev scores: a function of the inputs,
    fit for a report in git) and the wall time in seconds (for MLflow and the log, never for the report)."""
    check_launch(t)
    gpu = torch.cuda.is_available()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    steps_per_epoch = max(1, math.ceil(len(examples) / (t.batch_size * world)) // t.grad_accum)
    total = max_steps if max_steps > 0 else math.ceil(steps_per_epoch * epochs)
    evaluate = bool(dev)
    with nullcontext() if evaluate else untraced():  # without dev, only how often a checkpoint is kept: no output
        every = t.eval_steps or steps_per_epoch
    args = TrainingArguments(
        output_dir=str(ckpt), num_train_epochs=epochs, max_steps=max_steps,
        per_device_train_batch_size=t.batch_size, gradient_accumulation_steps=t.grad_accum,
        learning_rate=learning_rate, weight_decay=t.weight_decay, warmup_steps=t.warmup_ratio,
        seed=seed, data_seed=seed, use_cpu=not gpu, **precision_flags(t.precision),
        activation_checkpointing=t.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if t.gradient_checkpointing else None,
        train_sampling_strategy="group_by_length" if t.group_by_length else "random",
        logging_steps=1, save_strategy="steps", save_steps=every, save_total_limit=2,
        eval_strategy="steps" if evaluate else "no", eval_steps=every if evaluate else None,
        load_best_model_at_end=evaluate, metric_for_best_model=t.best_metric if evaluate else None,
        greater_is_better=t.best_metric != "loss" if evaluate else None,
        report_to="none", remove_unused_columns=False, dataloader_pin_memory=gpu,
        ddp_backend="gloo" if world > 1 and not gpu else None, ddp_find_unused_parameters=False if world > 1 else None)
    kwargs = {"dev": dev, "task": task, "eval_batch_size": eval_batch_size} if evaluate else {}
    cls = CompletionTrainer if task is not None else Trainer
    trainer = cls(model=model, args=args, train_dataset=examples, eval_dataset=dev or None, data_collator=collator,
                  processing_class=tokenizer, **kwargs)
    if trainer.pop_callback(ProgressCallback) is not None:  # the bar with its ETA stays; per-step dicts go
        trainer.add_callback(_DevProgress)
    trainer.pop_callback(PrinterCallback)  # with no bar (transformers' log at warnings or errors: `medaug -q`)
    resume = last_checkpoint(ckpt)
    if resume and trainer.is_world_process_zero():
        log.info(f"medaug: resuming from {resume}")
    start = time.time()
    result = trainer.train(resume_from_checkpoint=resume)
    runtime_s = round(time.time() - start, 2)
    summary = {"steps": result.global_step,
               "planned_steps": total, "resumed_from_step": _step(Path(resume)) if resume else 0}
    state = trainer.state
    if evaluate:
        best = state.best_model_checkpoint
        summary["best_step"] = _step(Path(best)) if best else state.global_step
        evals = [log for log in state.log_history if "eval_accuracy" in log]
        at_best = next((log for log in evals if log["step"] == summary["best_step"]), evals[-1] if evals else {})
        summary.update({f"dev_{k}": at_best.get(f"eval_{k}") for k in ("accuracy", "macro_f1", "loss")})
    if trainer.is_world_process_zero():
        log.info(f"medaug: {result.global_step} steps in {runtime_s:.0f} s")
    return trainer, summary, runtime_s


class _DevProgress(ProgressCallback):
    """The Trainer's progress bar, writing a log line only when the dev split is scored: with `logging_steps=1`
    (every step's loss feeds plots/train and MLflow) the stock bar wrote a loss dict under it at every step."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "eval_loss" in logs:
            super().on_log(args, state, control, logs=logs, **kwargs)


def curves(log_history: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Training rows {step, loss, learning_rate} and dev rows {step, dev_accuracy, dev_macro_f1, dev_loss}."""
    train = [{"step": log["step"], "loss": log["loss"], "learning_rate": log.get("learning_rate")}
             for log in log_history if "loss" in log and "eval_loss" not in log]
    dev = [{"step": log["step"], **{f"dev_{k}": log[f"eval_{k}"] for k in ("accuracy", "macro_f1", "loss")}}
           for log in log_history if "eval_accuracy" in log]
    return train, dev


def save_atomically(out_dir: Path, write: Callable[[Path], None]) -> None:
    """write(tmp) into a temp dir beside out_dir, then swap it into place: a kill never leaves half a model.
    The folder gets the permissions of a plain mkdir() under the process umask."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_dir_beside(out_dir)
    try:
        write(tmp)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def finish(trainer: Trainer, ckpt: Path) -> None:
    """After the outputs are written: wait for every process, then drop the checkpoints (process 0)."""
    trainer.accelerator.wait_for_everyone()
    if trainer.is_world_process_zero():
        shutil.rmtree(ckpt, ignore_errors=True)
