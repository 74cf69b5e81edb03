"""Benchmark: medaug's Scorer vs a plain lm-eval-style log-likelihood scorer on PubMedQA's 500 test questions.

Both score the same model (Gemma-3-270M, float32, CPU) on the same token ids: `medaug.evaluate.task.encode` of
each test record (params.yaml's task: prompt format, max_seq_len, truncation) followed by each choice's tokens.

- ours:  `medaug.evaluate.Scorer` — one forward pass per question, left-padded, logits only at the last position
         (" yes", " no" and " maybe" are single tokens in Gemma's vocabulary);
- plain: what lm-evaluation-harness's HF loglikelihood does for a 3-choice task — one forward pass per
         (question, choice) request, the input being context + continuation minus its last token, right-padded,
         log-softmax over the full logits of every position, the continuation's token log-probs summed.

Both run batches of the same size over the same questions; the batches alternate (ours on questions 0-7, plain on
questions 0-7, ours on 8-15, ...), so background load falls on both alike. Reported: the wall time of each,
the speed-up, the number of questions whose predictions agree, and the largest log-prob difference.
Targets (issue 6): identical predictions on all 500 questions, plain / ours >= 3.

Usage: `make bench`, or `.venv/bin/python bench/scorer.py [--n 500 --batch-size 8 --model gemma-3-270m]`
(about 15 minutes on 2 cores). Appends a section to bench/RESULTS.md unless --no-write; exits 1 on a failed target.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

import torch
from roofline import commit, machine

ROOT = Path(__file__).resolve().parents[1]
PQAL = ROOT.parent / "shared" / "data" / "pubmedqa" / "ori_pqal.json"
TARGET_SPEEDUP = 3.0


def plain_scores(model, tokenizer, examples: list[dict]) -> list[float]:
    """Summed log p(continuation | context) per request, as lm-eval computes it (full logits, right padding)."""
    inputs = [e["input_ids"][:-1] for e in examples]
    length = max(len(x) for x in inputs)
    input_ids = torch.full((len(inputs), length), tokenizer.pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(inputs), length), dtype=torch.long)
    for i, x in enumerate(inputs):
        input_ids[i, :len(x)] = torch.tensor(x)
        attention_mask[i, :len(x)] = 1
    logprobs = torch.log_softmax(model(input_ids=input_ids, attention_mask=attention_mask).logits.float(), dim=-1)
    out = []
    for i, e in enumerate(examples):
        cont = e["input_ids"][e["n_prompt"]:]
        positions = range(e["n_prompt"] - 1, len(e["input_ids"]) - 1)  # the logits that predict each token
        out.append(sum(logprobs[i, pos, tok].item() for pos, tok in zip(positions, cont)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500, help="test questions (official test split, in order)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--data", type=Path, default=PQAL)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    if not args.data.exists():
        sys.exit(f"{args.data}: not found (PubMedQA PQA-L is expected in ../shared/data/pubmedqa/)")

    from medaug.data.pubmedqa import from_original
    from medaug.data.split import official_split
    from medaug.evaluate.scorer import Scorer
    from medaug.evaluate.task import encode
    from medaug.models.load import load_model_and_tokenizer
    from medaug.params import load_params

    task = load_params(ROOT / "params.yaml").task
    _, _, test = official_split(from_original(args.data), fold=0)
    test = test[:args.n]
    model, tokenizer = load_model_and_tokenizer(args.model)
    model.eval()
    scorer = Scorer(model, tokenizer, task, batch_size=args.batch_size)
    if not scorer.single_token:
        sys.exit(f"{args.model}: the choices are not single tokens; this bench measures the single-token path")

    ours, plain = [], []
    t_ours = t_plain = 0.0
    with torch.inference_mode():
        scorer.predict(test[:1], progress=False), plain_scores(model, tokenizer, [encode(tokenizer, test[0], task, "yes")])
        for start in range(0, len(test), args.batch_size):
            batch = test[start:start + args.batch_size]
            t0 = time.perf_counter()
            ours += scorer.predict(batch, progress=False)
            t1 = time.perf_counter()
            examples = [encode(tokenizer, r, task, answer=c) for r in batch for c in task.choices]
            sums = plain_scores(model, tokenizer, examples)
            t2 = time.perf_counter()
            k = len(task.choices)
            plain += [dict(zip(task.choices, sums[i * k:(i + 1) * k])) for i in range(len(batch))]
            t_ours, t_plain = t_ours + t1 - t0, t_plain + t2 - t1
            print(f"{start + len(batch)}/{len(test)}: ours {t_ours:.1f} s, plain {t_plain:.1f} s", flush=True)

    preds_plain = [max(s, key=s.get) for s in plain]
    agree = sum(o["prediction"] == q for o, q in zip(ours, preds_plain))
    max_diff = max(abs(o["logprobs"][c] - s[c]) for o, s in zip(ours, plain) for c in task.choices)
    golds = [r.final_decision for r in test]
    acc = sum(o["prediction"] == g for o, g in zip(ours, golds)) / len(test)
    speedup = t_plain / t_ours
    checks = [(f"identical predictions ({agree}/{len(test)})", agree == len(test)),
              (f"plain / ours >= {TARGET_SPEEDUP:g} ({speedup:.2f}x)", speedup >= TARGET_SPEEDUP)]
    text = (f"\n## Scorer vs plain 3-pass log-likelihood, {args.model}, {len(test)} PQA-L test questions, "
            f"{dt.date.today()} (commit {commit()}, {machine()})\n\n"
            f"`bench/scorer.py`: same token ids (task.max_seq_len {task.max_seq_len}), batch {args.batch_size}, "
            f"float32 CPU, batches alternating between the two.\n\n"
            f"| scorer | forward passes | wall s | questions/s |\n|---|---|---|---|\n"
            f"| ours (last-position logits) | {len(test)} | {t_ours:.1f} | {len(test) / t_ours:.2f} |\n"
            f"| plain (lm-eval style, full logits) | {len(test) * len(task.choices)} | {t_plain:.1f} | "
            f"{len(test) / t_plain:.2f} |\n\n"
            f"Speed-up {speedup:.2f}x; predictions agree on {agree}/{len(test)} questions; largest log-prob "
            f"difference {max_diff:.2e}; zero-shot accuracy {acc:.3f}.\n\n"
            + "\n".join(f"- {name}: **{'PASS' if ok else 'FAIL'}**" for name, ok in checks) + "\n")
    print(text)
    if not args.no_write:
        with open(ROOT / "bench" / "RESULTS.md", "a") as f:
            f.write(text)
    if not all(ok for _, ok in checks):
        sys.exit(1)


if __name__ == "__main__":
    main()
