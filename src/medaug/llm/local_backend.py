"""Teacher backend: in-process transformers generation, batched, for base models (the prompt is plain text).

Deterministic: each batch is sampled under a torch seed derived from its first request's cache key (which
holds teacher.seed and the sample index). Only the new tokens are decoded; generation stops at EOS, at the first
blank line, or where the model starts a next item (a "Key:" line it already wrote). The model is loaded at the
first cache miss, so a fully cached rerun never loads it.
"""

from __future__ import annotations

import re

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from medaug.llm.teacher import Completion, Report, Teacher

_KEY = re.compile(r"^\s*([A-Za-z][\w /-]{0,40}):")


def cut_reply(text: str, last_prompt_line: str = "") -> str | None:
    """The reply up to its first blank line or to the first line whose "Key:" it already used (the model starting
    a next item, as a few-shot prompt invites); None while neither has happened. The prompt's last line
    ("Question:") counts as the reply's first key, though the reply may restate it on its first line."""
    text = text.lstrip()
    m = _KEY.match(last_prompt_line)
    seen = {m.group(1).lower()} if m else set()
    lines = text.split("\n")
    pos = 0
    for i, line in enumerate(lines):
        if not line.strip() and i < len(lines) - 1:
            return text[:pos].rstrip()
        if m := _KEY.match(line):
            if m.group(1).lower() in seen and pos > 0:
                return text[:pos].rstrip()
            seen.add(m.group(1).lower())
        pos += len(line) + 1
    return None


class ItemEndStop(StoppingCriteria):
    """Per row: stop generating once cut_reply says the reply is complete."""

    def __init__(self, tokenizer, prompt_len: int, last_lines: list[str]):
        self.tokenizer, self.prompt_len, self.last_lines = tokenizer, prompt_len, last_lines

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_len:], skip_special_tokens=True)
        done = [cut_reply(t, last) is not None for t, last in zip(texts, self.last_lines)]
        return torch.tensor(done, device=input_ids.device)


class LocalTeacher(Teacher):
    backend = "local"
    model = tokenizer = None

    def _prepare(self) -> None:
        if self.model is not None:
            return
        from medaug.models import load_model_and_tokenizer
        self.model, self.tokenizer = load_model_and_tokenizer(self.tp.model)
        self.model.eval()
        self.tokenizer.padding_side = "left"
        self.tokenizer.truncation_side = "left"  # an over-long prompt loses its instruction, never its item
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    def _complete(self, prompts: list[str], sample_index: int, report: Report) -> None:
        tp, tok = self.tp, self.tokenizer
        max_pos = getattr(self.model.config.get_text_config(), "max_position_embeddings", None) or 1_000_000
        max_prompt = max(8, max_pos - tp.max_new_tokens)
        for start in range(0, len(prompts), tp.batch_size):
            batch = prompts[start:start + tp.batch_size]
            enc = tok(batch, return_tensors="pt", padding=True, truncation=True, max_length=max_prompt)
            prompt_len = enc["input_ids"].shape[1]
            last_lines = [p.rstrip().rsplit("\n", 1)[-1] for p in batch]
            torch.manual_seed(int(self.request_sha(batch[0], sample_index)[:15], 16))
            sampling = dict(do_sample=True, temperature=tp.temperature, top_p=tp.top_p) if tp.temperature > 0 \
                else dict(do_sample=False)
            stop = StoppingCriteriaList([ItemEndStop(tok, prompt_len, last_lines)])
            with torch.inference_mode():
                out = self.model.generate(**enc, max_new_tokens=tp.max_new_tokens, pad_token_id=tok.pad_token_id,
                                          stopping_criteria=stop, **sampling)
            new = out[:, prompt_len:]
            for k, text in enumerate(tok.batch_decode(new, skip_special_tokens=True)):
                cut = cut_reply(text, last_lines[k])
                text = text.strip() if cut is None else cut  # None: EOS or max_new_tokens came first
                n_in = int(enc["attention_mask"][k].sum())
                n_out = int((new[k] != tok.pad_token_id).sum())  # generated, including what the cut drops
                report(start + k, Completion(text, "", False, n_in, n_out))
