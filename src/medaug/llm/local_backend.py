"""Teacher backend: in-process transformers models, batched, for base models (the prompt is plain text).

Decoding is medaug's own (`decode`), held to `model.generate` by tests: batches grouped by prompt template and
length, a template's shared prefix computed once, each row leaving the batch as soon as its reply is complete, and
top-k before top-p sampling computed on the top-k alone (see docs/architecture.md, "The teacher layer").
Deterministic: each batch samples from a generator seeded by its first request's cache key (which holds
teacher.seed and the sample index), less the weights' digest, which keys the answers but not the draw. A reply ends
at EOS, at the first blank line, or where the model starts a next item (a "Key:" line it already wrote). A request for JSON is prefilled with the opening of the object
(`{"<first key>": "`), which keeps a base model on the format, and ends once the object is complete. The backend
drives base models: a conversation (a repair request) is answered as a new sample of its first prompt. The model
is loaded at the first cache miss, so a fully cached rerun never loads it (it digests the model's files, once: the
digest is kept beside them).
"""

from __future__ import annotations

import copy
import functools
import weakref
from collections.abc import Callable
from contextlib import contextmanager

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from medaug.llm.base_prompt import cut, prefill, prompt_text
from medaug.llm.limits import BudgetExceeded
from medaug.llm.teacher import Completion, Report, Request, Teacher

def candidates(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The tokens HF's temperature, top-k and top-p warpers keep, and their probabilities (zero for those top-p
    drops), computed on the top-k alone: no sort of the whole (262k-token) vocabulary. `top_k` 0: all tokens."""
    k = min(top_k or logits.shape[-1], logits.shape[-1])
    top, idx = logits.float().topk(k, dim=-1)  # sorted, most likely first
    probs = torch.softmax(top / temperature, dim=-1)
    probs[probs.cumsum(-1) - probs >= top_p] = 0  # the mass before a token already reaches top_p: drop it
    return idx, probs


def sample_next(logits: torch.Tensor, temperature: float, top_k: int, top_p: float,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row: greedy at temperature 0, else a draw among `candidates` (never over the vocabulary)."""
    if temperature <= 0:
        return logits.argmax(-1)
    idx, probs = candidates(logits, temperature, top_k, top_p)
    return idx.gather(-1, torch.multinomial(probs, 1, generator=generator)).squeeze(-1)


TEMPLATE = 8
"""Prompts whose first TEMPLATE tokens agree come from one template: they are batched together, and their common
prefix (its instructions and examples) is computed once."""


def templates(prompts: list[list[int]]) -> list[int]:
    """The template group of each prompt, numbered in order of first appearance."""
    groups: dict[tuple[int, ...], int] = {}
    return [groups.setdefault(tuple(ids[:TEMPLATE]), len(groups)) for ids in prompts]


def shared_prefixes(prompts: list[list[int]], group: list[int]) -> list[int]:
    """For each prompt, how many of its first tokens it shares with every prompt of its `group`, leaving each at
    least one token of its own."""
    shared = {}
    for ids, g in zip(prompts, group):
        n = shared.get(g, len(ids) - 1)
        first = prompts[group.index(g)]
        shared[g] = next((k for k in range(min(n, len(ids) - 1)) if ids[k] != first[k]), min(n, len(ids) - 1))
    return [shared[g] for g in group]


def left_pad(rows: list[list[int]], pad_id: int, width: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(width, *map(len, rows))
    ids = torch.tensor([[pad_id] * (width - len(r)) + r for r in rows], dtype=torch.long)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], dtype=torch.long)
    return ids, mask


