"""Benchmark (issue 18, part 3): the local teacher against plain `transformers` generation, in one run, on the default
run's own requests, with the machine's compute and memory rooflines measured here.

- plain: what the local backend did before (and what a user would write): `model.generate` in batches of 8 in request
  order, `do_sample` with temperature and top_p (transformers' default top_k 50 applies), and a StoppingCriteria
  that ends a row once its reply is complete (finished rows keep their place in the batch until every row is done).
- ours: `LocalTeacher.complete` with a fresh cache: batches by template and length, a template's shared prefix
  computed once, top-k then top-p computed on the top-k alone, and a row leaves the batch (and its KV cache) the
  step its reply is complete.

Each side runs in fp32, and in bf16 (`teacher.precision`) where the CPU multiplies bf16 natively (or with --bf16);
the sides take turns, `--rounds` times each. The requests are the generate stage's (params.yaml as committed, the
train split the prepare stage makes, written to a temporary folder). Reported: wall time and generated tokens per
second (median), each against its precision's roofline
(prompt tokens x 2 x the non-embedding parameters at the matmul rate measured here, plus the larger of the replies'
FLOPs and one read of every weight per step of the longest possible reply at the memory read rate measured here),
and whether greedy decoding (temperature 0, fp32, first 8 requests) writes the same text on both sides. Appends a
section to bench/RESULTS.md (--no-write: stdout only). Target: ours at the default precision >= 3x the tokens/s
of plain fp32 (the backend before).

    .venv/bin/python bench/local_teacher.py [--rounds 2]   # about 5 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from roofline import commit, machine, matmul_gflops, read_gbps

ROOT = Path(__file__).resolve().parents[1]
TARGET = 3.0


def plain_generate(model, tok, reqs, tp, shas) -> tuple[list[str], int]:
    """The requests through `model.generate`, batches of 8 in order: the anchor."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    from medaug.llm.local_backend import cut, prefill, prompt_text

    class ItemEnd(StoppingCriteria):
        def __init__(self, n, last, pre):
            self.n, self.last, self.pre = n, last, pre

        def __call__(self, ids, scores, **kw):
            texts = tok.batch_decode(ids[:, self.n:], skip_special_tokens=True)
            return torch.tensor([cut(t, a, b) is not None for t, a, b in zip(texts, self.last, self.pre)])

    texts, n_out = [], 0
    for s in range(0, len(reqs), 8):
        batch = reqs[s:s + 8]
        pre = [prefill(r) for r in batch]
        last = [prompt_text(r).rsplit("\n", 1)[-1] for r in batch]
        enc = tok([prompt_text(r) + (" " + p if p else "") for r, p in zip(batch, pre)], return_tensors="pt",
                  padding=True)
        torch.manual_seed(int(shas[s][:15], 16))
        sampling = dict(do_sample=True, temperature=tp.temperature, top_p=tp.top_p) if tp.temperature > 0 \
            else dict(do_sample=False)
        n = enc["input_ids"].shape[1]
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=tp.max_new_tokens, pad_token_id=tok.pad_token_id,
                                 stopping_criteria=StoppingCriteriaList([ItemEnd(n, last, pre)]), **sampling)
        new = out[:, n:]
        n_out += int((new != tok.pad_token_id).sum())
        for k, text in enumerate(tok.batch_decode(new, skip_special_tokens=True)):
            done = cut(text, last[k], pre[k])
            texts.append(done if done is not None else (pre[k] + text).strip())
    return texts, n_out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=2, help="timed runs of each side, taking turns")
    ap.add_argument("--no-write", action="store_true", help="print only, do not append to bench/RESULTS.md")
    ap.add_argument("--bf16", action="store_true", help="run the bf16 sides even where the CPU emulates bf16")
    args = ap.parse_args()

    from medaug.augment.generate import plan_split
    from medaug.data import prepare
    from medaug.llm.local_backend import precision
    from medaug.llm.teacher import Request, make_teacher
    from medaug.params import load_params

    p = load_params(ROOT / "params.yaml")
    prepared = Path(tempfile.mkdtemp(prefix="bench-local-teacher-prepared-"))
    prepare.run(p, ROOT, prepared, prepared / "prepare.json")  # the prepare stage's split, outside the workspace
    jobs = plan_split(p, ROOT, prepared)
    reqs = [Request.user(j.prompt(), j.sample, j.schema) for j in jobs]
    tmp = Path(tempfile.mkdtemp(prefix="bench-local-teacher-"))

    def ours(tp, model, name, n=None) -> tuple[list[str], int, float]:
        teacher = make_teacher(replace(tp, cache=str(tmp / f"{name}.sqlite")), tmp)
        teacher.model, teacher.tokenizer = model, tok  # loaded once, shared with the anchor
        start = time.perf_counter()
        out = teacher.complete(reqs[:n])
        return [c.text for c in out], sum(c.output_tokens for c in out), time.perf_counter() - start

    def plain(tp, model, name) -> tuple[list[str], int, float]:
        start = time.perf_counter()
        texts, n = plain_generate(model, tok, reqs, tp, shas)
        return texts, n, time.perf_counter() - start

    tp = p.teacher
    default = precision(tp.precision)
    teacher = make_teacher(replace(tp, cache=str(tmp / "load.sqlite"), precision="fp32"), tmp)
    teacher._prepare()
    fp32, tok = teacher.model, teacher.tokenizer
    shas = [teacher.request_sha(r) for r in reqs]
    sides = {"plain fp32": (plain, fp32, "fp32"), "ours fp32": (ours, fp32, "fp32")}
    models = {"fp32": fp32}
    if default == "bf16" or args.bf16:  # without native bf16, torch emulates it some 100x slower than fp32
        models["bf16"] = bf16 = copy.deepcopy(fp32).to(torch.bfloat16)
        sides |= {"plain bf16": (plain, bf16, "bf16"), "ours bf16": (ours, bf16, "bf16")}
    runs: dict[str, list[tuple[float, int]]] = {k: [] for k in sides}
    for i in range(args.rounds):
        for k, (run, model, prec) in sides.items():
            _, n, t = run(replace(tp, precision=prec), model, f"{k}{i}".replace(" ", "-"))
            runs[k].append((t, n))
        print(f"round {i + 1}: " + ", ".join(f"{k} {v[-1][0]:.1f} s" for k, v in runs.items()), flush=True)
    greedy = replace(tp, temperature=0.0, precision="fp32")
    plain_greedy, _ = plain_generate(fp32, tok, reqs[:8], greedy, shas)
    ours_greedy, _, _ = ours(greedy, fp32, "greedy", 8)
    same = sum(a == b for a, b in zip(plain_greedy, ours_greedy))

    cfg = fp32.config
    body = sum(q.numel() for n, q in fp32.named_parameters() if "embed" not in n)
    head = cfg.vocab_size * cfg.hidden_size
    prompt_tokens = sum(len(ids) for ids in tok([r.messages[0]["content"] for r in reqs])["input_ids"])
    gbps = read_gbps() * 1e9
    ideal = {}
    for prec, model in models.items():
        flops = matmul_gflops(cfg.hidden_size, cfg.intermediate_size,
                              dtype={"fp32": "float32", "bf16": "bfloat16"}[prec]) * 1e9
        weights = sum(q.numel() * q.element_size() for q in model.parameters())
        out_tokens = statistics.median(n for _, n in runs[f"ours {prec}"])
        ideal[prec] = (prompt_tokens * 2 * body / flops + max(out_tokens * 2 * (body + head) / flops,
                                                              tp.max_new_tokens * weights / gbps), flops, weights)
    med = {k: statistics.median(t for t, _ in v) for k, v in runs.items()}
    tps = {k: statistics.median(n / t for t, n in v) for k, v in runs.items()}
    ratio = tps[f"ours {default}"] / tps["plain fp32"]
    section = "\n".join([
        f"## Local teacher vs plain transformers generate ({dt.date.today()}, commit {commit()})", "",
        f"`bench/local_teacher.py --rounds {args.rounds}`: {tp.model} on CPU ({machine()}, "
        f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.2f} at the end), the default run's "
        f"{len(reqs)} generate requests ({prompt_tokens} prompt tokens), temperature {tp.temperature}, top_p "
        f"{tp.top_p}, max_new_tokens {tp.max_new_tokens}. plain: `model.generate` in batches of 8 in request order "
        f"(transformers' default top_k 50), what the local backend ran before; ours: `LocalTeacher` (top_k "
        f"{tp.top_k}, batch_size {tp.batch_size}). Median of {args.rounds} runs each, taking turns; the default "
        f"precision (`teacher.precision: {tp.precision}`) is {default} on this machine.", "",
        "| side | seconds | generated tokens | tokens/s | of its precision's roofline |", "|---|---|---|---|---|",
        *(f"| {k} | {med[k]:.1f} | {statistics.median(n for _, n in runs[k]):.0f} | {tps[k]:.1f} | "
          f"{ideal[k[-4:]][0] / med[k]:.0%} |" for k in sides),
        *(f"| roofline {prec} ({flops / 1e9:.0f} GFLOP/s matmul, {gbps / 1e9:.1f} GB/s read, {w / 1e9:.2f} GB of "
          f"weights) | {t:.1f} | | | 100% |" for prec, (t, flops, w) in ideal.items()), "",
        "The roofline: prompt tokens x 2 x non-embedding parameters at the matmul rate measured here (the prefill), "
        "plus the larger of the replies' FLOPs (body and output projection) at that rate and one read of every "
        "weight per step of the longest possible reply at the memory read rate measured here.", "",
        "Same precision, decoder alone: ours / plain " + ", ".join(
            f"{tps[f'ours {prec}'] / tps[f'plain {prec}']:.2f}x in {prec}" for prec in models) + "."
        + ("" if "bf16" in models else " No bf16 rows: this CPU has no native bf16 (AVX512-BF16 or AMX).")
        + f" Greedy (temperature 0, fp32, first 8 requests): "
        f"the same text from both on {same}/8.", "",
        f"- {'PASS' if ratio >= TARGET else 'FAIL'}: ours (default, {default}) >= {TARGET:.0f}x the tokens/s of "
        f"plain fp32, the backend before ({ratio:.2f}x)", ""])
    print(section)
    if not args.no_write:
        with open(ROOT / "bench" / "RESULTS.md", "a") as f:
            f.write("\n" + section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
