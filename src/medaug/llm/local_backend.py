"""Teacher backend: in-process transformers generation, batched, for base models (the prompt is plain text).

Deterministic: each batch is sampled under a torch seed derived from its first request's cache key (which
holds teacher.seed and the sample index). Generation stops at the first blank line or EOS; only the new tokens
are decoded. The model is loaded at the first cache miss, so a fully cached rerun never loads it.
"""

from __future__ import annotations

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from medaug.llm.teacher import Completion, Report, Teacher


class BlankLineStop(StoppingCriteria):
    """Per row: stop once the generated text (leading whitespace aside) contains a blank line."""

    def __init__(self, tokenizer, prompt_len: int):
        self.tokenizer, self.prompt_len = tokenizer, prompt_len

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_len:], skip_special_tokens=True)
        return torch.tensor([t.lstrip().find("\n\n") >= 0 for t in texts], device=input_ids.device)


class LocalTeacher(Teacher):
    backend = "local"
    model = tokenizer = None

    def _load(self) -> None:
        from medaug.models import load_model_and_tokenizer
        self.model, self.tokenizer = load_model_and_tokenizer(self.tp.model)
        self.model.eval()
        self.tokenizer.padding_side = "left"
        self.tokenizer.truncation_side = "left"  # an over-long prompt loses its instruction, never its item
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    def _complete(self, prompts: list[str], sample_index: int, report: Report) -> None:
        if self.model is None:
            self._load()
        tp, tok = self.tp, self.tokenizer
        max_pos = getattr(self.model.config.get_text_config(), "max_position_embeddings", None) or 1_000_000
        max_prompt = max(8, max_pos - tp.max_new_tokens)
        for start in range(0, len(prompts), tp.batch_size):
            batch = prompts[start:start + tp.batch_size]
            enc = tok(batch, return_tensors="pt", padding=True, truncation=True, max_length=max_prompt)
            prompt_len = enc["input_ids"].shape[1]
            torch.manual_seed(int(self.request_sha(batch[0], sample_index)[:15], 16))
            sampling = dict(do_sample=True, temperature=tp.temperature, top_p=tp.top_p) if tp.temperature > 0 \
                else dict(do_sample=False)
            with torch.inference_mode():
                out = self.model.generate(**enc, max_new_tokens=tp.max_new_tokens, pad_token_id=tok.pad_token_id,
                                          stopping_criteria=StoppingCriteriaList([BlankLineStop(tok, prompt_len)]),
                                          **sampling)
            texts = tok.batch_decode(out[:, prompt_len:], skip_special_tokens=True)
            for k, text in enumerate(texts):
                text = text.lstrip().split("\n\n")[0].rstrip()
                n_in = int(enc["attention_mask"][k].sum())
                n_out = len(tok(text, add_special_tokens=False)["input_ids"])
                report(start + k, Completion(text, "", False, n_in, n_out))
