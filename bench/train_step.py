"""Benchmark: one LoRA training step of medaug's CompletionTrainer vs a plain HF Trainer with full logits.

What is measured. Two worker processes each load the model the same way (`load_model_and_tokenizer`, float32,
seed 0), wrap it with the same peft LoraConfig (params.yaml's `train.lora` r/alpha/target_modules, dropout 0 so
both losses are deterministic) and train on the same ONE batch of B real PubMedQA PQA-L records (the first
records, in file order, whose prompt fills task.max_seq_len after `encode`, so every row has the same length and
padding plays no part), with identical TrainingArguments (CPU, batch B, lr 2e-4, no warmup, sequential sampler,
seed 0, max_steps = warm-up + measured steps; the dataset is exactly B examples, so every step sees that batch):

- ours:  `medaug.train.CompletionTrainer` + `medaug.evaluate.task.collate` (left padding, logits only at the
         answer positions via `logits_to_keep`);
- plain: `transformers.Trainer` with its default compute_loss, fed input_ids / attention_mask / labels with -100
         on every prompt and pad token (standard completion-only masking, logits over the whole sequence).

A training step is the time between the Trainer's `on_step_begin` and `on_step_end` callbacks: forward, backward,
gradient clipping, optimizer and scheduler step, zero_grad (batch collation happens before `on_step_begin`, logging
after `on_step_end`). The two processes take turns through a pair of semaphores held in those callbacks
(ours 1, plain 1, ours 2, plain 2, ...), so no step of one overlaps a step of the other and background load
falls on both alike; the first step of each is a warm-up, the median of the next N is reported. Peak RSS is
each worker's `ru_maxrss` (after loading, and at the end). The first-step losses come from the Trainer's log
(logging_steps=1): both are the mean NLL over the answer tokens (transformers 5's default loss sums the token
losses and divides by num_items_in_batch, the number of label tokens).

Targets (the issue's acceptance point): plain s/step / ours s/step >= 2 and |first-step loss difference| <= 1e-4.
Prints a table, appends it to bench/RESULTS.md (unless --no-write) and exits non-zero if a target fails.

Usage: `make bench` (between bench/teacher.py and bench/run.py), or
`.venv/bin/python bench/train_step.py [--batch-size 4 --seq-len 256 --steps 5 --note "..."]` (a few minutes).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import multiprocessing as mp
import os
import platform
import queue as queue_mod
import resource
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any

from roofline import commit, machine, matmul_gflops

ROOT = Path(__file__).resolve().parents[1]
PQAL = ROOT.parent / "shared" / "data" / "pubmedqa" / "ori_pqal.json"  # beside the project, never copied
KINDS = ("ours", "plain")
OTHER = {"ours": "plain", "plain": "ours"}
TARGET_SPEEDUP, TARGET_DLOSS = 2.0, 1e-4
TURN_TIMEOUT_S = 3600  # one step of the other worker (plus its model load) must fit in this


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def _cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _machine_busy_s() -> float | None:
    """CPU seconds the whole machine has spent busy since boot (/proc/stat), None where there is no /proc."""
    try:
        user, nice, system, _idle, _iowait, irq, softirq = map(int, Path("/proc/stat").read_text().split()[1:8])
    except (OSError, ValueError):
        return None
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def build_batch(tokenizer: Any, task: Any, data: Path, batch_size: int) -> tuple[list[dict], list[dict]]:
    """The first `batch_size` records of `data` whose encoded prompt is exactly task.max_seq_len tokens (else the
    longest ones), encoded with their gold answer. Returns (examples, [{id, label, n_prompt, n_total}])."""
    from medaug.data.pubmedqa import from_original
    from medaug.evaluate.task import encode

    chosen, fallback = [], []
    for record in from_original(data):
        e = encode(tokenizer, record, task, answer=record.final_decision)
        if e["n_prompt"] == task.max_seq_len:
            chosen.append((record, e))
            if len(chosen) == batch_size:
                break
        else:
            fallback.append((record, e))
    if len(chosen) < batch_size:  # e.g. the short synthetic sample: take the longest prompts instead
        fallback.sort(key=lambda re: -re[1]["n_prompt"])
        chosen += fallback[:batch_size - len(chosen)]
    if len(chosen) < batch_size:
        raise SystemExit(f"{data}: only {len(chosen)} records, need {batch_size}")
    info = [{"id": r.id, "label": r.final_decision, "n_prompt": e["n_prompt"], "n_total": len(e["input_ids"])}
            for r, e in chosen]
    return [e for _, e in chosen], info


def plain_collate(examples: list[dict], pad_id: int) -> dict:
    """The standard completion-only batch: right padding, labels = input_ids with -100 on prompt and pad tokens."""
    import torch

    length = max(len(e["input_ids"]) for e in examples)
    input_ids = torch.full((len(examples), length), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), length), dtype=torch.long)
    labels = torch.full((len(examples), length), -100, dtype=torch.long)
    for i, e in enumerate(examples):
        ids = torch.tensor(e["input_ids"])
        input_ids[i, :len(ids)] = ids
        attention_mask[i, :len(ids)] = 1
        labels[i, e["n_prompt"]:len(ids)] = ids[e["n_prompt"]:]
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def worker(kind: str, cfg: dict, sems: dict, results: Any) -> None:
    """Load, wrap, train max_steps steps taking turns with the other worker; put a result dict on `results`."""
    mine, theirs = sems[kind], sems[OTHER[kind]]
    try:
        from transformers import Trainer, TrainerCallback, TrainingArguments, set_seed
        from peft import LoraConfig, get_peft_model

        from medaug.evaluate.task import collate
        from medaug.models.load import load_model_and_tokenizer
        from medaug.params import load_params
        from medaug.train import CompletionTrainer

        p = load_params(ROOT / "params.yaml")
        task = replace(p.task, max_seq_len=cfg["seq_len"]) if cfg["seq_len"] else p.task
        set_seed(0)
        model, tokenizer = load_model_and_tokenizer(cfg["model"])
        rss_loaded = _rss_mb()
        examples, info = build_batch(tokenizer, task, Path(cfg["data"]), cfg["batch_size"])
        digest = hashlib.sha256(repr([e["input_ids"] for e in examples]).encode()).hexdigest()[:12]
        set_seed(0)
        lora = LoraConfig(r=p.train.lora.r, lora_alpha=p.train.lora.alpha, lora_dropout=0.0,
                          target_modules=p.train.lora.target_modules, task_type="CAUSAL_LM")
        peft_model = get_peft_model(model, lora)
        pad_id = tokenizer.pad_token_id

        class TakeTurns(TrainerCallback):
            """Waits for this worker's turn before a step, times the step, hands the turn over after it."""

            def __init__(self) -> None:
                self.times: list[float] = []
                self.start = 0.0

            def on_step_begin(self, args, state, control, **kwargs):
                if not mine.acquire(timeout=TURN_TIMEOUT_S):
                    raise RuntimeError(f"{kind}: the other worker did not hand over the turn")
                self.start = time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs):
                self.times.append(time.perf_counter() - self.start)
                theirs.release()

        turns = TakeTurns()
        with tempfile.TemporaryDirectory(prefix=f"medaug-bench-{kind}-") as scratch:
            args = TrainingArguments(
                output_dir=scratch, use_cpu=True, per_device_train_batch_size=cfg["batch_size"],
                gradient_accumulation_steps=1, learning_rate=2e-4, warmup_steps=0, weight_decay=0.0,
                max_steps=cfg["warmup"] + cfg["steps"], seed=0, data_seed=0, train_sampling_strategy="sequential",
                logging_steps=1, save_strategy="no", eval_strategy="no", report_to="none",
                remove_unused_columns=False, dataloader_pin_memory=False, disable_tqdm=True)
            if kind == "ours":
                trainer = CompletionTrainer(model=peft_model, args=args, train_dataset=examples,
                                            data_collator=lambda batch: collate(batch, pad_id))
            else:
                trainer = Trainer(model=peft_model, args=args, train_dataset=examples,
                                  data_collator=lambda batch: plain_collate(batch, pad_id))
            trainer.add_callback(turns)
            trainer.train()
        losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
        result = {"kind": kind, "times": turns.times, "losses": losses, "rss_loaded_mb": rss_loaded,
                  "rss_peak_mb": _rss_mb(), "cpu_s": _cpu_s(), "batch": info, "digest": digest,
                  "model_class": type(model).__name__, "trainable": peft_model.get_nb_trainable_parameters()[0],
                  "body": sum(q.numel() for n, q in model.named_parameters() if "embed" not in n and "lora_" not in n),
                  "shapes": [getattr(model.config.get_text_config(), k) for k in
                             ("hidden_size", "intermediate_size", "vocab_size")]}
        # wait for the other worker's last step to end before reporting (our teardown must not overlap it)
        if not mine.acquire(timeout=TURN_TIMEOUT_S):
            raise RuntimeError(f"{kind}: the other worker did not finish its last step")
        results.put(result)
        theirs.release()
    except BaseException:  # noqa: BLE001 - report everything to the parent, which stops the other worker
        results.put({"kind": kind, "error": traceback.format_exc()})
        theirs.release()


