"""Pretrain stage: continued (domain-adaptive) pretraining on a text corpus, as MQG did on medical textbooks.

The corpus's documents are tokenized, joined with EOS and cut into blocks of pretrain.block_size tokens (the last
partial block is dropped); the loss is the usual next-token loss over every token. The output (an adapter, or a
whole model with train.method full) is the base of the `dapt-<variant>` candidates.

A corpus document that leaks the test split (a test-specific n-gram of `filter.decontaminate.ngram` words, or a
whole test question: `data.leakage`, the filter's own check) is dropped first, and counted in the metrics as
`dropped_test_overlap`: a model that read a test abstract would be scored on text it has seen. A .jsonl line is
one document, a .txt/.md file is one: split a big file so a leak costs only its own part.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from medaug.data.corpus import corpus_files, documents
from medaug.data.jsonl import write_json
from medaug.data.leakage import Contamination
from medaug.errors import MedaugError
from medaug.models.card import model_card
from medaug.params import Params, untraced
from medaug.paths import PretrainIO
from medaug.tracking import log_stage
from medaug.train import adapter_or_ref, base_revision, prepare_model, write_output
from medaug.train.loop import checkpoint_dir, curves, finish, fingerprint, fit, full_state_dict, resolved_precision

log = logging.getLogger(__name__)


def blocks(texts: list[str], tokenizer, size: int) -> list[list[int]]:
    """The texts' tokens, each text followed by EOS, in blocks of `size` (a BOS, if the tokenizer adds one,
    starts each text)."""
    ids: list[int] = []
    for text in texts:
        ids += tokenizer(text).input_ids + [tokenizer.eos_token_id]
    return [ids[i:i + size] for i in range(0, len(ids) - size + 1, size)]


def collate_blocks(batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    ids = torch.tensor([e["input_ids"] for e in batch])
    return {"input_ids": ids, "labels": ids}


def corpus_texts(corpus: Path, leak: Contamination) -> tuple[list[str], int]:
    """The corpus's non-empty documents that do not leak the test split, and how many did."""
    files = corpus_files(Path(corpus), "pretrain.corpus")
    texts, dropped = leak.keep([text for f in files for text, _ in documents(f) if text.strip()])
    if dropped:
        log.info(f"pretrain: dropped {dropped} of {len(texts) + dropped} documents of {corpus} that share text "
                 f"with the test split")
    return texts, dropped


def run(p: Params, model: str, io: PretrainIO, mlflow_root: Path | None = None) -> dict[str, Any]:
    """Pretrain `model` on `io.corpus`, less what leaks the test split of `io.prepared` (train/dev/test.jsonl);
    the model to io.out, its report and loss curve."""
    if model not in p.pretrain.models:
        raise MedaugError(f"pretrain: {model!r} is not in params.yaml pretrain.models ({p.pretrain.models})")
    ref, t, pt = p.model_ref(model), p.train, p.pretrain
    texts, dropped = corpus_texts(io.corpus, Contamination.of_split(io.prepared, p.filter.decontaminate.ngram))
    lm, tokenizer = prepare_model(ref, t, pt.seed)
    examples = [{"input_ids": b} for b in blocks(texts, tokenizer, pt.block_size)]
    if not examples:
        left = f" once the {dropped} documents that share text with the test split are dropped" if dropped else ""
        raise MedaugError(f"pretrain.corpus: {io.corpus} has fewer than pretrain.block_size = {pt.block_size} "
                          f"tokens{left}; lower the block size or add text")
    with untraced():  # the checkpoint folder's key, no output
        key = fingerprint(ref, asdict(pt), {**asdict(t), "seeds": None}, texts, adapter_or_ref(ref))
    ckpt = checkpoint_dir(Path(t.checkpoints), f"pretrain-{model}", key)
    trainer, summary, runtime_s = fit(lm, tokenizer, examples, collate_blocks, t, ckpt, epochs=pt.epochs,
                                      max_steps=pt.max_steps, learning_rate=pt.learning_rate, seed=pt.seed)
    losses, _ = curves(trainer.state.log_history)
    metrics = {"train_loss": losses[-1]["loss"] if losses else None, "documents": len(texts),
               "dropped_test_overlap": dropped, "blocks": len(examples), "tokens": len(examples) * pt.block_size,
               **summary}
    state = full_state_dict(trainer)  # every process: FSDP gathers the shards for process 0's save
    if trainer.is_world_process_zero():
        meta = {"base": ref, **base_revision(ref), "model": model, "pretrain": True, "method": t.method,
                "precision": resolved_precision(t.precision),
                "documents": len(texts), "train": asdict(pt)}
        write_output(io.out, trainer.model, tokenizer, meta,
                     model_card(name=f"pretrain-{model}", meta=meta, task=None, source=None,
                                adapter=t.method == "lora"), state)
        write_json(io.report, metrics)
        if io.plot:
            write_json(io.plot, losses)
        if mlflow_root is not None:
            with untraced():  # MLflow's copy of the params: no output of the stage
                logged = {"model": ref, "pretrain": asdict(pt), "train": asdict(t),
                          "decontaminate_ngram": p.filter.decontaminate.ngram}
            log_stage(mlflow_root, f"pretrain@{model}", logged, {**metrics, "train_runtime_s": runtime_s},
                      curves=losses)
    finish(trainer, ckpt)
    return metrics
