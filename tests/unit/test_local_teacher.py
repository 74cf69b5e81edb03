"""The local teacher's own decoder (medaug.llm.local_backend.decode / candidates) against transformers itself: greedy
tokens equal `model.generate` on each prompt alone, the sampler keeps exactly what HF's warpers keep, finished rows
leave the batch, and a prompt template's shared prefix is computed once. Real forward passes on tiny models built
from configs (a Llama, and a Gemma 3 with sliding-window layers, the teacher's architecture)."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, Gemma3TextConfig, LlamaConfig

from medaug.llm.local_backend import (TEMPLATE, FewRowsHead, candidates, decode, packed_head, passes,
                                     sample_next, shared_prefixes, templates)

VOCAB = 97


def tiny(kind: str, window: int | None = None):
    torch.manual_seed(0)
    if kind == "llama":
        cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                          bos_token_id=1, eos_token_id=2, pad_token_id=0)
    else:
        cfg = Gemma3TextConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                               num_attention_heads=2, num_key_value_heads=1, head_dim=16, sliding_window=window,
                               layer_types=["sliding_attention"] * 3 + ["full_attention"],
                               max_position_embeddings=256, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    cfg._attn_implementation = "sdpa"
    model = AutoModelForCausalLM.from_config(cfg).eval()
    model.generation_config.eos_token_id = 2
    return model


def prompts(shared: int, seed: int = 1) -> list[list[int]]:
    """Six prompts: `shared` common first tokens (a template), then 2-9 tokens of their own."""
    g = torch.Generator().manual_seed(seed)
    head = torch.randint(3, VOCAB, (shared,), generator=g).tolist()
    return [[1] + head + torch.randint(3, VOCAB, (n,), generator=g).tolist() for n in (2, 9, 5, 3, 7, 4)]


def alone(model, ids: list[int], n: int) -> list[int]:
    """What `model.generate` writes for one prompt with no padding, greedy, EOS excluded."""
    with torch.inference_mode():
        out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             max_new_tokens=n, do_sample=False, pad_token_id=0)[0, len(ids):].tolist()
    return out[:out.index(2)] if 2 in out else out


def recording(model) -> list[tuple[int, int]]:
    """Patch model.forward to record each call's (rows, tokens per row)."""
    calls, forward = [], model.forward

    def record(*args, **kwargs):
        calls.append(tuple(kwargs["input_ids"].shape))
        return forward(*args, **kwargs)

    model.forward = record
    return calls


@pytest.mark.parametrize("kind,window,shared", [("llama", None, 12), ("llama", None, 0), ("gemma", 64, 12),
                                                ("gemma", 8, 12)])
def test_decode_writes_what_generate_writes_for_each_prompt_alone(kind, window, shared):
    """Batched, left-padded, prefix-shared, with rows leaving as they finish: each row's tokens are the greedy
    tokens `model.generate` gives that prompt alone. Gemma 3 with an 8-token sliding window: prompt and reply pass
    the window, so a pad anywhere but on a row's left would shift what the window covers."""
    model, batch, n = tiny(kind, window), prompts(shared), 12
    stop = [3, 12, 1, 7, 12, 5]  # each row's reply is complete after this many tokens
    calls = recording(model)
    got = decode(model, batch, 0, n, lambda logits: logits.argmax(-1), lambda row, toks: len(toks) >= stop[row])
    model.forward = model.__class__.forward.__get__(model)
    for row, ids in enumerate(batch):
        assert got[row] == alone(model, ids, n)[:stop[row]], f"row {row}"
    first = calls.pop(0)
    if shared:  # the template computed once, then each row's own tokens
        assert first == (1, 1 + shared) and calls.pop(0) == (6, 9)
    else:
        assert first == (6, 10 + shared)
    rows = [r for r, _ in calls]
    assert rows == sorted(rows, reverse=True) and rows[-1] < 6, "finished rows must leave the batch"
    assert rows[0] == 5  # the row finished after 1 token is gone from the first decode step


