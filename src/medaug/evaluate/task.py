"""The task as data: one prompt and one encoding, shared by training and evaluation."""

from __future__ import annotations

import re
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from medaug.data.schema import Record, render_history, render_options
from medaug.errors import MedaugError
from medaug.params import TaskParams

_FIELD = re.compile(r"\{(context|question|options|history)\}")

CHARS_PER_TOKEN = 64
"""More characters than any tokenizer's tokens average over a stretch of text (English prose runs about 4, a
run of spaces at most about 30): a context longer than max_seq_len * CHARS_PER_TOKEN characters is cut to that
many from its end before it is tokenised, which leaves more tokens than the token-level cut keeps, so the prompt
ids are those of the whole context while a multi-MB context costs what a normal one does."""


def render_prompt(record: Record, task: TaskParams, context: str | None = None) -> str:
    """task.template with {context} (record.context, or `context` when given), {question}, {options} and
    {history} (a progressive question's earlier steps and their answers) filled in."""
    values = {"context": record.context if context is None else context, "question": record.question,
              "options": render_options(record.options), "history": render_history(record.history)}
    return _FIELD.sub(lambda m: values[m.group(1)], task.template)


def answer_text(label: str, task: TaskParams) -> str:
    """How an answer follows the prompt: " yes" after plain text, "yes" as a chat reply."""
    return label if task.format == "chat" else " " + label


def prompt_ids(tokenizer: PreTrainedTokenizerBase, text: str, task: TaskParams) -> list[int]:
    """Token ids of a rendered prompt: the text itself, or (task.format chat) a user turn of the tokenizer's
    chat template followed by the assistant's turn opening."""
    if task.format == "chat":
        if not getattr(tokenizer, "chat_template", None):
            raise MedaugError(f"task.format: chat, but the tokenizer of {tokenizer.name_or_path!r} has no chat "
                              f"template (a base model?); use task.format: plain")
        ids = tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                            tokenize=True, return_dict=False)
        return list(ids)
    return tokenizer(text).input_ids


def encode(tokenizer: PreTrainedTokenizerBase, record: Record, task: TaskParams,
           answer: str | None = None) -> dict[str, Any]:
    """Token ids of the prompt (at most task.max_seq_len: the abstract's START is cut, so its results and
    conclusions stay, as does the question), then those of " <answer>" when given. n_prompt = prompt tokens.
    An over-long context is first cut by characters (see CHARS_PER_TOKEN), so tokenising it costs little."""
    context = record.context[max(0, len(record.context) - task.max_seq_len * CHARS_PER_TOKEN):]
    ids = prompt_ids(tokenizer, render_prompt(record, task, context), task)
    over = len(ids) - task.max_seq_len
    if over > 0:
        context_ids = tokenizer(context, add_special_tokens=False).input_ids
        while over > 0 and context_ids:
            context_ids = context_ids[over:]
            ids = prompt_ids(tokenizer, render_prompt(record, task, tokenizer.decode(context_ids)), task)
            over = len(ids) - task.max_seq_len
    n_prompt = len(ids)
    if answer is not None:
        ids = ids + tokenizer(answer_text(answer, task), add_special_tokens=False).input_ids
    return {"input_ids": ids, "n_prompt": n_prompt}


def collate(examples: list[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
    """Left-pad encoded examples into a batch. Every sequence ends at the last column, so its answer tokens (after
    n_prompt) are among the last columns: `answer_mask` (batch, k-1) marks them, k = longest answer + 1."""
    length = max(len(e["input_ids"]) for e in examples)
    n_answer = [len(e["input_ids"]) - e["n_prompt"] for e in examples]
    k = max(n_answer) + 1
    input_ids = torch.full((len(examples), length), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), length), dtype=torch.long)
    answer_mask = torch.zeros((len(examples), k - 1), dtype=torch.bool)
    for i, e in enumerate(examples):
        n = len(e["input_ids"])
        input_ids[i, length - n:] = torch.tensor(e["input_ids"])
        attention_mask[i, length - n:] = 1
        answer_mask[i, k - 1 - n_answer[i]:] = True
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids,
            "answer_mask": answer_mask}


def answer_logprobs(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Log-probability of each answer token given everything before it, (batch, k-1), 0 outside answer_mask.
    Logits are computed only for the last k positions (the 262k-vocab projection dominates the cost)."""
    mask = batch["answer_mask"]
    k = mask.shape[1] + 1
    # The last k positions as a boolean mask, not an int: the model then gathers them into one contiguous
    # (batch * k, hidden) block before the vocab projection; a strided slice takes a slow matmul path.
    keep = torch.zeros_like(batch["input_ids"], dtype=torch.bool)
    keep[:, -k:] = True
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   position_ids=batch["position_ids"], logits_to_keep=keep, use_cache=False).logits
    logprobs = torch.log_softmax(logits.view(mask.shape[0], k, -1)[:, :-1].float(), dim=-1)
    targets = batch["input_ids"][:, -(k - 1):] if k > 1 else batch["input_ids"][:, :0]
    token_logprobs = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return token_logprobs.masked_fill(~mask, 0.0)