class FewRowsHead(torch.nn.Module):
    """A float32 output projection for a decode step's few rows against a 262k-token vocabulary, where nn.Linear's
    h @ W.T runs at a fraction of the memory bandwidth (bench/RESULTS.md): oneDNN's inner product on the weight
    packed once for it (`packed_head`; the kernel torch.compile's CPU freezing gives linears), else W @ h.T. The
    same products summed in another order: logits differ from nn.Linear's by float32 rounding."""

    def __init__(self, head: torch.nn.Linear, pack: bool = True):
        super().__init__()
        self.head, self.packed = head, packed_head(head) if pack else None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        flat = h.reshape(-1, h.shape[-1])
        if self.packed is not None:
            out = torch.ops.mkldnn._linear_pointwise(flat, self.packed, self.head.bias, "none", [], "")
        else:
            out = (self.head.weight @ flat.T).T.contiguous()  # top-k reads a row's logits faster in order
            out = out if self.head.bias is None else out + self.head.bias
        return out.reshape(*h.shape[:-1], -1)


_PACKED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def packed_head(head: torch.nn.Linear) -> torch.Tensor | None:
    """`head`'s weight in oneDNN's blocked layout (a second copy: 671 MB for Gemma 3's float32 head), packed at
    the first call and kept while the module lives and its weight is unchanged; None where this torch has no
    oneDNN or its oneDNN lacks the packed inner product (tried once on a row of zeros)."""
    w = head.weight
    key = (w.data_ptr(), w._version)
    if head in _PACKED and _PACKED[head][0] == key:
        return _PACKED[head][1]
    packed = None
    if torch.backends.mkldnn.is_available():
        try:
            with torch.no_grad():
                packed = torch.ops.mkldnn._reorder_linear_weight(w.detach(), 32)
                torch.ops.mkldnn._linear_pointwise(w.new_zeros(1, w.shape[1]), packed, None, "none", [], "")
        except (RuntimeError, NotImplementedError, AttributeError):
            packed = None
    _PACKED[head] = (key, packed)
    return packed


@contextmanager
def few_rows_head(model):
    """Within: the model's float32 nn.Linear output projection runs as `FewRowsHead`; the model gets its own back
    on the way out, also on an error."""
    head = model.get_output_embeddings()
    fast = isinstance(head, torch.nn.Linear) and head.weight.dtype == torch.float32
    if fast:
        model.set_output_embeddings(FewRowsHead(head))
    try:
        yield
    finally:
        if fast:
            model.set_output_embeddings(head)


class Preallocated(DynamicLayer):
    """A KV cache layer that writes each step into a buffer sized for the whole generation, where DynamicLayer
    concatenates (copies) the whole cache at every step, a cost that grows with the square of the reply."""

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity, self.length = capacity, 0

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
            b, h, _, d = key_states.shape
            self.buffers = [key_states.new_zeros(b, h, self.capacity, d) for _ in "kv"]
        n = key_states.shape[-2]
        for buf, new in zip(self.buffers, (key_states, value_states)):
            buf[:, :, self.length:self.length + n] = new
        self.length += n
        return self._view()

    def _view(self) -> tuple[torch.Tensor, torch.Tensor]:
        self.keys, self.values = (buf[:, :, :self.length] for buf in self.buffers)
        return self.keys, self.values

    @classmethod
    def merged(cls, parts: list[tuple[torch.Tensor, "Preallocated"]], n_rows: int) -> "Preallocated":
        """One layer of `n_rows` holding each (rows, layer) of `parts` at those rows, every layer's places
        right-aligned to the longest (earlier places zero: masked padding)."""
        first = parts[0][1]
        new = cls(first.capacity)
        new.lazy_initialization(first.keys, first.values)
        new.length = max(layer.length for _, layer in parts)
        new.buffers = [buf.new_zeros(n_rows, *buf.shape[1:]) for buf in first.buffers]
        for rows, layer in parts:
            for buf, src in zip(new.buffers, layer.buffers):
                buf[rows, :, new.length - layer.length:new.length] = src[:, :, :layer.length]
        new._view()
        return new

    def batch_select_indices(self, indices: torch.Tensor, places: torch.Tensor | None = None) -> None:
        """Keep rows `indices` (repeats allowed); with `places` (rows x length), row r's place k takes what
        place places[r, k] held."""
        self.buffers = [buf[indices] for buf in self.buffers]
        if places is not None:
            for buf in self.buffers:
                idx = places[:, None, :, None].expand(-1, buf.shape[1], -1, buf.shape[3])
                buf[:, :, :self.length] = buf[:, :, :self.length].gather(2, idx)
        self._view()


