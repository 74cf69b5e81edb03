"""Log-likelihood scoring of the answer choices (as lm-evaluation-harness's multiple choice)."""

from __future__ import annotations

from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from medaug.data.schema import Record
from medaug.errors import progress_bars
from medaug.evaluate.task import answer_logprobs, answer_text, collate, encode
from medaug.params import TaskParams


class Scorer:
    """Predicts the choice with the highest log p(" choice" | prompt).

    When every choice is one token (" yes", " no", " maybe" are, in most tokenizers), one forward pass per question
    with logits only at the last position; otherwise one pass per (question, choice) summing the choice's tokens."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, task: TaskParams,
                 batch_size: int = 8):
        self.model, self.tokenizer, self.task, self.batch_size = model, tokenizer, task, batch_size
        self.choice_ids = {c: tokenizer(answer_text(c, task), add_special_tokens=False).input_ids for c in task.choices}
        self.single_token = all(len(ids) == 1 for ids in self.choice_ids.values())

    def predict(self, records: list[Record], progress: bool = True) -> list[dict[str, Any]]:
        """One {id, prediction, logprobs} per record, in the records' order. Batches are cut from the records
        sorted by prompt length, so a batch pads its prompts to a similar length (in file order, batches of 8 of
        PubMedQA's abstracts are about 40% padding); each prompt is tokenised once."""
        self.model.eval()
        prompts = [encode(self.tokenizer, r, self.task) for r in records]
        order = sorted(range(len(records)), key=lambda i: len(prompts[i]["input_ids"]))
        out: list[dict[str, Any]] = [{}] * len(records)
        with torch.inference_mode(), tqdm(total=len(records), desc="scoring", unit="q",
                                           disable=not (progress and progress_bars())) as bar:
            for start in range(0, len(order), self.batch_size):
                batch = order[start:start + self.batch_size]
                scores = self._single_token([prompts[i] for i in batch]) if self.single_token else \
                    self._multi_token([records[i] for i in batch])
                for i, logprobs in zip(batch, scores):
                    out[i] = {"id": records[i].id, "prediction": max(logprobs, key=logprobs.get), "logprobs": logprobs}
                bar.update(len(batch))
        return out

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _single_token(self, prompts: list[dict[str, Any]]) -> list[dict[str, float]]:
        batch = collate(prompts, self.tokenizer.pad_token_id)
        logits = self.model(input_ids=batch["input_ids"].to(self._device()),
                            attention_mask=batch["attention_mask"].to(self._device()),
                            position_ids=batch["position_ids"].to(self._device()), logits_to_keep=1,
                            use_cache=False).logits  # one pass: a KV cache would only be built and dropped
        logprobs = torch.log_softmax(logits[:, -1].float(), dim=-1).cpu()
        return [{c: logprobs[i, ids[0]].item() for c, ids in self.choice_ids.items()} for i in range(len(prompts))]

    def _multi_token(self, records: list[Record]) -> list[dict[str, float]]:
        examples = [encode(self.tokenizer, r, self.task, answer=c) for r in records for c in self.task.choices]
        batch = {k: v.to(self._device()) for k, v in collate(examples, self.tokenizer.pad_token_id).items()}
        sums = answer_logprobs(self.model, batch).sum(-1).cpu()
        n = len(self.task.choices)
        return [{c: sums[i * n + j].item() for j, c in enumerate(self.task.choices)} for i in range(len(records))]