@pytest.mark.parametrize("kind,window", [("llama", None), ("gemma", 8)])
def test_decode_with_two_templates_in_one_batch(kind, window):
    """Two templates (prefixes of 12 and 20 tokens) in one batch, rows of each interleaved: both prefixes are
    computed in one batch of two, each row gets its own template's cache, and every row still writes what
    `model.generate` writes for it alone."""
    model, n = tiny(kind, window), 10
    a, b = prompts(12, seed=1), prompts(20, seed=2)
    batch = [row for pair in zip(a, b) for row in pair]
    calls = recording(model)
    got = decode(model, batch, 0, n, lambda logits: logits.argmax(-1), lambda row, toks: len(toks) >= 2 + row % 9)
    model.forward = model.__class__.forward.__get__(model)
    assert calls[0][0] == 2 and calls[1][0] == 12
    for row, ids in enumerate(batch):
        assert got[row] == alone(model, ids, n)[:2 + row % 9], f"row {row}"


@pytest.mark.parametrize("kind,window", [("llama", None), ("gemma", 8)])
def test_prompts_of_different_lengths_fill_the_cache_in_passes(kind, window):
    """Passes made free (pass_cost 0): the rows' own tokens (2-9 beyond two templates' prefixes, two rows of each
    length) are computed in one pass per length, each merged into one cache right-aligned, and every row still
    writes what `model.generate` writes for it alone."""
    model, n = tiny(kind, window), 12
    a, b = prompts(12, seed=1), prompts(20, seed=2)
    batch = [row for pair in zip(a, b) for row in pair]
    calls = recording(model)
    got = decode(model, batch, 0, n, lambda logits: logits.argmax(-1), lambda row, toks: len(toks) >= 2 + row % 9,
                 pass_cost=0)
    model.forward = model.__class__.forward.__get__(model)
    assert calls[0][0] == 2  # both templates' prefixes in one batch
    assert calls[1:7] == [(2, width) for width in (2, 3, 4, 5, 7, 9)]
    assert calls[7][0] == 12  # then every row decodes in one batch
    for row, ids in enumerate(batch):
        assert got[row] == alone(model, ids, n)[:2 + row % 9], f"row {row}"


def test_passes_split_a_batch_only_where_the_padding_saved_pays_for_a_pass():
    assert passes([5, 100, 6, 98], pass_cost=50) == [[0, 2], [3, 1]]  # 2 x 6 + 2 x 100 + 100 < 4 x 100 + 50
    assert passes([5, 100, 6, 98], pass_cost=1000) == [[0, 2, 3, 1]]
    assert passes([3, 3, 3], pass_cost=0) == [[0, 1, 2]]  # a tie: the fewer passes
    assert passes([7], pass_cost=0) == [[0]]


@pytest.mark.parametrize("pack", [True, False])
@pytest.mark.parametrize("bias", [False, True])
def test_the_few_rows_head_computes_what_the_linear_computes(bias, pack):
    torch.manual_seed(0)
    head = torch.nn.Linear(32, 1000, bias=bias)
    fast = FewRowsHead(head, pack=pack)
    assert (fast.packed is not None) == (pack and torch.backends.mkldnn.is_available())
    for shape in ((3, 32), (2, 1, 32), (4, 5, 32)):
        h = torch.randn(shape)
        out = fast(h)
        torch.testing.assert_close(out, head(h), rtol=1e-5, atol=1e-5)
        assert out.is_contiguous()  # top-k reads each row's logits in order


def test_the_packed_head_is_packed_once_and_again_when_its_weight_changes():
    head = torch.nn.Linear(32, 1000)
    first = packed_head(head)
    if first is None:
        pytest.skip("this torch has no oneDNN: the head runs as W @ h.T, tested above")
    assert packed_head(head) is first
    with torch.no_grad():
        head.weight.mul_(2)
    h = torch.randn(3, 32)
    assert packed_head(head) is not first
    torch.testing.assert_close(FewRowsHead(head)(h), head(h), rtol=1e-5, atol=1e-5)


