"""Benchmark against the real anchor (issue 18, part 1): medaug's Scorer vs lm-evaluation-harness 0.4.13 itself, in one
run, on the same model, prompts and questions, with a matmul roofline measured on this machine.

- lm-eval: `lm_eval --model hf` (float32, CPU, batch 8) in its own virtualenv (bench/.lmeval-venv, made on first use:
  lm-eval pins what medaug's venv must not share), on a task YAML written here: the first N official PQA-L test
  questions as a local JSONL whose `prompt` is medaug's own rendering of the question (params.yaml's template, no
  truncation: task.max_seq_len is raised so both see the whole abstract), choices yes / no / maybe.
- ours: `medaug.evaluate.Scorer` on the same records and the converted Gemma-3-270M that lm-eval loads.

Reported: each side's wall time, the ratio, how many predictions agree and the largest log-prob difference, and each
side's achieved FLOP/s (2 x the model's non-embedding parameters per real prompt token, padding not counted) against
the float32 matmul rate torch reaches here at the model's shapes. Appends a section to bench/RESULTS.md (--no-write:
stdout only). Targets (issue 18): identical predictions; ours >= 3x lm-eval; ours >= 70% of the roofline.

    .venv/bin/python bench/lmeval_anchor.py [--n 200] [--batch-size 8]   # about 10 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from roofline import commit, machine, matmul_gflops

ROOT = Path(__file__).resolve().parents[1]
PQAL = ROOT.parent / "shared" / "data" / "pubmedqa" / "ori_pqal.json"
VENV = ROOT / "bench" / ".lmeval-venv"
PINS = ["lm-eval==0.4.13", "accelerate==1.15.0", "torch==2.13.0", "transformers==5.23.0"]
TARGET_RATIO, TARGET_ROOFLINE = 3.0, 0.70


def lmeval_python() -> Path:
    """bench/.lmeval-venv's python, installing the pinned lm-eval there on first use."""
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *PINS], check=True)
    return python


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    if not PQAL.exists():
        print(f"lmeval_anchor: the real PQA-L is not at {PQAL}; it is what the anchor is measured on", file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT / "src"))
    import torch

    from medaug.data.pubmedqa import from_original
    from medaug.data.split import official_split
    from medaug.evaluate.scorer import Scorer
    from medaug.evaluate.task import encode, render_prompt
    from medaug.models.load import load_model_and_tokenizer
    from medaug.models import resolve
    from medaug.params import load_params

    p = load_params(ROOT / "params.yaml")
    task = dataclasses.replace(p.task, max_seq_len=100_000)  # no truncation: lm-eval sees the whole prompt too
    test = official_split(from_original(PQAL), 0, where=str(PQAL))[2][:args.n]
    model_dir = resolve("gemma-3-270m")
    model, tokenizer = load_model_and_tokenizer(model_dir)
    model.eval()
    python = lmeval_python()

    with tempfile.TemporaryDirectory(prefix="lmeval-anchor-") as tmp:
        tmp = Path(tmp)
        with open(tmp / "test.jsonl", "w") as f:
            for r in test:
                f.write(json.dumps({"id": r.id, "prompt": render_prompt(r, task),
                                    "label": list(task.choices).index(r.final_decision)}) + "\n")
        (tmp / "tasks").mkdir()
        (tmp / "tasks" / "medaug_pubmedqa.yaml").write_text("\n".join([
            "task: medaug_pubmedqa", "dataset_path: json",
            f"dataset_kwargs:\n  data_files:\n    test: {tmp / 'test.jsonl'}", "test_split: test",
            "output_type: multiple_choice", 'doc_to_text: "{{prompt}}"',
            f"doc_to_choice: {json.dumps(list(task.choices))}", "doc_to_target: label", 'target_delimiter: " "',
            "metric_list:\n  - metric: acc", ""]))
        cmd = [str(python), "-m", "lm_eval", "--model", "hf", "--model_args",
               f"pretrained={model_dir},dtype=float32", "--tasks", "medaug_pubmedqa", "--include_path",
               str(tmp / "tasks"), "--batch_size", str(args.batch_size), "--device", "cpu", "--log_samples",
               "--output_path", str(tmp / "out")]
        start = time.time()
        done = subprocess.run(cmd, capture_output=True, text=True,
                              env=dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1"))
        t_lmeval = time.time() - start
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            return 1
        samples = [json.loads(line) for f in sorted((tmp / "out").rglob("samples_medaug_pubmedqa*.jsonl"))
                   for line in f.read_text().splitlines()]
        theirs = {s["doc"]["id"]: [float(resp[0]) for resp in s["filtered_resps"]] for s in samples}

    start = time.time()
    ours = Scorer(model, tokenizer, task, args.batch_size).predict(test, progress=False)
    t_ours = time.time() - start
    same, worst = 0, 0.0
    for r, o in zip(test, ours):
        ll = theirs[r.id]
        same += max(task.choices, key=lambda c: ll[task.choices.index(c)]) == o["prediction"]
        worst = max(worst, *(abs(ll[i] - o["logprobs"][c]) for i, c in enumerate(task.choices)))

    cfg = model.config
    body = sum(p.numel() for n, p in model.named_parameters() if "embed" not in n)
    tokens = sum(len(encode(tokenizer, r, task)["input_ids"]) for r in test)
    roof = matmul_gflops(cfg.hidden_size, cfg.intermediate_size)
    ours_gflops = 2 * body * tokens / t_ours / 1e9
    # lm-eval runs one pass per (question, choice) unless the choices share the context: it groups them, so it
    # too passes each prompt once; count the same real tokens for both, the honest comparison of work done
    theirs_gflops = 2 * body * tokens / t_lmeval / 1e9
    ratio = t_lmeval / t_ours
    checks = [("identical predictions", same == len(test)), (f"ours >= {TARGET_RATIO}x lm-eval", ratio >= TARGET_RATIO),
              (f"ours >= {TARGET_ROOFLINE:.0%} of the matmul roofline", ours_gflops >= TARGET_ROOFLINE * roof)]
    section = "\n".join([
        f"## Scoring against the real lm-evaluation-harness ({dt.date.today()}, commit {commit()})", "",
        f"`bench/lmeval_anchor.py --n {args.n} --batch-size {args.batch_size}`: Gemma-3-270M float32 on CPU "
        f"({machine()}, {torch.get_num_threads()} threads), the first {len(test)} official PQA-L test "
        f"questions, medaug's prompt without truncation ({tokens} prompt tokens), lm-eval 0.4.13 `--model hf` in its "
        f"own venv.", "",
        "| scorer | seconds | achieved GFLOP/s | of roofline |", "|---|---|---|---|",
        f"| lm-eval 0.4.13 (hf) | {t_lmeval:.1f} | {theirs_gflops:.1f} | {theirs_gflops / roof:.0%} |",
        f"| medaug Scorer | {t_ours:.1f} | {ours_gflops:.1f} | {ours_gflops / roof:.0%} |",
        f"| matmul roofline (fp32, {cfg.hidden_size}x{cfg.intermediate_size}) | – | {roof:.1f} | 100% |", "",
        f"lm-eval / ours: **{ratio:.2f}x**; predictions agree on {same}/{len(test)}; largest log-prob difference "
        f"{worst:.1e}. lm-eval's time includes its model load and task setup (a few seconds).", "",
        *(f"- {'PASS' if ok else 'FAIL'}: {name}" for name, ok in checks), ""])
    print(section)
    if not args.no_write:
        with open(ROOT / "bench" / "RESULTS.md", "a") as f:
            f.write("\n" + section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