PASS_COST = 64
"""One more forward pass over a batch's prompts costs about as much as computing this many more tokens (its
per-layer overhead, smaller matmuls): `passes` splits a batch only where the padding it saves is worth more."""


def passes(lengths: list[int], pass_cost: int = PASS_COST) -> list[list[int]]:
    """The rows (indices into `lengths`, the tokens each must compute) in the passes that compute the fewest
    tokens, each pass padding its rows to its longest, with `pass_cost` tokens added for each pass: shortest
    rows first, each pass a run of similar lengths."""
    order = sorted(range(len(lengths)), key=lambda r: lengths[r])
    best, start = [0] * (len(order) + 1), [0] * (len(order) + 1)  # the cheapest cover of the j shortest rows
    for j in range(1, len(order) + 1):
        best[j], start[j] = min((best[i] + (j - i) * lengths[order[j - 1]] + pass_cost, i) for i in range(j))
    out, j = [], len(order)
    while j:
        out.append(order[start[j]:j])
        j = start[j]
    return out[::-1]


def fill_cache(model, prompts: list[list[int]], pad_id: int, max_new_tokens: int,
               pass_cost: int = PASS_COST) -> tuple[DynamicCache, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A KV cache of the prompts (token ids, unpadded) with room for `max_new_tokens` more, and each row's last
    logits, attention mask and position.

    What the prompts of a template group share (their instructions and examples) is computed once: one batch of
    the groups' prefixes. A row's tokens beyond its group's prefix are computed in a pass with rows of similar
    length (`passes`); each row of a pass computes its last `width` tokens (the most any row of the pass has
    beyond its prefix), the tokens before them come from its group's prefix cache. Every row's places are
    right-aligned in the cache, its padding on its left: a sliding attention window, which counts cache places,
    then covers the same tokens as in `model.generate`."""
    group = templates(prompts)
    sharing = len(set(group)) < len(prompts)
    shared = shared_prefixes(prompts, group) if sharing else [0] * len(prompts)
    runs = passes([len(ids) - n for ids, n in zip(prompts, shared)], pass_cost)
    width = [0] * len(prompts)
    for rows in runs:
        for r in rows:
            width[r] = max(len(prompts[q]) - shared[q] for q in rows)
    before = [max(0, len(ids) - w) for ids, w in zip(prompts, width)]  # tokens a row takes from its group's prefix
    heads = [0] * (max(group) + 1)  # the most prefix tokens any row of each group takes
    for g, n in zip(group, before):
        heads[g] = max(heads[g], n)
    room = max(1, *heads) if max(before) else 0
    capacity = room + max(width) + max_new_tokens
    prefix = new_cache(capacity)
    if room:  # compute each group's prefix once
        ids, head_mask = left_pad([prompts[group.index(g)][:n] for g, n in enumerate(heads)], pad_id, room)
        model(input_ids=ids, attention_mask=head_mask, position_ids=(head_mask.cumsum(-1) - 1).clamp(min=0),
              past_key_values=prefix, use_cache=True, logits_to_keep=1)
    parts = []
    for rows in runs:
        cache, mask = new_cache(capacity), torch.zeros(len(rows), 0, dtype=torch.long)
        if room:  # row r's place k holds its group's prefix token k - (room - before[r]), right-aligned
            cache = copy.deepcopy(prefix)
            head_len = torch.tensor([heads[group[r]] for r in rows])
            n = torch.tensor([before[r] for r in rows])
            source = torch.arange(room)[None, :] - (room - n)[:, None] + (room - head_len)[:, None]
            source = source.clamp(0, room - 1)
            for layer in cache.layers:
                layer.batch_select_indices(torch.tensor([group[r] for r in rows]), source)
            mask = (torch.arange(room)[None, :] >= (room - n)[:, None]).long()
        ids, own_mask = left_pad([prompts[r][before[r]:] for r in rows], pad_id)
        mask = torch.cat([mask, own_mask], dim=-1)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)[:, -ids.shape[1]:]
        logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=cache, use_cache=True,
                       logits_to_keep=1).logits[:, -1]
        parts.append((torch.tensor(rows), cache, logits, mask, pos[:, -1:]))
    return merge(parts, len(prompts))


def new_cache(capacity: int) -> DynamicCache:
    """A KV cache of `Preallocated` layers. Every layer keeps all its places: sliding windows are the attention
    masks' business."""
    cache = DynamicCache()
    cache.layer_class_to_replicate = lambda: Preallocated(capacity)
    return cache


def merge(parts: list[tuple[torch.Tensor, DynamicCache, torch.Tensor, torch.Tensor, torch.Tensor]],
          n_rows: int) -> tuple[DynamicCache, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The passes' (rows, cache, logits, mask, position) as one batch of `n_rows`, each row at its index, the
    places of a shorter pass right-aligned to the longest (padded on the left, masked)."""
    if len(parts) == 1 and torch.equal(parts[0][0], torch.arange(n_rows)):
        return parts[0][1:]
    length = max(mask.shape[1] for *_, mask, _ in parts)
    cache = new_cache(parts[0][1].layers[0].capacity)
    cache.layers = [Preallocated.merged([(rows, c.layers[i]) for rows, c, *_ in parts], n_rows)
                    for i in range(len(parts[0][1].layers))]
    logits = parts[0][2].new_empty(n_rows, parts[0][2].shape[-1])
    mask = torch.zeros(n_rows, length, dtype=torch.long)
    pos = torch.zeros(n_rows, 1, dtype=torch.long)
    for rows, _, part_logits, part_mask, part_pos in parts:
        logits[rows], pos[rows] = part_logits, part_pos
        mask[rows, length - part_mask.shape[1]:] = part_mask
    return cache, logits, mask, pos


@torch.inference_mode()
def decode(model, prompts: list[list[int]], pad_id: int, max_new_tokens: int,
           pick: Callable[[torch.Tensor], torch.Tensor], finished: Callable[[int, list[int]], bool],
           pass_cost: int = PASS_COST) -> list[list[int]]:
    """The new tokens of each prompt (token ids, unpadded), up to `max_new_tokens`, EOS excluded.

    - `fill_cache` computes a prefix that prompts share (their template's instructions and examples) once, and
      the rest of the prompts in passes of similar length (`passes`, `pass_cost`).
    - `pick` turns the last logits of the rows still going into their next tokens.
    - `finished(row, tokens)` says whether a row's reply is complete: that row (like one at EOS) leaves the batch
      and its KV cache at once, so every later step costs only the rows still writing.
    - A float32 output projection runs as `FewRowsHead` for the call (`few_rows_head`).

    The same greedy tokens as `model.generate`, at the price of the work left rather than of the longest reply."""
    eos = model.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
    out: list[list[int]] = [[] for _ in prompts]
    with few_rows_head(model):
        cache, logits, mask, pos = fill_cache(model, prompts, pad_id, max_new_tokens, pass_cost)
        rows = torch.arange(len(prompts))  # the prompt of each row still in the batch
        for step in range(max_new_tokens):
            tokens = pick(logits).tolist()
            keep = []
            for i, (row, t) in enumerate(zip(rows.tolist(), tokens)):
                if t in eos:
                    continue
                out[row].append(t)
                if not finished(row, out[row]):
                    keep.append(i)
            if not keep or step == max_new_tokens - 1:
                break
            if len(keep) < len(rows):
                sel = torch.tensor(keep)
                cache.batch_select_indices(sel)
                rows, mask, pos = rows[sel], mask[sel], pos[sel]
                tokens = [tokens[i] for i in keep]
            mask = torch.cat([mask, mask.new_ones(len(rows), 1)], dim=-1)
            pos = pos + 1
            logits = model(input_ids=torch.tensor(tokens)[:, None], attention_mask=mask, position_ids=pos,
                           past_key_values=cache, use_cache=True, logits_to_keep=1).logits[:, -1]
    return out


def precision(setting: str) -> str:
    """teacher.precision as the local backend runs it (on CPU): `auto` is bf16 where the CPU multiplies bf16
    natively (AVX512-BF16 or AMX), else fp32."""
    if setting != "auto":
        return setting
    native = [getattr(torch.cpu, f, lambda: False) for f in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return "bf16" if any(f() for f in native) else "fp32"


class LocalTeacher(Teacher):
    backend = "local"
    version = 2  # 2: medaug's own decoder (top-k before top-p, precision); version 1 sampled through generate
    model = tokenizer = None

    def _prepare(self) -> None:
        if self.model is not None:
            return
        from medaug.models.load import load_model_and_tokenizer
        self.model, self.tokenizer = load_model_and_tokenizer(self.tp.model)
        self.model.eval()
        if precision(self.tp.precision) == "bf16":
            self.model.to(torch.bfloat16)
        self.tokenizer.padding_side = "left"
        self.tokenizer.truncation_side = "left"  # an over-long prompt loses its instruction, never its item
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    @functools.cached_property
    def weights(self) -> str:
        """The digest of the teacher's files (models.weights_digest): part of every request key, so answers of a
        model replaced in the same folder are never served for the new one; the cache's model column names it."""
        from medaug.models import weights_digest
        return weights_digest(self.tp.model)

    @property
    def cache_model(self) -> str:
        return f"{self.tp.model}@{self.weights.split(':', 1)[-1][:12]}"

    def key_parts(self, r: Request) -> dict:
        return self.sampling_parts(r) | {"weights": self.weights}

    def sampling_parts(self, r: Request) -> dict:
        """The key without the weights' digest: what seeds a batch's sampling, so the same model writes the same
        answers whatever its digest was keyed as."""
        return super().key_parts(r) | {"top_k": self.tp.top_k, "precision": precision(self.tp.precision)}

    def _complete(self, reqs: list[Request], shas: list[str], report: Report) -> None:
        tp, tok = self.tp, self.tokenizer
        max_pos = getattr(self.model.config.get_text_config(), "max_position_embeddings", None) or 1_000_000
        max_prompt = max(8, max_pos - tp.max_new_tokens)
        prefills = [prefill(r) for r in reqs]
        texts = [prompt_text(r) + (" " + pre if pre else "") for r, pre in zip(reqs, prefills)]
        last_lines = [prompt_text(r).rsplit("\n", 1)[-1] for r in reqs]
        prompts = tok(texts, truncation=True, max_length=max_prompt)["input_ids"]
        # batches of prompts from the same template (they share its prefix) and of similar length (less padding)
        order = sorted(range(len(reqs)), key=lambda j: (prompts[j][:TEMPLATE], len(prompts[j]), j))
        for start in range(0, len(order), tp.batch_size):
            reserved: dict[int, float] = {}  # only the batch being generated holds back budget
            for j in order[start:start + tp.batch_size]:
                try:
                    reserved[j] = self.reserve(reqs[j])  # a local model costs what teacher.prices says (usually 0)
                except BudgetExceeded:
                    report(j, Completion(None, "", False, error="budget"))
            idx = list(reserved)
            if not idx:
                continue
            gen = torch.Generator().manual_seed(int(self.cache.key(**self.sampling_parts(reqs[idx[0]]))[:15], 16))

            def pick(logits: torch.Tensor) -> torch.Tensor:
                return sample_next(logits, tp.temperature, tp.top_k, tp.top_p, gen)

            def finished(k: int, tokens: list[int]) -> bool:
                j = idx[k]
                return cut(tok.decode(tokens, skip_special_tokens=True), last_lines[j], prefills[j]) is not None

            new = decode(self.model, [prompts[j] for j in idx], tok.pad_token_id, tp.max_new_tokens, pick, finished)
            for k, tokens in enumerate(new):
                j, text = idx[k], tok.decode(tokens, skip_special_tokens=True)
                done = cut(text, last_lines[j], prefills[j])
                # None: EOS or max_new_tokens came first; keep what there is
                text = done if done is not None else (prefills[j] + text).strip()
                cost = self.settle(reserved[j], len(prompts[j]), len(tokens))
                report(j, Completion(text, "", False, len(prompts[j]), len(tokens), cost_usd=cost))