def test_a_torch_without_the_packed_kernel_falls_back_to_w_at_h(monkeypatch):
    """A oneDNN build without the packed inner product (it raises): the head runs as W @ h.T, same logits."""
    def missing(*args):
        raise RuntimeError("mkldnn::_reorder_linear_weight: not implemented for this build")

    monkeypatch.setattr(torch.ops.mkldnn, "_reorder_linear_weight", missing, raising=False)
    head, h = torch.nn.Linear(32, 1000), torch.randn(3, 32)
    assert packed_head(head) is None
    fast = FewRowsHead(head)
    assert fast.packed is None
    torch.testing.assert_close(fast(h), head(h), rtol=1e-5, atol=1e-5)


def test_decode_puts_the_models_own_output_projection_back():
    """The faster head is decode's own: the model leaves with its nn.Linear, also when a step raises."""
    model = tiny("llama")
    head, seen = model.get_output_embeddings(), []

    def pick(logits):
        seen.append(type(model.get_output_embeddings()))
        return logits.argmax(-1)

    decode(model, prompts(4), 0, 3, pick, lambda row, toks: False)
    assert seen[0] is FewRowsHead and model.get_output_embeddings() is head

    def fail(logits):
        raise RuntimeError("a step failed")

    with pytest.raises(RuntimeError, match="a step failed"):
        decode(model, prompts(4), 0, 3, fail, lambda row, toks: False)
    assert model.get_output_embeddings() is head


def test_shared_prefixes_group_by_template_and_leave_each_row_a_token():
    a = [1, 5, 6, 7, 8, 9]
    assert shared_prefixes([a, [1, 5, 6, 7, 3], a[:3]], [0, 0, 0]) == [2, 2, 2]  # [1, 5, 6] keeps 1 of its own
    assert shared_prefixes([a, [1, 5, 6, 7, 3]], [0, 0]) == [4, 4]
    assert shared_prefixes([a, [2, 5, 6]], [0, 1]) == [5, 2]  # alone in its group: all but its last token
    b = [1] * TEMPLATE
    assert templates([b + [2], [3] + b, b + [4], [3] + b]) == [0, 1, 0, 1]


@pytest.mark.parametrize("temperature,top_k,top_p", [(0.7, 64, 0.95), (1.0, 0, 0.9), (0.5, 5, 1.0), (1.3, 20, 0.3)])
def test_the_sampler_keeps_what_transformers_warpers_keep(temperature, top_k, top_p):
    """Same tokens, same probabilities as HF's Temperature -> TopK -> TopP warpers (generate's order)."""
    from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    torch.manual_seed(0)
    logits = torch.randn(4, 5000) * 3
    warpers = LogitsProcessorList([TemperatureLogitsWarper(temperature), TopPLogitsWarper(top_p)])
    if top_k:
        warpers.insert(1, TopKLogitsWarper(top_k))
    hf = torch.softmax(warpers(None, logits.clone()), dim=-1)
    idx, probs = candidates(logits, temperature, top_k, top_p)
    ours = torch.zeros_like(hf).scatter(-1, idx, probs / probs.sum(-1, keepdim=True))
    assert torch.equal(ours > 0, hf > 0)
    torch.testing.assert_close(ours, hf, rtol=1e-5, atol=1e-6)

    g = torch.Generator().manual_seed(0)
    draws = torch.stack([sample_next(logits, temperature, top_k, top_p, g) for _ in range(200)])
    assert bool((hf.gather(-1, draws.T) > 0).all()), "a draw outside what HF keeps"
    assert torch.equal(sample_next(logits, 0.0, top_k, top_p), logits.argmax(-1))


def test_sampling_is_seeded_by_the_generator():
    logits = torch.randn(3, 1000)
    draw = [sample_next(logits, 1.0, 64, 0.95, torch.Generator().manual_seed(s)) for s in (7, 7, 8)]
    assert torch.equal(draw[0], draw[1])
    assert not all(torch.equal(sample_next(logits, 1.0, 64, 0.95, torch.Generator().manual_seed(s)), draw[0])
                   for s in range(8, 12))


