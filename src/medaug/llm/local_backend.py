"""Teacher backend: in-process transformers generation, batched, for base models (the prompt is plain text).

Deterministic: each batch is sampled under a torch seed derived from its first request's cache key (which
holds teacher.seed and the sample index). Only the new tokens are decoded; generation stops at EOS, at the first
blank line, or where the model starts a next item (a "Key:" line it already wrote). A request for JSON is
prefilled with the opening of the object (`{"<first key>": "`), which keeps a base model on the format, and
stops once the object is complete. The backend drives base models: a conversation (a repair request) is
answered as a new sample of its first prompt. The model is loaded at the first cache miss, so a fully cached
rerun never loads it.
"""

from __future__ import annotations

import json
import re

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from medaug.llm.limits import BudgetExceeded
from medaug.llm.teacher import Completion, Report, Request, Teacher

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


def cut_json(text: str) -> str | None:
    """The reply up to the end of its first complete JSON object; None until that object is complete."""
    start = text.find("{")
    if start < 0:
        return None
    try:
        _, end = json.JSONDecoder().raw_decode(text, start)
    except ValueError:
        return None
    return text[:end]


def prefill(r: Request) -> str:
    """The opening of the reply a JSON request gets for free: `{"question": "` for a schema whose first
    property is a string, `{` otherwise, nothing for free text."""
    if r.schema is None:
        return ""
    props = r.schema.get("properties") or {}
    first = next(iter(props), None)
    if first is not None and props[first].get("type") == "string" and "enum" not in props[first]:
        return '{"' + first + '": "'
    return "{"


def prompt_text(r: Request) -> str:
    """What a base model reads: the first user message. A base model cannot follow a repair instruction, so
    a repair conversation becomes a fresh sample of the original prompt (its own seed: another cache key)."""
    return r.messages[0]["content"].rstrip()


class ItemEndStop(StoppingCriteria):
    """Per row: stop generating once the reply is complete (cut_json for JSON requests, else cut_reply)."""

    def __init__(self, tokenizer, prompt_len: int, last_lines: list[str], prefills: list[str]):
        self.tokenizer, self.prompt_len, self.last_lines, self.prefills = tokenizer, prompt_len, last_lines, prefills

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_len:], skip_special_tokens=True)
        done = [cut(t, last, pre) is not None for t, last, pre in zip(texts, self.last_lines, self.prefills)]
        return torch.tensor(done, device=input_ids.device)


def cut(text: str, last_line: str, prefilled: str) -> str | None:
    """The complete reply (with its prefill), or None while it is still going."""
    if not prefilled:
        return cut_reply(text, last_line)
    text = prefilled + text
    done = cut_json(text)
    if done is None:  # the model left the object unfinished: a blank line, or the next item's "Reply:" line
        key = _KEY.match(last_line)
        ends = [text.find("\n\n")] + ([text.find("\n" + key.group(0).strip())] if key else [])
        ends = [e for e in ends if e > 0]
        return text[:min(ends)] if ends else None
    return done


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

    def _complete(self, reqs: list[Request], shas: list[str], report: Report) -> None:
        tp, tok = self.tp, self.tokenizer
        max_pos = getattr(self.model.config.get_text_config(), "max_position_embeddings", None) or 1_000_000
        max_prompt = max(8, max_pos - tp.max_new_tokens)
        for start in range(0, len(reqs), tp.batch_size):
            reserved: dict[int, float] = {}  # only the batch being generated holds back budget
            for j in range(start, min(start + tp.batch_size, len(reqs))):
                try:
                    reserved[j] = self.reserve(reqs[j])  # a local model costs what teacher.prices says (usually 0)
                except BudgetExceeded:
                    report(j, Completion(None, "", False, error="budget"))
            idx = list(reserved)
            if not idx:
                continue
            prefills = [prefill(reqs[j]) for j in idx]
            batch = [prompt_text(reqs[j]) + (" " + pre if pre else "") for j, pre in zip(idx, prefills)]
            enc = tok(batch, return_tensors="pt", padding=True, truncation=True, max_length=max_prompt)
            prompt_len = enc["input_ids"].shape[1]
            last_lines = [prompt_text(reqs[j]).rsplit("\n", 1)[-1] for j in idx]
            torch.manual_seed(int(shas[idx[0]][:15], 16))
            sampling = dict(do_sample=True, temperature=tp.temperature, top_p=tp.top_p) if tp.temperature > 0 \
                else dict(do_sample=False)
            stop = StoppingCriteriaList([ItemEndStop(tok, prompt_len, last_lines, prefills)])
            with torch.inference_mode():
                out = self.model.generate(**enc, max_new_tokens=tp.max_new_tokens, pad_token_id=tok.pad_token_id,
                                          stopping_criteria=stop, **sampling)
            new = out[:, prompt_len:]
            for k, text in enumerate(tok.batch_decode(new, skip_special_tokens=True)):
                done = cut(text, last_lines[k], prefills[k])
                # None: EOS or max_new_tokens came first; keep what there is
                text = done if done is not None else (prefills[k] + text).strip()
                n_in = int(enc["attention_mask"][k].sum())
                n_out = int((new[k] != tok.pad_token_id).sum())  # generated, including what the cut drops
                cost = self.settle(reserved[idx[k]], n_in, n_out)
                report(idx[k], Completion(text, "", False, n_in, n_out, cost_usd=cost))