def run_workers(cfg: dict) -> dict[str, dict]:
    ctx = mp.get_context("spawn")  # fresh interpreters: no shared torch / accelerate state, separate peak RSS
    sems = {k: ctx.Semaphore(0) for k in KINDS}
    results = ctx.Queue()
    procs = {k: ctx.Process(target=worker, args=(k, cfg, sems, results), name=f"bench-{k}") for k in KINDS}
    for proc in procs.values():
        proc.start()
    sems["ours"].release()  # ours takes the first step
    out: dict[str, dict] = {}
    try:
        while len(out) < len(KINDS):
            try:
                r = results.get(timeout=10)
            except queue_mod.Empty:
                dead = [k for k, proc in procs.items() if k not in out and not proc.is_alive()]
                if dead:
                    raise SystemExit(f"worker {dead[0]} died (exit code {procs[dead[0]].exitcode})")
                continue
            if "error" in r:
                raise SystemExit(f"worker {r['kind']} failed:\n{r['error']}")
            out[r["kind"]] = r
            print(f"{r['kind']}: steps {', '.join(f'{t:.2f}' for t in r['times'])} s; "
                  f"losses {', '.join(f'{x:.6f}' for x in r['losses'])}", flush=True)
    finally:
        for proc in procs.values():
            proc.join(timeout=60)
            if proc.is_alive():  # only after a failure: stop the worker this script started
                proc.terminate()
                proc.join()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="gemma-3-270m", help="model reference (tiny-llama for a quick check)")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=0, help="prompt tokens (default: params.yaml task.max_seq_len)")
    ap.add_argument("--steps", type=int, default=5, help="measured steps per trainer, after the warm-up")
    ap.add_argument("--warmup", type=int, default=1, help="unmeasured first steps per trainer")
    ap.add_argument("--data", type=Path, default=PQAL, help="ori_pqal.json (default: the real PQA-L, else "
                    "the bundled synthetic sample)")
    ap.add_argument("--note", default="", help="a sentence added to the RESULTS.md section (e.g. machine load)")
    ap.add_argument("--no-write", action="store_true", help="print only, do not append to bench/RESULTS.md")
    args = ap.parse_args()
    if args.steps < 1 or args.warmup < 1:
        ap.error("--steps and --warmup must be >= 1 (the first step gives the losses and is never timed)")
    from medaug.data.pubmedqa import SAMPLE_PATH
    from medaug.params import load_params

    data, data_note = args.data, "real PubMedQA PQA-L"
    if not data.exists():
        data, data_note = SAMPLE_PATH, f"bundled SYNTHETIC sample ({args.data} not found)"
        print(f"warning: {args.data} not found, using the bundled synthetic sample {SAMPLE_PATH}", flush=True)
    seq_len = args.seq_len or load_params(ROOT / "params.yaml").task.max_seq_len
    cfg = {"model": args.model, "batch_size": args.batch_size, "seq_len": seq_len, "steps": args.steps,
           "warmup": args.warmup, "data": str(data)}
    load_before, busy_before, main_cpu = os.getloadavg(), _machine_busy_s(), _cpu_s()
    start = time.time()
    r = run_workers(cfg)
    wall = time.time() - start
    load_after, busy_after, main_cpu = os.getloadavg(), _machine_busy_s(), _cpu_s() - main_cpu
    # contention: CPU time the rest of the machine used while the bench ran (both workers' time subtracted)
    others = None if busy_before is None else max(
        0.0, busy_after - busy_before - main_cpu - sum(r[k]["cpu_s"] for k in KINDS))

    ours, plain = r["ours"], r["plain"]
    if ours["digest"] != plain["digest"]:
        raise SystemExit("the two workers built different batches")
    batch = ours["batch"]
    measured = {k: r[k]["times"][args.warmup:] for k in KINDS}
    med = {k: statistics.median(v) for k, v in measured.items()}
    speedup = med["plain"] / med["ours"]
    speedup_min = min(measured["plain"]) / min(measured["ours"])
    first = {k: r[k]["losses"][0] for k in KINDS}
    dloss = abs(first["ours"] - first["plain"])
    ok_speed, ok_loss = speedup >= TARGET_SPEEDUP, dloss <= TARGET_DLOSS
    # the roofline: the FLOPs any completion-only LoRA step must do (forward and input-gradient backward through the
    # frozen body for every token, 2 + 2 per parameter; the output projection only where there is an answer token)
    # at the float32 matmul rate measured here at the model's shapes
    hidden, inter, vocab = ours["shapes"]
    tokens = sum(b["n_total"] for b in batch)
    answers = sum(b["n_total"] - b["n_prompt"] for b in batch)
    useful = 4 * ours["body"] * tokens + 4 * vocab * hidden * answers
    roof = matmul_gflops(hidden, inter) * 1e9
    share = {k: useful / roof / med[k] for k in KINDS}

    def row(k: str, label: str) -> str:
        t = measured[k]
        return (f"| {label} | {med[k]:.2f} | {statistics.mean(t):.2f} | {min(t):.2f}-{max(t):.2f} | "
                f"{r[k]['times'][0]:.2f} | {first[k]:.6f} | {r[k]['losses'][-1]:.6f} | "
                f"{r[k]['rss_loaded_mb'] / 1024:.2f} | {r[k]['rss_peak_mb'] / 1024:.2f} | {share[k]:.0%} |")

    lengths = sorted({b["n_total"] for b in batch})
    prompts = sorted({b["n_prompt"] for b in batch})
    records = ", ".join(f"PMID {b['id']} {b['label']}" for b in batch)
    report = (
        f"\n## Training step, CompletionTrainer vs plain HF Trainer (full logits), {dt.date.today()} "
        f"(commit {commit()}, {machine()}, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()})\n\n"
        f"`bench/train_step.py --model {args.model} --batch-size {args.batch_size} --seq-len {seq_len} "
        f"--steps {args.steps} --warmup {args.warmup}`: {ours['model_class']} float32 + LoRA "
        f"({ours['trainable']:,} trainable parameters, dropout 0), one batch of {len(batch)} {data_note} records "
        f"({records}), prompt {'/'.join(map(str, prompts))} tokens, "
        f"sequence {'/'.join(map(str, lengths))} tokens with the answer; the same batch every step. "
        f"s/step = on_step_begin -> on_step_end (forward, backward, clip, AdamW step), the two trainers in "
        f"separate processes taking turns step by step; the first {args.warmup} step(s) of each are a warm-up, "
        f"median / mean / range over the next {args.steps}. Peak RSS per process (after loading / at the end). "
        f"{wall:.0f} s in all; load average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after"
        + ("" if others is None else f"; other processes used {others:.0f} CPU-s meanwhile ({others / wall:.2f} of "
           f"{os.cpu_count()} cores on average{', the machine was shared' if others > 0.1 * wall else ''})")
        + "."
        + (f" {args.note}" if args.note else "") + "\n\n"
        "| trainer | s/step median | mean | range | warm-up step s | first-step loss | last-step loss | "
        "RSS loaded GB | RSS peak GB | of roofline |\n|---|---|---|---|---|---|---|---|---|---|\n"
        + row("ours", "ours: CompletionTrainer, left pad, logits at the answer") + "\n"
        + row("plain", "plain: Trainer, labels -100, full logits") + "\n\n"
        f"Roofline: {useful / 1e9:.0f} GFLOP a step ({tokens} tokens x 4 x {ours['body'] / 1e6:.0f}M frozen body "
        f"parameters, plus the output projection at the {answers} answer tokens) at {roof / 1e9:.0f} GFLOP/s, the "
        f"float32 matmul rate measured here at {hidden}x{inter}: {useful / roof:.2f} s a step.\n\n"
        f"| target | measured | result |\n|---|---|---|\n"
        f"| speed-up (plain / ours, medians) >= {TARGET_SPEEDUP:g}x | {speedup:.2f}x | "
        f"{'PASS' if ok_speed else '**FAIL**'} |\n"
        f"| first-step loss \\|ours - plain\\| <= {TARGET_DLOSS:g} | {dloss:.2e} | "
        f"{'PASS' if ok_loss else '**FAIL**'} |\n\n"
        f"For information (not a target): speed-up of the fastest measured steps (min / min) {speedup_min:.2f}x.\n")
    if not args.no_write:
        with open(ROOT / "bench" / "RESULTS.md", "a") as f:
            f.write(report)
    print(report)
    if not (ok_speed and ok_loss):
        sys.exit(f"target failed: speed-up {speedup:.2f}x (>= {TARGET_SPEEDUP:g}), |dloss| {dloss:.2e} "
                 f"(<= {TARGET_DLOSS:g})")


if __name__ == "__main__":
    main()