def test_top_k_is_part_of_the_request_key(tmp_path):
    from medaug.llm.teacher import Request, make_teacher
    from medaug.params import TeacherParams

    r = Request.user("Question:")
    a, b = (make_teacher(TeacherParams(model="tiny-llama", top_k=k, cache=f"{k}.sqlite"), tmp_path) for k in (64, 0))
    assert a.request_sha(r) != b.request_sha(r)


def test_precision_is_resolved_into_the_request_key_and_the_model(tmp_path):
    """`auto` keys answers as what it resolves to on this machine, so the cache never serves bf16 answers for fp32;
    bf16 loads the teacher in bf16 and still answers."""
    from medaug.llm.local_backend import precision
    from medaug.llm.teacher import Request, make_teacher
    from medaug.params import TeacherParams

    r = Request.user("Abstract: cells were counted.\nQuestion:")
    teachers = {p: make_teacher(TeacherParams(model="tiny-llama", precision=p, max_new_tokens=4, cache=f"{p}.sqlite"),
                                tmp_path) for p in ("auto", "fp32", "bf16")}
    assert teachers["fp32"].request_sha(r) != teachers["bf16"].request_sha(r)
    assert teachers["auto"].request_sha(r) == teachers[precision("auto")].request_sha(r)
    out = teachers["bf16"].complete([r])
    assert teachers["bf16"].model.dtype == torch.bfloat16 and isinstance(out[0].text, str)


def test_a_local_teacher_replaced_in_place_is_asked_again_and_its_digest_is_kept_beside_it(tmp_path, tiny_cache):
    """Answers are keyed by a digest of the teacher's files (issue 31): the same folder with other weights is a
    cache miss for every request, the same weights are all hits (the model never loaded); the digest is computed
    once and kept beside the files until one changes; `medaug cache stats` names it, and `--model <folder>`
    selects every version."""
    import json
    import shutil

    from click.testing import CliRunner

    from medaug.cli import cli
    from medaug.llm.teacher import Request, make_teacher
    from medaug.models import DIGEST, resolve, weights_digest
    from medaug.params import TeacherParams

    folder = tmp_path / "teacher"
    shutil.copytree(resolve("tiny-llama"), folder)
    reqs = [Request.user(f"Abstract: case {i}.\nQuestion:") for i in range(3)]

    def ask():
        teacher = make_teacher(TeacherParams(model=str(folder), max_new_tokens=4, cache="cache.sqlite"), tmp_path)
        out = [c.text for c in teacher.complete(reqs)]
        teacher.cache.flush()
        return teacher, out

    first, before = ask()
    assert first.cache.misses == 3 and (folder / DIGEST).exists()
    again, same = ask()
    assert again.cache.hits == 3 and again.model is None and same == before
    stamp = json.loads((folder / DIGEST).read_text())
    (folder / DIGEST).write_text(json.dumps({**stamp, "digest": "sha256:kept"}))
    assert weights_digest(str(folder)) == "sha256:kept"  # read from beside the files, not hashed again
    model = AutoModelForCausalLM.from_pretrained(folder)  # the teacher retrained: other weights, same folder
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(1.5)
    model.save_pretrained(folder)
    assert weights_digest(str(folder)) not in ("sha256:kept", stamp["digest"])
    replaced, _ = ask()
    assert replaced.cache.misses == 3 and replaced.model is not None  # every request asked again
    cache = ["cache", "--path", str(tmp_path / "cache.sqlite")]
    stats = json.loads(CliRunner().invoke(cli, [*cache, "stats", "--json"], catch_exceptions=False).output)
    names = sorted(m["model"] for m in stats["models"])
    assert names == sorted(f"{folder}@{d.split(':')[1][:12]}" for d in (stamp["digest"], weights_digest(str(folder))))
    pruned = CliRunner().invoke(cli, [*cache, "prune", "--model", str(folder), "--dry-run"],
                                catch_exceptions=False).output
    assert pruned.startswith("would remove 6 entries"), pruned
